"""Fixtures shared by the integration tests (the project-wide ones are in ``tests/conftest.py``)."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from tests.integration.test_delivery_support import PeerLoop


@pytest.fixture
def peers() -> Iterator[PeerLoop]:
    """A background event loop for loopback python-hl7 peers, closed after the test."""
    loop = PeerLoop()
    yield loop
    loop.close()
