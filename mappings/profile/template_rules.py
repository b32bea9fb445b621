"""Static rules for override templates, applied when a profile is checked (start-up, CLI, preview).

Each refusal names its rule, so a profile author knows what to change:

==========================  =====================================================================
``template-statement``      only ``{{ }}``, ``{% if %}``, ``{% for %}`` and ``{% set x = ... %}``;
                            no macros, call/filter blocks, includes, imports, blocks or ``with``
``template-power``          ``**`` (big-integer arithmetic)
``template-repeat``         ``*`` with constant factors whose product exceeds the output cap
``template-format``         ``'...' % value`` string formatting
``template-global``         ``lipsum``, ``dict``, ``cycler``, ``joiner``, ``namespace``, and any
                            name starting with ``_``
``template-attribute``      an attribute or key starting with ``_`` (``__class__``...)
``template-filter``         a filter outside :data:`~mappings.profile.template_sandbox.ALLOWED_FILTERS`
                            (``attr``, ``format``, ``center``, ``tojson``, ``map``, ``random``...)
``template-call``           calling anything but ``range`` and the allowed value methods
``template-argument``       a constant integer argument above the output cap (``ljust(10**9)``)
``template-range``          a ``range`` with constant bounds of more than ``max_range`` items
``template-loop``           a recursive loop, or loops nested deeper than ``max_loop_nesting``
``template-set``            a ``{% set %}`` whose value uses a variable set by ``{% set %}``
                            (``{% set s = s ~ s %}`` a hundred times doubles a string a hundred times)
==========================  =====================================================================

The rules only look at the template's syntax tree; :mod:`mappings.profile.template_sandbox` bounds
what remains at render time.
"""

from __future__ import annotations

from typing import Final

from jinja2 import nodes

from mappings.profile.template_sandbox import (
    ALLOWED_FILTERS,
    ALLOWED_GLOBALS,
    ALLOWED_METHODS,
    REFUSED_GLOBALS,
    TemplateLimits,
)

__all__ = ["rule_problems"]

_EXPRESSIONS: Final = (
    nodes.Name, nodes.Const, nodes.Getattr, nodes.Getitem, nodes.Slice, nodes.Concat, nodes.Compare,
    nodes.Operand, nodes.And, nodes.Or, nodes.Not, nodes.Neg, nodes.Pos, nodes.CondExpr, nodes.Filter,
    nodes.Test, nodes.Call, nodes.List, nodes.Tuple, nodes.Dict, nodes.Pair, nodes.Keyword, nodes.Add,
    nodes.Sub, nodes.Mul, nodes.Div, nodes.FloorDiv, nodes.Mod, nodes.Pow, nodes.TemplateData,
)
_STATEMENTS: Final = (nodes.Template, nodes.Output, nodes.If, nodes.For, nodes.Assign)

_TAGS: Final[dict[type[nodes.Node], str]] = {
    nodes.Macro: "macro", nodes.CallBlock: "call", nodes.FilterBlock: "filter", nodes.Include: "include",
    nodes.Import: "import", nodes.FromImport: "from ... import", nodes.Extends: "extends",
    nodes.Block: "block", nodes.With: "with", nodes.AssignBlock: "set ... endset", nodes.Scope: "scope",
    nodes.ScopedEvalContextModifier: "autoescape", nodes.EvalContextModifier: "autoescape",
    nodes.ExprStmt: "do", nodes.Break: "break", nodes.Continue: "continue",
}


def _const_int(node: nodes.Node) -> int | None:
    if isinstance(node, nodes.Const) and isinstance(node.value, int) and not isinstance(node.value, bool):
        return node.value
    if isinstance(node, nodes.Neg):
        inner = _const_int(node.node)
        return None if inner is None else -inner
    return None


def _factors(node: nodes.Node) -> list[int]:
    """Constant integer factors of a chain of ``*`` (``'A' * 4000 * 4000`` -> [4000, 4000])."""
    if isinstance(node, nodes.Mul):
        return _factors(node.left) + _factors(node.right)
    value = _const_int(node)
    return [] if value is None else [abs(value)]


