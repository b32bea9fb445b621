"""The bounded Jinja2 sandbox that renders override templates: every evaluation has a ceiling.

:class:`TemplateLimits` holds the bounds (the gateway fills it from its settings; the defaults here
are the settings' defaults).  :class:`BoundedSandbox` is an
:class:`~jinja2.sandbox.ImmutableSandboxedEnvironment` that, at render time:

* counts *steps* (attribute and item look-ups, calls, filters, operators, loop iterations, output
  chunks) against ``max_steps``, a deterministic budget, and checks the elapsed time against
  ``timeout_ms`` (both per event: all overrides of one event share them; the timeout is a
  backstop: the step budget normally stops a template first, so the same event
  renders the same way on a busy machine);
* refuses ``**`` and ``*`` on integers whose result would exceed :data:`MAX_INT_BITS` bits (big-integer
  arithmetic holds the GIL: ``3**20000000`` froze every thread for 22 s), string and list repetition
  longer than ``max_output_bytes``, and ``%`` string formatting (its width is unbounded);
* offers only an allow-list of filters and string/list/dict methods (:data:`ALLOWED_FILTERS`,
  :data:`ALLOWED_METHODS`), refuses integer arguments above ``max_output_bytes`` (``ljust``,
  ``truncate``...) and any intermediate string or list longer than that;
* offers one global, ``range``, of at most ``max_range`` items; ``lipsum``, ``dict``, ``cycler``,
  ``joiner`` and ``namespace`` do not exist here;
* wraps the iterable of every ``{% for %}`` so each iteration is a step, and every ``~`` so that it
  refuses a list or mapping operand and a result longer than ``max_output_bytes``;
* bounds the items (nested and shared ones counted) of every list, tuple and mapping a template builds
  by ``max_output_bytes``: comparing ``[[[1]*4000]*4000]*4000`` would walk 64e9 items holding the GIL.

:func:`render_bounded` renders through ``Template.generate`` and stops as soon as the output passes
``max_output_bytes`` or the budget runs out, raising :class:`TemplateLimitExceeded`.  The static
refusals of :mod:`mappings.profile.template_rules` run at profile-check time; this module is the
defence in depth that holds even for a template that was never checked.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable, Iterator, Mapping
from contextvars import ContextVar
from dataclasses import dataclass, field
from functools import lru_cache, wraps
from typing import Any, Final

from jinja2 import StrictUndefined, Template, nodes
from jinja2.exceptions import SecurityError
from jinja2.filters import FILTERS as DEFAULT_FILTERS
from jinja2.nodes import EvalContext
from jinja2.runtime import Context
from jinja2.sandbox import ImmutableSandboxedEnvironment
from jinja2.visitor import NodeTransformer

from mappings.er7.escape import escape

__all__ = [
    "ALLOWED_FILTERS",
    "ALLOWED_GLOBALS",
    "ALLOWED_METHODS",
    "CONCAT_GUARD",
    "LOOP_GUARD",
    "VALUE_GUARD",
    "MAX_INT_BITS",
    "REFUSED_GLOBALS",
    "RenderBudget",
    "TemplateLimitExceeded",
    "TemplateLimits",
    "bounded_environment",
    "compile_bounded",
    "render_bounded",
]

#: Integers in a template stay below 2**128 (an HL7 field never needs more; big-integer arithmetic
#: is CPU work that cannot be interrupted).
MAX_INT_BITS: Final = 128

#: Filters an override may use; everything else (``attr``, ``format``, ``center``, ``indent``,
#: ``tojson``, ``map``, ``batch``, ``random``...) is refused at check time and absent at render time.
ALLOWED_FILTERS: Final = frozenset({
    "abs", "capitalize", "count", "d", "default", "first", "float", "int", "join", "last", "length",
    "lower", "max", "min", "replace", "reverse", "round", "sort", "sum", "title", "trim", "truncate",
    "unique", "upper",
})

#: Methods an override may call on a value (str, list or dict from the context).
ALLOWED_METHODS: Final = frozenset({
    "capitalize", "count", "endswith", "find", "get", "index", "isalnum", "isalpha", "isdigit",
    "items", "join", "keys", "ljust", "lower", "lstrip", "partition", "replace", "rjust", "rpartition",
    "rsplit", "rstrip", "split", "startswith", "strip", "title", "upper", "values", "zfill",
})

#: The one global an override may use.
ALLOWED_GLOBALS: Final = frozenset({"range"})
#: Jinja's other default globals, named in the check's refusal.
REFUSED_GLOBALS: Final = frozenset({"lipsum", "dict", "cycler", "joiner", "namespace"})

#: The names under which the sandbox wraps every ``{% for %}`` iterable and every ``~`` (a user
#: template may not use names starting with ``_``, so it cannot call them).
LOOP_GUARD: Final = "_cgt_loop"
CONCAT_GUARD: Final = "_cgt_concat"
VALUE_GUARD: Final = "_cgt_value"


@dataclass(frozen=True)
class TemplateLimits:
    """Bounds of one override evaluation; the gateway builds it from ``template_*`` settings."""

    max_output_bytes: int = 4096  # template_max_output_bytes: UTF-8 bytes of one field's value
    timeout_ms: int = 100  # template_timeout_ms: wall-clock backstop for the overrides of one event
    max_steps: int = 10_000  # template_max_steps: look-ups, calls, operators, iterations per event
    max_range: int = 100  # template_max_range: items a range() may have
    max_loop_nesting: int = 2  # template_max_loop_nesting: {% for %} inside {% for %}...
    timer: Callable[[], float] = field(default=time.perf_counter, compare=False, repr=False)


_SEQUENCES: Final = (str, list, tuple)
_CONTAINERS: Final = (list, tuple, dict, set, range)
#: Filters that turn their value into text: a list or mapping there would be str()-ed whole.
_TEXT_FILTERS: Final = frozenset({"capitalize", "lower", "replace", "title", "trim", "truncate", "upper"})


class TemplateLimitExceeded(Exception):
    """A template went past one of its bounds (output, steps, time, size of a value)."""


@dataclass
class RenderBudget:
    """Steps and time left for the overrides of one event (all its fields share one budget)."""

    limits: TemplateLimits
    deadline: float
    steps: int = 0

    @classmethod
    def start(cls, limits: TemplateLimits) -> RenderBudget:
        return cls(limits, deadline=limits.timer() + limits.timeout_ms / 1000)

    def tick(self) -> None:
        self.steps += 1
        if self.steps > self.limits.max_steps:
            raise TemplateLimitExceeded(
                f"more than {self.limits.max_steps} evaluation steps (template_max_steps)")
        if self.limits.timer() > self.deadline:
            raise TemplateLimitExceeded(f"took longer than {self.limits.timeout_ms} ms (template_timeout_ms)")


_BUDGET: ContextVar[RenderBudget | None] = ContextVar("cgt_template_budget", default=None)


def _tick() -> None:
    budget = _BUDGET.get()
    if budget is not None:
        budget.tick()


def _finalize(value: object) -> str:
    if value is None:
        return ""
    if isinstance(value, bool):
        return "Y" if value else "N"
    if isinstance(value, _CONTAINERS):
        raise TemplateLimitExceeded("renders a list or mapping; use join or an index to pick a value")
    return escape(str(value))


class BoundedSandbox(ImmutableSandboxedEnvironment):
    """The sandbox with the bounds of ``limits`` (see the module docstring)."""

    intercepted_binops = frozenset({"*", "**", "%", "+", "-", "/", "//"})

    def __init__(self, limits: TemplateLimits) -> None:
        super().__init__(undefined=StrictUndefined, finalize=_finalize, autoescape=False,
                         keep_trailing_newline=False)
        self.limits = limits
        self.filters = {name: self._bounded_filter(name, DEFAULT_FILTERS[name]) for name in ALLOWED_FILTERS}
        self.globals = {"range": self._range, LOOP_GUARD: self._loop, CONCAT_GUARD: self._concat,
                        VALUE_GUARD: self._value}

    # -- values
    def _check_weight(self, value: Any) -> None:
        """Refuse a container holding more than the cap of items, nested and shared ones included."""
        cap = self.limits.max_output_bytes
        weights: dict[int, int] = {}

        def weigh(item: Any) -> int:
            if not isinstance(item, (list, tuple, dict, set, frozenset)):
                return 1
            known = weights.get(id(item))
            if known is not None:
                return known
            total = 1
            for part in (*item.keys(), *item.values()) if isinstance(item, dict) else item:
                total += weigh(part)
                if total > cap:
                    raise TemplateLimitExceeded(
                        f"a list or mapping holding more than {cap} items (template_max_output_bytes)")
            weights[id(item)] = total
            return total
        weigh(value)

    def _check_value(self, value: Any) -> Any:
        cap = self.limits.max_output_bytes
        self._check_weight(value)
        if isinstance(value, (str, list, tuple)) and len(value) > cap:
            raise TemplateLimitExceeded(
                f"a value longer than {cap} (template_max_output_bytes) was produced")
        if isinstance(value, int) and value.bit_length() > MAX_INT_BITS:
            raise TemplateLimitExceeded(f"an integer above 2**{MAX_INT_BITS} (big-integer arithmetic)")
        return value

    def _check_args(self, args: Iterable[Any]) -> None:
        cap = self.limits.max_output_bytes
        for arg in args:
            if isinstance(arg, int) and not isinstance(arg, bool) and abs(arg) > cap:
                raise TemplateLimitExceeded(
                    f"an argument of {arg} is above {cap} (template_max_output_bytes)")

    def _check_replace(self, text: Any, old: Any, new: Any) -> None:
        if isinstance(text, str) and isinstance(old, str) and isinstance(new, str):
            count = len(text) + 1 if old == "" else text.count(old)
            if len(text) + count * (len(new) - len(old)) > self.limits.max_output_bytes:
                raise TemplateLimitExceeded(
                    f"replace would produce more than {self.limits.max_output_bytes} characters")

    # -- hooks the sandbox routes through
    def call_binop(self, context: Context, operator: str, left: Any, right: Any) -> Any:
        _tick()
        cap = self.limits.max_output_bytes
        if operator == "**":
            if isinstance(left, int) and isinstance(right, int) and (
                    right < 0 or max(abs(left).bit_length(), 1) * right > MAX_INT_BITS):
                raise TemplateLimitExceeded("'**' with a result above 2**128 (big-integer arithmetic)")
        elif operator == "*":
            for seq, times in ((left, right), (right, left)):
                if isinstance(seq, (str, list, tuple)) and isinstance(times, int):
                    if len(seq) * max(times, 0) > cap:
                        raise TemplateLimitExceeded(
                            f"repetition longer than {cap} (template_max_output_bytes)")
            if isinstance(left, int) and isinstance(right, int) and (
                    left.bit_length() + right.bit_length() > MAX_INT_BITS):
                raise TemplateLimitExceeded(f"a product above 2**{MAX_INT_BITS} (big-integer arithmetic)")
        elif operator == "%" and isinstance(left, str):
            raise TemplateLimitExceeded("'%' string formatting is not allowed; use '~' and filters")
        elif operator == "+" and isinstance(left, _SEQUENCES) and isinstance(right, _SEQUENCES):
            if len(left) + len(right) > cap:
                raise TemplateLimitExceeded(f"a value longer than {cap} (template_max_output_bytes)")
        return self._check_value(super().call_binop(context, operator, left, right))

    def getattr(self, obj: Any, attribute: str) -> Any:
        _tick()
        return super().getattr(obj, attribute)

    def getitem(self, obj: Any, argument: Any) -> Any:
        _tick()
        return super().getitem(obj, argument)

    def call(__self, __context: Context, __obj: Any, *args: Any, **kwargs: Any) -> Any:  # noqa: N805
        _tick()
        name = getattr(__obj, "__name__", "")
        owner = getattr(__obj, "__self__", None)
        is_method = isinstance(owner, (str, list, tuple, dict)) and name in ALLOWED_METHODS
        own = any(__obj is __self.globals.get(g) for g in ("range", LOOP_GUARD, CONCAT_GUARD, VALUE_GUARD))
        if not (is_method or own):
            raise SecurityError(f"calling {name or type(__obj).__name__!r} is not allowed in an override")
        if is_method:  # range() checks its own size
            __self._check_args([*args, *kwargs.values()])
        if name == "replace" and len(args) >= 2:
            __self._check_replace(owner, args[0], args[1])
        if name == "join" and isinstance(owner, str) and args and isinstance(args[0], (list, tuple)):
            total = sum(len(x) for x in args[0] if isinstance(x, str)) + len(owner) * len(args[0])
            if total > __self.limits.max_output_bytes:
                raise TemplateLimitExceeded(
                    f"join would produce more than {__self.limits.max_output_bytes} characters")
        return __self._check_value(super().call(__context, __obj, *args, **kwargs))

    # -- globals and filters
    def _range(self, *args: int) -> range:
        _tick()
        span = range(*args)
        if len(span) > self.limits.max_range:
            raise TemplateLimitExceeded(
                f"range() of {len(span)} items; at most {self.limits.max_range} (template_max_range)")
        return span

    def _value(self, value: Any) -> Any:  # a list, tuple or mapping literal
        _tick()
        return self._check_value(value)

    def _loop(self, iterable: Iterable[Any]) -> Iterator[Any]:
        for item in iterable:
            _tick()
            yield item

    def _concat(self, *parts: Any) -> str:
        size = 0
        texts = []
        for part in parts:
            if isinstance(part, _CONTAINERS):
                raise TemplateLimitExceeded("'~' of a list or mapping; use join or an index to pick a value")
            text = str(part)
            size += len(text)
            if size > self.limits.max_output_bytes:
                raise TemplateLimitExceeded(
                    f"a value longer than {self.limits.max_output_bytes} (template_max_output_bytes)")
            texts.append(text)
        return "".join(texts)

    def _bounded_filter(self, name: str, func: Callable[..., Any]) -> Callable[..., Any]:
        @wraps(func)
        def bounded(*args: Any, **kwargs: Any) -> Any:
            _tick()
            plain = [a for a in args if not isinstance(a, (EvalContext, Context)) and a is not self]
            self._check_args(plain[1:] + list(kwargs.values()))
            if name in _TEXT_FILTERS and plain and isinstance(plain[0], _CONTAINERS):
                raise TemplateLimitExceeded(f"filter '{name}' of a list or mapping; use join or an index")
            if name == "join" and plain and isinstance(plain[0], (list, tuple)) and any(
                    isinstance(x, _CONTAINERS) for x in plain[0]):
                raise TemplateLimitExceeded("join of lists or mappings; join values")
            if name == "replace" and len(plain) >= 3:
                self._check_replace(plain[0], plain[1], plain[2])
            if name == "join" and isinstance(plain[0], (list, tuple)) and all(
                    isinstance(x, str) for x in plain[0]):
                separator = plain[1] if len(plain) > 1 and isinstance(plain[1], str) else ""
                if sum(map(len, plain[0])) + len(separator) * len(plain[0]) > self.limits.max_output_bytes:
                    raise TemplateLimitExceeded(
                        f"join would produce more than {self.limits.max_output_bytes} characters")
            return self._check_value(func(*args, **kwargs))

        return bounded


@lru_cache(maxsize=8)
def bounded_environment(limits: TemplateLimits) -> BoundedSandbox:
    """The shared sandbox for ``limits`` (one per distinct set of limits)."""
    return BoundedSandbox(limits)


class _Guards(NodeTransformer):
    """Route ``~`` and list, tuple and mapping literals through guards (loops: see :func:`_guard`)."""

    def _weighed(self, node: nodes.Expr) -> nodes.Node:
        self.generic_visit(node)
        return nodes.Call(nodes.Name(VALUE_GUARD, "load", lineno=node.lineno), [node], [], None, None,
                          lineno=node.lineno)

    def visit_List(self, node: nodes.List) -> nodes.Node:
        return self._weighed(node)

    def visit_Dict(self, node: nodes.Dict) -> nodes.Node:
        return self._weighed(node)

    def visit_Tuple(self, node: nodes.Tuple) -> nodes.Node:
        if node.ctx != "load":
            return self.generic_visit(node) or node
        return self._weighed(node)

    def visit_Concat(self, node: nodes.Concat) -> nodes.Node:
        self.generic_visit(node)
        return nodes.Call(nodes.Name(CONCAT_GUARD, "load", lineno=node.lineno), node.nodes, [], None, None,
                          lineno=node.lineno)


def _guard(ast: nodes.Template) -> nodes.Template:
    for loop in ast.find_all(nodes.For):
        guard = nodes.Name(LOOP_GUARD, "load", lineno=loop.lineno)
        loop.iter = nodes.Call(guard, [loop.iter], [], None, None, lineno=loop.lineno)
    guarded = _Guards().visit(ast)
    assert isinstance(guarded, nodes.Template)
    return guarded


@lru_cache(maxsize=512)
def compile_bounded(source: str, limits: TemplateLimits) -> Template:
    """The compiled template (cached); every ``{% for %}`` iterable and ``~`` goes through a guard.

    Raises ``TemplateSyntaxError``.
    """
    env = bounded_environment(limits)
    ast = _guard(env.parse(source))
    return env.template_class.from_code(env, env.compile(ast), env.make_globals(None), None)


def render_bounded(source: str, context: Mapping[str, Any], limits: TemplateLimits,
                   budget: RenderBudget | None = None) -> str:
    """Render ``source`` chunk by chunk within ``limits``; raises :class:`TemplateLimitExceeded`.

    ``budget`` (steps and deadline) may be shared by several renders: the overrides of one event
    share one, so a profile with many fields cannot multiply the work.  The output cap is per field.
    """
    template = compile_bounded(source, limits)
    budget = budget if budget is not None else RenderBudget.start(limits)
    token = _BUDGET.set(budget)
    try:
        parts: list[str] = []
        size = 0
        for chunk in template.generate(**context):
            budget.tick()
            size += len(chunk.encode("utf-8"))
            if size > limits.max_output_bytes:
                raise TemplateLimitExceeded(
                    f"output longer than {limits.max_output_bytes} bytes (template_max_output_bytes)")
            parts.append(chunk)
        return "".join(parts)
    finally:
        _BUDGET.reset(token)
