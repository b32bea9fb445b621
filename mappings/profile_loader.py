"""Load site mapping profiles from YAML, reporting every problem as ``file:line: field.path: reason``.

The YAML is composed into nodes first (PyYAML keeps their line numbers), so every validation error
pydantic reports can be pointed at the line that holds the field, or at the line of the nearest
enclosing field when the field is missing.  All problems are collected and raised together in
:class:`ProfileInvalid`.  The profile's version is a hash of the file's bytes.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable
from pathlib import Path
from typing import TYPE_CHECKING, Any

import yaml
from pydantic import ValidationError

if TYPE_CHECKING:
    from mappings.profile import SiteProfile

__all__ = [
    "MAX_PROFILE_CHARS",
    "MAX_PROFILE_NODES",
    "ProfileInvalid",
    "profile_version",
    "load_profile",
    "load_profile_text",
    "load_profile_dir",
]

_Path = tuple[str, ...]

#: Limits that keep a hostile profile (preview API) from exhausting memory or time: characters of
#: text, and YAML nodes visited with aliases expanded (a "billion laughs" document exceeds it fast).
MAX_PROFILE_CHARS = 1_000_000
MAX_PROFILE_NODES = 20_000


class _TooLarge(Exception):
    pass


class ProfileInvalid(ValueError):
    """A site profile that cannot be used; ``problems`` holds ``file:line: field.path: reason`` lines."""

    def __init__(self, source: str, problems: Iterable[str]) -> None:
        self.source = source
        self.problems: list[str] = list(problems)
        count = len(self.problems)
        super().__init__(f"{source}: invalid site profile ({count} problem{'s' if count != 1 else ''})\n"
                         + "\n".join(self.problems))


def profile_version(content: bytes) -> str:
    """The version recorded with every output: ``sha256:`` + the first 16 hex digits of the content."""
    return "sha256:" + hashlib.sha256(content).hexdigest()[:16]


def load_profile(path: str | Path) -> SiteProfile:
    """Read and validate one profile file; raises :class:`ProfileInvalid` listing every problem."""
    name = str(path)
    try:
        content = Path(path).read_bytes()
    except OSError as exc:
        raise ProfileInvalid(name, [f"{name}:1: (file): cannot read: {exc.strerror or exc}"]) from None
    try:
        text = content.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise ProfileInvalid(name, [f"{name}:1: (file): not UTF-8 text ({exc.reason})"]) from None
    return _parse(text, name, profile_version(content))


def load_profile_text(text: str, name: str = "<profile>") -> SiteProfile:
    """Validate a profile held in memory (the preview API); ``name`` stands for the file in messages."""
    return _parse(text, name, profile_version(text.encode("utf-8")))


def load_profile_dir(directory: str | Path) -> dict[str, SiteProfile]:
    """Every ``*.yaml``/``*.yml`` profile in ``directory``, keyed by site id; all problems raised at once."""
    folder = Path(directory)
    files = sorted([*folder.glob("*.yaml"), *folder.glob("*.yml")])
    profiles: dict[str, SiteProfile] = {}
    where: dict[str, str] = {}
    problems: list[str] = []
    for file in files:
        try:
            profile = load_profile(file)
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
        raise ProfileInvalid(str(folder), problems)
    return profiles


# --------------------------------------------------------------------------- internals


def _parse(text: str, name: str, version: str) -> SiteProfile:
    from mappings.profile import SiteProfile

    if len(text) > MAX_PROFILE_CHARS:
        raise ProfileInvalid(name, [f"{name}:1: (file): larger than {MAX_PROFILE_CHARS} characters"])
    try:
        root = yaml.compose(text, Loader=yaml.SafeLoader)
    except yaml.YAMLError as exc:
        raise ProfileInvalid(name, [_yaml_problem(name, exc)]) from None
    except RecursionError:
        raise ProfileInvalid(name, [f"{name}:1: (yaml): nested too deeply"]) from None
    if not isinstance(root, yaml.MappingNode):
        line = root.start_mark.line + 1 if root is not None else 1
        raise ProfileInvalid(name, [f"{name}:{line}: (root): a profile must be a YAML mapping of fields"])

    lines: dict[_Path, int] = {}
    found: list[tuple[int, str]] = []
    try:
        _index(root, (), lines, found, [MAX_PROFILE_NODES])
    except (_TooLarge, RecursionError):
        raise ProfileInvalid(name, [f"{name}:1: (yaml): more than {MAX_PROFILE_NODES} values once aliases "
                                    "are expanded"]) from None
    try:
        data = yaml.safe_load(text)  # the same document again, now known to be small and well-formed
    except yaml.YAMLError as exc:  # e.g. a tag SafeLoader cannot construct (!!python/object)
        raise ProfileInvalid(name, [_yaml_problem(name, exc)]) from None
    if not isinstance(data, dict):
        raise ProfileInvalid(name, [f"{name}:1: (root): a profile must be a YAML mapping of fields"])
    if "version" in data:
        found.append((lines[("version",)],
                      "version: set by the loader (content hash of the file); remove it from the profile"))
        data = {key: value for key, value in data.items() if key != "version"}
    try:
        profile = SiteProfile.model_validate(data)
    except ValidationError as exc:
        for error in exc.errors(include_url=False):
            loc = tuple(str(part) for part in error["loc"])
            path = _dotted(loc)
            found.append((_line_of(loc, lines), f"{path}: {_reason(error)}"))
    if found:
        found.sort(key=lambda item: item[0])
        raise ProfileInvalid(name, [f"{name}:{line}: {message}" for line, message in found])
    return profile.model_copy(update={"version": version})


def _yaml_problem(name: str, exc: yaml.YAMLError) -> str:
    if isinstance(exc, yaml.MarkedYAMLError):
        mark = exc.problem_mark or exc.context_mark
        line = mark.line + 1 if mark is not None else 1
        return f"{name}:{line}: (yaml): {exc.problem or exc.context}"
    return f"{name}:1: (yaml): {exc}"


def _index(node: yaml.Node, path: _Path, lines: dict[_Path, int], found: list[tuple[int, str]],
           budget: list[int]) -> None:
    """Record the line of every field and list item; report duplicate and non-scalar keys."""
    budget[0] -= 1
    if budget[0] < 0:
        raise _TooLarge
    if isinstance(node, yaml.MappingNode):
        for key_node, value_node in node.value:
            line = key_node.start_mark.line + 1
            if not isinstance(key_node, yaml.ScalarNode):
                found.append((line, f"{_dotted(path)}: keys must be plain scalars"))
                continue
            child = (*path, key_node.value)
            if child in lines:
                found.append((line, f"{_dotted(child)}: duplicate key (also on line {lines[child]})"))
                continue
            lines[child] = line
            _index(value_node, child, lines, found, budget)
    elif isinstance(node, yaml.SequenceNode):
        for i, item in enumerate(node.value):
            child = (*path, str(i))
            lines[child] = item.start_mark.line + 1
            _index(item, child, lines, found, budget)


def _line_of(loc: _Path, lines: dict[_Path, int]) -> int:
    """Line of the field, else of its nearest enclosing field that exists in the file, else 1."""
    parts = tuple(part for part in loc if part != "[key]")
    for end in range(len(parts), 0, -1):
        if parts[:end] in lines:
            return lines[parts[:end]]
    return 1


def _dotted(loc: _Path) -> str:
    out = ""
    for part in loc:
        if part == "[key]":
            continue
        if part.isdigit() and out:
            out += f"[{part}]"
        else:
            out += f".{part}" if out else part
    return out or "(root)"


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
