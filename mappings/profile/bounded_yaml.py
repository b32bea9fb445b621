"""Compose a profile's YAML with its bounds enforced *while* composing, not after.

:func:`compose_bounded` builds PyYAML's node tree (which keeps line numbers) with a composer that
counts, as it goes:

* nodes, with every alias counted as the whole subtree it stands for (a "billion laughs" document
  or a 1 MB flat list stops at ``max_nodes`` after reading only that many values);
* aliases (``max_aliases``), refusing an alias to a node that contains it (a recursive document);
* nesting depth (:data:`MAX_DEPTH`);

and records, without stopping, every duplicate mapping key (``path: duplicate key (also on line
n)``) and non-scalar key.  A bound that is passed raises :class:`YamlTooLarge` with the line where it
happened.  The caller checks the size of the text before calling (``profile_max_bytes``).  The
libyaml parser is used when PyYAML has it (C speed); only the composing is in Python.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Final

from yaml.composer import Composer, ComposerError
from yaml.constructor import SafeConstructor
from yaml.events import AliasEvent, MappingEndEvent, SequenceEndEvent
from yaml.nodes import MappingNode, Node, ScalarNode, SequenceNode
from yaml.resolver import Resolver

__all__ = ["MAX_DEPTH", "Composed", "YamlTooLarge", "compose_bounded", "dotted"]

#: Nesting deeper than this is refused (a profile is at most a few levels deep).
MAX_DEPTH: Final = 64

Path = tuple[str, ...]
_MERGE: Final = "tag:yaml.org,2002:merge"

try:
    from yaml.cyaml import CParser as _Parser  # type: ignore[attr-defined]
except ImportError:  # pragma: no cover - PyYAML without libyaml
    from yaml.parser import Parser
    from yaml.reader import Reader
    from yaml.scanner import Scanner

    class _Parser(Reader, Scanner, Parser):  # type: ignore[no-redef]
        def __init__(self, stream: str) -> None:
            Reader.__init__(self, stream)
            Scanner.__init__(self)
            Parser.__init__(self)


class YamlTooLarge(Exception):
    """A bound was passed while composing; ``line`` is where (1-based)."""

    def __init__(self, line: int, reason: str) -> None:
        super().__init__(reason)
        self.line = line
        self.reason = reason


@dataclass
class Composed:
    """The composed root, the line of every field and list item, and the problems found on the way."""

    root: Node | None
    lines: dict[Path, int] = field(default_factory=dict)
    problems: list[tuple[int, str]] = field(default_factory=list)
    unlisted: int = 0  # problems found past max_problems (counted, not kept)


def dotted(loc: Path) -> str:
    """``("hl7v2", "overrides", "OBR-4")`` -> ``hl7v2.overrides.OBR-4``; list indexes as ``[0]``."""
    out = ""
    for part in loc:
        if part == "[key]":
            continue
        if part.isdigit() and out:
            out += f"[{part}]"
        else:
            out += f".{part}" if out else part
    return out or "(root)"


class _BoundedComposer(Composer):
    if TYPE_CHECKING:  # provided by the parser and the resolver the loader mixes in
        def peek_event(self) -> Any: ...
        def check_event(self, *choices: Any) -> bool: ...
        def get_event(self) -> Any: ...
        def resolve(self, kind: Any, value: Any, implicit: Any) -> str: ...

    def setup(self, max_nodes: int, max_aliases: int, max_problems: int, composed: Composed) -> None:
        self.max_nodes, self.max_aliases, self.max_problems = max_nodes, max_aliases, max_problems
        self.composed = composed
        self.nodes = 0
        self.aliases = 0
        self.sizes: dict[int, int] = {}  # id(anchored node) -> nodes it stands for, once composed
        self.path: list[str] = []

    def _count(self, amount: int, line: int) -> None:
        self.nodes += amount
        if self.nodes > self.max_nodes:
            raise YamlTooLarge(line, f"more than {self.max_nodes} values once aliases are expanded "
                                     "(profile_max_nodes)")

    def _problem(self, line: int, message: str) -> None:
        if len(self.composed.problems) < self.max_problems:
            self.composed.problems.append((line, message))
        else:
            self.composed.unlisted += 1

    def compose_node(self, parent: Node | None, index: Any) -> Node:
        event = self.peek_event()
        line = event.start_mark.line + 1
        if len(self.path) > MAX_DEPTH:
            raise YamlTooLarge(line, f"nested more than {MAX_DEPTH} levels deep")
        if self.check_event(AliasEvent):
            self.get_event()
            self.aliases += 1
            if self.aliases > self.max_aliases:
                raise YamlTooLarge(line, f"more than {self.max_aliases} aliases (profile_max_aliases)")
            if event.anchor not in self.anchors:
                raise ComposerError(None, None, f"found undefined alias {event.anchor!r}",
                                                  event.start_mark)
            target = self.anchors[event.anchor]
            size = self.sizes.get(id(target))
            if size is None:
                raise YamlTooLarge(line, f"alias *{event.anchor} refers to a node that contains it")
            self._count(size, line)
            return target
        before = self.nodes
        self._count(1, line)
        node = super().compose_node(parent, index)
        assert node is not None
        if event.anchor is not None:
            self.sizes[id(node)] = self.nodes - before
        return node

    def compose_sequence_node(self, anchor: Any) -> SequenceNode:
        start = self.get_event()
        tag = start.tag
        if tag is None or tag == "!":
            tag = self.resolve(SequenceNode, None, start.implicit)
        node = SequenceNode(tag, [], start.start_mark, None, flow_style=start.flow_style)
        if anchor is not None:
            self.anchors[anchor] = node
        index = 0
        while not self.check_event(SequenceEndEvent):
            item_line = self.peek_event().start_mark.line + 1
            self.path.append(str(index))
            self.composed.lines.setdefault(tuple(self.path), item_line)
            node.value.append(self.compose_node(node, index))
            self.path.pop()
            index += 1
        node.end_mark = self.get_event().end_mark
        return node

    def compose_mapping_node(self, anchor: Any) -> MappingNode:
        start = self.get_event()
        tag = start.tag
        if tag is None or tag == "!":
            tag = self.resolve(MappingNode, None, start.implicit)
        node = MappingNode(tag, [], start.start_mark, None, flow_style=start.flow_style)
        if anchor is not None:
            self.anchors[anchor] = node
        seen: dict[str, int] = {}
        while not self.check_event(MappingEndEvent):
            key_event = self.peek_event()
            line = key_event.start_mark.line + 1
            key = self.compose_node(node, None)
            if not isinstance(key, ScalarNode):
                self._problem(line, f"{dotted(tuple(self.path))}: keys must be plain scalars")
                self.path.append("[key]")
            elif key.tag != _MERGE and key.value in seen:
                self._problem(line, f"{dotted((*self.path, key.value))}: duplicate key "
                                    f"(also on line {seen[key.value]})")
                self.path.append("[duplicate]")
            else:
                seen[key.value] = line
                self.path.append(key.value)
                self.composed.lines.setdefault(tuple(self.path), line)
            value = self.compose_node(node, key)
            self.path.pop()
            node.value.append((key, value))
        node.end_mark = self.get_event().end_mark
        return node


class _BoundedLoader(_BoundedComposer, _Parser, SafeConstructor, Resolver):
    def __init__(self, stream: str) -> None:
        _Parser.__init__(self, stream)
        Composer.__init__(self)
        SafeConstructor.__init__(self)
        Resolver.__init__(self)


def compose_bounded(text: str, *, max_nodes: int, max_aliases: int,
                    max_problems: int) -> tuple[Composed, Any]:
    """The composed document and its Python value (safe types only).

    Raises :class:`YamlTooLarge` when a bound is passed, ``yaml.YAMLError`` for malformed YAML or a
    tag the safe constructor refuses.
    """
    composed = Composed(root=None)
    loader = _BoundedLoader(text)
    try:
        loader.setup(max_nodes, max_aliases, max_problems, composed)
        composed.root = loader.get_single_node()
        data = loader.construct_document(composed.root) if composed.root is not None else None
    finally:
        loader.dispose()
    return composed, data

