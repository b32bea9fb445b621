"""Who is calling: bearer tokens resolve to exactly one role.

The spine work owns the token lookup and the FastAPI dependency; ``Principal`` is the contract
every router codes against.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

__all__ = ["Principal"]


@dataclass(frozen=True)
class Principal:
    """``role`` with its subject: ``manufacturer:acme-bio`` -> role manufacturer, subject acme-bio."""

    role: Literal["manufacturer", "site", "admin"]
    subject: str | None  # manufacturer id or site id; None for admin

    @property
    def is_admin(self) -> bool:
        return self.role == "admin"
