"""The bounds of profile loading and override templates, built once from the settings.

The pure layers (``mappings.profile.loader``, ``mappings.profile.templates``) never read settings:
the gateway passes them :func:`profile_limits` / :func:`template_limits` (start-up, CLI, preview,
delivery pipeline), so live and draft profiles are held to the same bounds.
"""

from __future__ import annotations

from gateway.config import Settings
from mappings.profile.loader import ProfileLimits
from mappings.profile.templates import TemplateLimits

__all__ = ["profile_limits", "template_limits"]


def template_limits(settings: Settings) -> TemplateLimits:
    """``template_*`` settings as the renderer's :class:`TemplateLimits`."""
    return TemplateLimits(
        max_output_bytes=settings.template_max_output_bytes,
        timeout_ms=settings.template_timeout_ms,
        max_steps=settings.template_max_steps,
        max_range=settings.template_max_range,
        max_loop_nesting=settings.template_max_loop_nesting,
    )


def profile_limits(settings: Settings) -> ProfileLimits:
    """``profile_*`` (and ``template_*``) settings as the loader's :class:`ProfileLimits`."""
    return ProfileLimits(
        max_bytes=settings.profile_max_bytes,
        max_nodes=settings.profile_max_nodes,
        max_aliases=settings.profile_max_aliases,
        max_problems=settings.profile_max_problems,
        templates=template_limits(settings),
    )
