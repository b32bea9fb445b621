"""Load site mapping profiles from YAML, reporting every problem as ``file:line: field.path: reason``.

The YAML is composed into nodes first (PyYAML keeps their line numbers), so every validation error
pydantic reports can be pointed at the line that holds the field, or at the line of the nearest
enclosing field when the field is missing.  All problems are collected and raised together in
:class:`ProfileInvalid` (at most ``max_problems`` of them, then a line saying how many more).
The profile's version is a hash of the file's bytes.

Every load is bounded by :class:`ProfileLimits` (the gateway fills it from its ``profile_*`` and
``template_*`` settings): the size is checked before the file is read or the text parsed, nodes,
aliases and nesting while composing (:mod:`mappings.profile.bounded_yaml`), and override templates with the
limits and rules of :mod:`mappings.profile.templates`.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import yaml
from pydantic import ValidationError

from mappings.profile.bounded_yaml import YamlTooLarge, compose_bounded, dotted
from mappings.profile.templates import TemplateLimits

if TYPE_CHECKING:
    from mappings.profile.schema import SiteProfile

__all__ = [
    "MAX_PROFILE_BYTES",
    "MAX_PROFILE_NODES",
    "ProfileInvalid",
    "ProfileLimits",
    "profile_version",
    "load_profile",
    "load_profile_text",
    "load_profile_dir",
]

_Path = tuple[str, ...]

#: Defaults of the ``profile_max_bytes`` and ``profile_max_nodes`` settings (the demo profiles are
#: 2-4 KB and about 150 nodes).
MAX_PROFILE_BYTES = 256 * 1024
MAX_PROFILE_NODES = 20_000


@dataclass(frozen=True)
class ProfileLimits:
    """Bounds of loading one profile; the gateway builds it from its settings."""

    max_bytes: int = MAX_PROFILE_BYTES  # profile_max_bytes: size of the file/text, checked first
    max_nodes: int = MAX_PROFILE_NODES  # profile_max_nodes: YAML values, aliases expanded
    max_aliases: int = 100  # profile_max_aliases: alias uses (*name) in one profile
    max_problems: int = 100  # profile_max_problems: problems listed before "... and n more"
    templates: TemplateLimits = field(default_factory=TemplateLimits)


_DEFAULT_LIMITS = ProfileLimits()


class ProfileInvalid(ValueError):
    """A site profile that cannot be used; ``problems`` holds ``file:line: field.path: reason`` lines."""

    def __init__(self, source: str, problems: Iterable[str], max_problems: int = 100,
                 unlisted: int = 0) -> None:
        self.source = source
        listed: list[str] = []
        more = unlisted
        for problem in problems:
            if len(listed) < max_problems:
                listed.append(problem)
            else:
                more += 1
        self.listed: list[str] = list(listed)  # the problems themselves, without the "... more" line
        count = len(listed) + more
        self.count = count  # how many problems there were in all
        if more:
            listed.append(f"{source}: ... and {more} more problem{'s' if more != 1 else ''} not listed")
        self.problems: list[str] = listed
        super().__init__(f"{source}: invalid site profile ({count} problem{'s' if count != 1 else ''})\n"
                         + "\n".join(self.problems))


def profile_version(content: bytes) -> str:
    """The version recorded with every output: ``sha256:`` + the first 16 hex digits of the content."""
    return "sha256:" + hashlib.sha256(content).hexdigest()[:16]


def _too_large(name: str, limits: ProfileLimits) -> ProfileInvalid:
    return ProfileInvalid(name, [f"{name}:1: (file): larger than {limits.max_bytes} bytes "
                                 "(profile_max_bytes)"])


def load_profile(path: str | Path, limits: ProfileLimits = _DEFAULT_LIMITS) -> SiteProfile:
    """Read and validate one profile file; raises :class:`ProfileInvalid` listing every problem."""
    name = str(path)
    try:
        with Path(path).open("rb") as handle:
            content = handle.read(limits.max_bytes + 1)  # never more than the limit, whatever the file
    except OSError as exc:
        raise ProfileInvalid(name, [f"{name}:1: (file): cannot read: {exc.strerror or exc}"]) from None
    if len(content) > limits.max_bytes:
        raise _too_large(name, limits)
    try:
        text = content.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise ProfileInvalid(name, [f"{name}:1: (file): not UTF-8 text ({exc.reason})"]) from None
    return _parse(text, name, profile_version(content), limits)


def load_profile_text(text: str, name: str = "<profile>",
                      limits: ProfileLimits = _DEFAULT_LIMITS) -> SiteProfile:
    """Validate a profile held in memory (the preview API); ``name`` stands for the file in messages."""
    if len(text) > limits.max_bytes:  # a character is at least one byte: refused before encoding
        raise _too_large(name, limits)
    content = text.encode("utf-8", errors="surrogatepass")
    if len(content) > limits.max_bytes:
        raise _too_large(name, limits)
    return _parse(text, name, profile_version(content), limits)


def load_profile_dir(directory: str | Path,
                     limits: ProfileLimits = _DEFAULT_LIMITS) -> dict[str, SiteProfile]:
    """Every ``*.yaml``/``*.yml`` profile in ``directory``, keyed by site id; all problems raised at once."""
    folder = Path(directory)
    files = sorted([*folder.glob("*.yaml"), *folder.glob("*.yml")])
    profiles: dict[str, SiteProfile] = {}
    where: dict[str, str] = {}
    problems: list[str] = []
    for file in files:
        try:
            profile = load_profile(file, limits)
        except ProfileInvalid as exc:
            problems.extend(exc.problems)
            continue
        if profile.site_id in profiles:
            first = where[profile.site_id]
            problems.append(f"{file}:1: site_id: '{profile.site_id}' is already used by {first}")
            continue
        profiles[profile.site_id] = profile
        where[profile.site_id] = str(file)
    if problems:
        raise ProfileInvalid(str(folder), problems, limits.max_problems)
    return profiles


# --------------------------------------------------------------------------- internals


def _parse(text: str, name: str, version: str, limits: ProfileLimits) -> SiteProfile:
    from mappings.profile.schema import SiteProfile

    try:
        composed, data = compose_bounded(text, max_nodes=limits.max_nodes, max_aliases=limits.max_aliases,
                                         max_problems=limits.max_problems)
    except YamlTooLarge as exc:
        raise ProfileInvalid(name, [f"{name}:{exc.line}: (yaml): {exc.reason}"]) from None
    except yaml.YAMLError as exc:  # malformed, or a tag SafeLoader cannot construct (!!python/object)
        raise ProfileInvalid(name, [_yaml_problem(name, exc)]) from None
    except RecursionError:
        raise ProfileInvalid(name, [f"{name}:1: (yaml): nested too deeply"]) from None
    root = composed.root
    if not isinstance(root, yaml.MappingNode) or not isinstance(data, dict):
        line = root.start_mark.line + 1 if root is not None else 1
        raise ProfileInvalid(name, [f"{name}:{line}: (root): a profile must be a YAML mapping of fields"])
    lines = composed.lines
    found: list[tuple[int, str]] = list(composed.problems)
    unlisted = composed.unlisted
    if "version" in data:
        found.append((lines.get(("version",), 1),
                      "version: set by the loader (content hash of the file); remove it from the profile"))
        data = {key: value for key, value in data.items() if key != "version"}
    patient = data.get("patient")
    demographics = patient.get("demographics", "mrn_only") if isinstance(patient, dict) else "mrn_only"
    context = {"template_limits": limits.templates,
               "demographics": demographics if demographics == "full" else "mrn_only"}
    try:
        profile = SiteProfile.model_validate(data, context=context)
    except ValidationError as exc:
        for error in exc.errors(include_url=False):
            if len(found) >= limits.max_problems:
                unlisted += 1
                continue
            loc = tuple(str(part) for part in error["loc"])
            found.append((_line_of(loc, lines), f"{dotted(loc)}: {_reason(error)}"))
    if found:
        found.sort(key=lambda item: item[0])
        raise ProfileInvalid(name, [f"{name}:{line}: {message}" for line, message in found],
                             limits.max_problems, unlisted)
    return profile.model_copy(update={"version": version})


def _yaml_problem(name: str, exc: yaml.YAMLError) -> str:
    if isinstance(exc, yaml.MarkedYAMLError):
        mark = exc.problem_mark or exc.context_mark
        line = mark.line + 1 if mark is not None else 1
        return f"{name}:{line}: (yaml): {exc.problem or exc.context}"
    return f"{name}:1: (yaml): {exc}"


def _line_of(loc: _Path, lines: dict[_Path, int]) -> int:
    """Line of the field, else of its nearest enclosing field that exists in the file, else 1."""
    parts = tuple(part for part in loc if part != "[key]")
    for end in range(len(parts), 0, -1):
        if parts[:end] in lines:
            return lines[parts[:end]]
    return 1


_REASONS = {
    "missing": "field required",
    "extra_forbidden": "unknown field (not allowed here)",
}


def _reason(error: Any) -> str:
    kind = error["type"]
    if kind in _REASONS:
        return _REASONS[kind]
    message = str(error["msg"])
    for prefix in ("Value error, ", "Assertion failed, "):
        if message.startswith(prefix):
            message = message[len(prefix):]
    if len(message) > 1 and message[0].isupper() and message[1].islower():
        message = message[0].lower() + message[1:]
    return message