class _Rules:
    def __init__(self, limits: TemplateLimits) -> None:
        self.limits = limits
        self.found: list[str] = []

    def add(self, rule: str, reason: str) -> None:
        message = f"{reason} (rule {rule})"
        if message not in self.found:
            self.found.append(message)

    def visit(self, node: nodes.Node, depth: int) -> None:
        cap = self.limits.max_output_bytes
        if not isinstance(node, _STATEMENTS + _EXPRESSIONS):
            tag = _TAGS.get(type(node), type(node).__name__)
            self.add("template-statement", f"'{{% {tag} %}}' is not allowed in an override template; "
                                           "use {{ }}, if, for and set")
            return
        if isinstance(node, nodes.For):
            depth += 1
            if node.recursive:
                self.add("template-loop", "a recursive loop is not allowed in an override template")
            if depth > self.limits.max_loop_nesting:
                self.add("template-loop", f"loops nested {depth} deep; at most "
                                          f"{self.limits.max_loop_nesting} (template_max_loop_nesting)")
        elif isinstance(node, nodes.Pow):
            self.add("template-power", "'**' is not allowed in an override template (big-integer arithmetic)")
        elif isinstance(node, nodes.Mul):
            product = 1
            for factor in _factors(node):
                product *= factor
                if product > cap:
                    self.add("template-repeat", f"'*' with a factor product above {cap} "
                                                "(template_max_output_bytes)")
                    break
        elif isinstance(node, nodes.Mod) and isinstance(node.left, nodes.Const) and isinstance(
                node.left.value, str):
            self.add("template-format", "'%' string formatting is not allowed; use '~' and filters")
        elif isinstance(node, nodes.Name) and node.ctx == "load":
            self._name(node.name)
        elif isinstance(node, nodes.Name) and node.name.startswith("_"):
            self.add("template-global", f"names starting with '_' ('{node.name}') are not allowed")
        elif isinstance(node, nodes.Getattr) and node.attr.startswith("_"):
            self.add("template-attribute", f"attribute '{node.attr}' is not allowed in an override template")
        elif isinstance(node, nodes.Getitem) and isinstance(node.arg, nodes.Const) and isinstance(
                node.arg.value, str) and node.arg.value.startswith("_"):
            self.add("template-attribute",
                     f"attribute '{node.arg.value}' is not allowed in an override template")
        elif isinstance(node, nodes.Filter) and node.name not in ALLOWED_FILTERS:
            self.add("template-filter", f"filter '{node.name}' is not allowed in an override template; "
                                        f"allowed: {', '.join(sorted(ALLOWED_FILTERS))}")
        elif isinstance(node, nodes.Call):
            self._call(node)
        if isinstance(node, (nodes.Call, nodes.Filter)):
            for arg in [*node.args, *(k.value for k in node.kwargs)]:
                value = _const_int(arg)
                if value is not None and abs(value) > cap:
                    self.add("template-argument",
                             f"argument {value} is above {cap} (template_max_output_bytes)")
        for child in node.iter_child_nodes():
            self.visit(child, depth)

    def _name(self, name: str) -> None:
        if name.startswith("_"):
            self.add("template-global", f"names starting with '_' ('{name}') are not allowed")
        elif name in REFUSED_GLOBALS:
            self.add("template-global", f"'{name}' is not available in an override template; "
                                        f"the only global is {', '.join(sorted(ALLOWED_GLOBALS))}")

    def _call(self, node: nodes.Call) -> None:
        callee = node.node
        if isinstance(callee, nodes.Name) and callee.name == "range":
            bounds = [_const_int(arg) for arg in node.args]
            if node.args and all(b is not None for b in bounds) and not node.kwargs:
                try:
                    size = len(range(*[b for b in bounds if b is not None]))
                except (TypeError, ValueError):
                    size = 0
                if size > self.limits.max_range:
                    self.add("template-range", f"range() of {size} items; at most {self.limits.max_range} "
                                               "(template_max_range)")
            return
        if isinstance(callee, nodes.Getattr) and callee.attr in ALLOWED_METHODS:
            return
        if isinstance(callee, nodes.Name) and callee.name in REFUSED_GLOBALS:
            return  # reported as template-global
        what = callee.attr if isinstance(callee, nodes.Getattr) else getattr(callee, "name", "this")
        self.add("template-call", f"calling '{what}' is not allowed in an override template; "
                                  f"allowed: range() and the methods {', '.join(sorted(ALLOWED_METHODS))}")


def _names(node: nodes.Node) -> set[str]:
    found = {n.name for n in node.find_all(nodes.Name)}
    return found | {node.name} if isinstance(node, nodes.Name) else found


def _compounding_sets(ast: nodes.Template, rules: _Rules) -> None:
    assigned = set().union(*(_names(assign.target) for assign in ast.find_all(nodes.Assign)))
    for assign in ast.find_all(nodes.Assign):
        used = sorted(_names(assign.node) & assigned)
        if used:
            rules.add("template-set", f"a {{% set %}} value may not use a variable set by {{% set %}} "
                                      f"('{used[0]}'): values would compound")


def rule_problems(ast: nodes.Template, limits: TemplateLimits) -> list[str]:
    """Every rule ``ast`` breaks, each as ``reason (rule template-...)``, in template order."""
    rules = _Rules(limits)
    rules.visit(ast, 0)
    _compounding_sets(ast, rules)
    return rules.found
