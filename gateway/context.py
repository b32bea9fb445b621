"""What every request handler and the intake service share: settings, engine, site profiles,
terminology and the clock (injectable, so tests can fix ``now``)."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path

from sqlalchemy.engine import Engine

from gateway.config import Settings
from gateway.profile_limits import profile_limits
from mappings.profile.loader import ProfileLimits, load_profile
from mappings.profile.schema import SiteProfile
from terminology import Terminology, load_terminology

__all__ = ["Clock", "utc_now", "Context", "load_site_profiles", "build_context"]

Clock = Callable[[], datetime]


def utc_now() -> datetime:
    return datetime.now(UTC)


@dataclass
class Context:
    settings: Settings
    engine: Engine
    profiles: dict[str, SiteProfile]
    terminology: Terminology
    now: Clock = field(default=utc_now)


_loaded: dict[tuple[str, int, int, ProfileLimits], SiteProfile] = {}


def _load_profile_once(path: Path, limits: ProfileLimits) -> SiteProfile:
    """Profiles are immutable: reuse one already loaded from the same unchanged file (same limits)."""
    stat = path.stat() if path.exists() else None
    key = (str(path.resolve()), stat.st_mtime_ns, stat.st_size, limits) if stat else None
    if key is not None and key in _loaded:
        return _loaded[key]
    profile = load_profile(path, limits)
    if key is not None:
        _loaded[key] = profile
    return profile


def load_site_profiles(settings: Settings) -> dict[str, SiteProfile]:
    """Every configured site's profile, validated; raises ``ProfileInvalid`` naming file, field, reason."""
    profiles: dict[str, SiteProfile] = {}
    limits = profile_limits(settings)
    for site in settings.sites:
        profile = _load_profile_once(site.profile, limits)
        if profile.site_id != site.id:
            raise ValueError(
                f"{site.profile}: site_id is {profile.site_id!r} but the configuration "
                f"uses this file for site {site.id!r}"
            )
        profiles[site.id] = profile
    return profiles


def build_context(settings: Settings, engine: Engine, *, now: Clock = utc_now) -> Context:
    return Context(
        settings=settings,
        engine=engine,
        profiles=load_site_profiles(settings),
        terminology=load_terminology(),
        now=now,
    )
