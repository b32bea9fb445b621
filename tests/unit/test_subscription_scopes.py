"""OAuth scopes of the Subscription routes (issue 16): a site or admin may hold system/Subscription.c and
.d, nobody else; the topics (Basic) are readable like every type."""

from __future__ import annotations

import pytest

from gateway.oauth.scopes import ScopeError, check_role_allows, covers, expand, scopes_supported


@pytest.mark.parametrize(
    ("kind", "scope", "ok"),
    [
        ("site", "system/Subscription.c", True),
        ("site", "system/Subscription.d", True),
        ("site", "system/Subscription.crds", True),
        ("admin", "system/Subscription.cd", True),
        ("manufacturer", "system/Subscription.c", False),
        ("manufacturer", "system/Subscription.rs", True),
        ("site", "system/Subscription.u", False),
        ("site", "system/Basic.rs", True),
        ("site", "system/Basic.c", False),
    ],
)
def test_subscription_scopes_by_role(kind: str, scope: str, ok: bool) -> None:
    if ok:
        check_role_allows(kind, [scope])
    else:
        with pytest.raises(ScopeError, match="not allowed"):
            check_role_allows(kind, [scope])


def test_subscription_atoms() -> None:
    atoms = expand("system/Subscription.crds")
    assert covers(atoms, "system/Subscription.d") and not covers(atoms, "system/Task.c")
    assert covers(expand("system/*.rs"), "system/Basic.r")
    assert {"system/Subscription.crds", "system/Basic.rs"} <= set(scopes_supported())
