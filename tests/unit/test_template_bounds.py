"""Issue 11: override templates are bounded.

At profile-check time the dangerous constructs are refused with the rule named
(``file:line: hl7v2.overrides.OBR-4: ... (rule template-...)``); at render time the same bounds hold
for a template that was never checked (defence in depth: a live profile can't hang delivery), a field
whose template passes a bound keeps its default value and the translation records a mapping issue;
with ``demographics: mrn_only`` no name, birth date or sex reaches a template.
"""

from __future__ import annotations

import time
from typing import Any

import pytest

from mappings.profile.loader import ProfileInvalid, ProfileLimits, load_profile_text
from mappings.profile.schema import SiteProfile
from mappings.profile.template_sandbox import ALLOWED_FILTERS
from mappings.profile.templates import (
    TemplateLimits,
    TemplateRenderError,
    check_template,
    context_schema,
    render_template,
)
from tests.unit.hl7v2_cases import journey, profile, render, variant

FIXTURE = "fixtures/profiles/site-a.yaml"


def _yaml_str(template: str) -> str:
    return "'" + template.replace("'", "''") + "'"


def _draft(template: str, *, demographics: str = "full") -> str:
    with open(FIXTURE, encoding="utf-8") as handle:
        text = handle.read()
    text = text.replace("demographics: full", f"demographics: {demographics}")
    return text + f"  overrides:\n    OBR-4: {_yaml_str(template)}\n"


def _draft_problems(template: str, **kwargs: Any) -> list[str]:
    with pytest.raises(ProfileInvalid) as caught:
        load_profile_text(_draft(template, **kwargs), "site-a.yaml")
    return caught.value.problems


OVERRIDE_LINE = _draft("x").count("\n")  # the override is the file's last line


# ----------------------------------------------------------------------------- check time: the rules


@pytest.mark.parametrize(("template", "rule"), [
    ("{{ 3**20000000 }}", "template-power"),
    ("{{ 'A'*200000000 }}", "template-repeat"),
    ("{{ 'A'*4000*4000 }}", "template-repeat"),
    ("{% for a in range(100000) %}{% for b in range(100000) %}x{% endfor %}{% endfor %}", "template-range"),
    ("{% for a in range(10**5) %}{% for b in range(10**5) %}{% endfor %}{% endfor %}", "template-power"),
    ("{% for a in range(9) %}{% for b in range(9) %}{% for c in range(9) %}"
     "{% endfor %}{% endfor %}{% endfor %}",
     "template-loop"),
    ("{% for x in order.patient.given recursive %}{{ loop(x) }}{% endfor %}", "template-loop"),
    ("{{ lipsum() }}", "template-global"),
    ("{{ cycler(1, 2).next() }}", "template-global"),
    ("{{ namespace(a=1).a }}", "template-global"),
    ("{{ dict(a=1) }}", "template-global"),
    ("{{ joiner('^')() }}", "template-global"),
    ("{{ order | attr('coi') }}", "template-filter"),
    ("{{ order.coi | center(200000000) }}", "template-filter"),
    ("{{ order.coi | format(1) }}", "template-filter"),
    ("{{ order | tojson }}", "template-filter"),
    ("{{ order.coi | random }}", "template-filter"),
    ("{{ '%0200000000d' % 1 }}", "template-format"),
    ("{{ order.coi.format(1) }}", "template-call"),
    ("{{ order.coi.ljust(200000000) }}", "template-argument"),
    ("{{ order.coi | truncate(200000000) }}", "template-argument"),
    ("{% macro m() %}x{% endmacro %}{{ m() }}", "template-statement"),
    ("{% filter upper %}x{% endfilter %}", "template-statement"),
    ("{% with a = 1 %}{{ a }}{% endwith %}", "template-statement"),
    ("{% include 'x' %}", "template-statement"),
    ("{{ _cgt_loop([1]) }}", "template-global"),
    ("{{ range.__class__.__mro__ }}", "template-attribute"),
    ("{% set s = order.coi * 4000 %}" + "{% set s = s ~ s %}" * 60 + "{{ s | length }}", "template-set"),
    ("{% set s = [order] %}" + "{% set s = [s, s] %}" * 60 + "{{ s == [order] }}", "template-set"),
    ("{{ order.note['__class__'] }}", "template-attribute"),
])
def test_dangerous_construct_is_refused_at_check_time_naming_the_rule(template: str, rule: str) -> None:
    started = time.perf_counter()
    problems = _draft_problems(template)
    assert time.perf_counter() - started < 10.0
    assert len(problems) == 1, problems
    prefix = f"site-a.yaml:{OVERRIDE_LINE}: hl7v2.overrides.OBR-4: "
    assert problems[0].startswith(prefix), problems
    assert f"(rule {rule})" in problems[0]


def test_the_ordinary_templates_still_pass() -> None:
    for template in (
        "{{ product.local_code }}^{{ product.display }}^L",
        "{{ order.patient.family | upper }}^{{ order.patient.given | join(' ') }}",
        "{% for g in order.patient.given %}{{ g | title }}{% if not loop.last %} {% endif %}{% endfor %}",
        "{{ event.data.reason | default('none') | truncate(20) }}",
        "{% for i in range(3) %}{% for j in range(2) %}{{ i * j }}{% endfor %}{% endfor %}",
        "{% set code = product.local_code.replace('-', '') %}{{ code.zfill(12) }}",
        "{{ (order.coi ~ '0000')[:4] }}",
    ):
        check_template(template)


def test_limits_come_from_the_caller() -> None:
    tight = TemplateLimits(max_output_bytes=16, max_range=5, max_loop_nesting=1)
    for template, rule in (("{{ 'x' * 17 }}", "template-repeat"), ("{{ range(6) | join }}", "template-range"),
                           ("{% for a in range(2) %}{% for b in range(2) %}{% endfor %}{% endfor %}",
                            "template-loop")):
        check_template(template)  # fine under the default limits
        with pytest.raises(ValueError, match=f"rule {rule}"):
            check_template(template, tight)
    limits = ProfileLimits(templates=tight)
    with pytest.raises(ProfileInvalid, match="template-range"):
        load_profile_text(_draft("{{ range(6) | join }}"), "site-a.yaml", limits)


def test_filters_are_an_allow_list_without_introspection() -> None:
    assert not ALLOWED_FILTERS & {"attr", "format", "center", "indent", "tojson", "pprint", "map",
                                   "selectattr", "xmlattr", "random", "batch", "slice", "wordwrap"}


# ----------------------------------------------------------------------------- render time: defence in depth


CONTEXT = {"order": {"coi": "W1234", "note": "abc", "patient": {"given": ["A", "B"]}},
           "product": {"local_code": "X", "display": "Y"}}


@pytest.mark.parametrize(("template", "reason"), [
    ("{{ 3**20000000 }}", "big-integer"),
    ("{{ 'A'*200000000 }}", "template_max_output_bytes"),
    ("{{ 'A'*4000*4000 }}", "template_max_output_bytes"),
    ("{{ 99999999999999999999 * 99999999999999999999 * 99999999999999999999 }}", "big-integer"),
    ("{% for a in range(100000) %}{% for b in range(100000) %}{% endfor %}{% endfor %}",
     "template_max_range"),
    ("{% for a in range(100) %}{% for b in range(100) %}{% for c in range(100) %}{% endfor %}{% endfor %}"
     "{% endfor %}", "template_max_steps"),
    ("{% for a in range(100) %}{{ 'x' * 100 }}{% endfor %}", "template_max_output_bytes"),
    ("{{ order.note.ljust(200000000) }}", "template_max_output_bytes"),
    ("{{ (order.note * 1000).replace('', order.note * 1000) }}", "4096 characters"),
    ("{{ '%0200000000d' % 1 }}", "string formatting"),
    ("A\x1cB{{ order.coi }}", "control character"),  # an MLLP block byte would end the frame early
    ("{{ lipsum(100000) }}", "failed"),
    ("{{ order.coi.format(1) }}", "not allowed"),
    ("{{ order }}", "list or mapping"),
    ("{{ order ~ '' }}", "list or mapping"),
    ("{{ order.note * 4000 ~ order.note * 4000 }}", "template_max_output_bytes"),
    ("{% set s = [order, order] %}{{ s | upper }}", "list or mapping"),
    ("{{ [order.patient.given, order.patient.given] | join }}", "join of lists"),
    ("{{ (order.note * 1000).join([order.note * 1000] * 4) }}", "join would produce more than 4096"),
    ("{% set s = order.note * 4000 %}{% set s = s ~ s %}{% set s = s ~ s %}{{ s | length }}",
     "template_max_output_bytes"),
])
def test_an_unchecked_template_is_stopped_at_render_time(template: str, reason: str) -> None:
    started = time.perf_counter()
    with pytest.raises(TemplateRenderError, match=reason):
        render_template(template, CONTEXT)
    assert time.perf_counter() - started < 10.0


def test_output_exactly_at_the_cap_is_fine_and_one_byte_more_is_not() -> None:
    assert render_template("{{ 'x' * 4096 }}", CONTEXT) == "x" * 4096
    with pytest.raises(TemplateRenderError, match="output longer than 4096 bytes"):
        render_template("{{ 'x' * 4096 }}é", CONTEXT)


def test_the_step_budget_is_deterministic() -> None:
    limits = TemplateLimits(max_steps=50, timeout_ms=60_000)
    template = "{% for a in range(40) %}{{ a }}{% endfor %}"
    for _ in range(3):
        with pytest.raises(TemplateRenderError, match="more than 50 evaluation steps"):
            render_template(template, CONTEXT, limits)
    assert render_template(template, CONTEXT, TemplateLimits(max_steps=200)) == "".join(map(str, range(40)))


def test_the_timeout_is_a_backstop() -> None:
    ticks = iter(range(0, 10_000_000, 1))
    limits = TemplateLimits(timeout_ms=5, timer=lambda: next(ticks) / 1000)  # each look at the clock: +1 ms
    with pytest.raises(TemplateRenderError, match="longer than 5 ms"):
        render_template("{% for a in range(50) %}{{ a }}{% endfor %}", CONTEXT, limits)


def _live_variant(site_id: str, template: str, **more: str) -> SiteProfile:
    """The demo profile with an override that never went through the check (model_copy validates nothing)."""
    base = profile(site_id)
    hl7v2 = base.hl7v2.model_copy(update={"overrides": {"OBR-4": template, **more}})
    return base.model_copy(update={"hl7v2": hl7v2})


def test_a_live_profile_whose_template_passes_a_bound_sends_the_default_value() -> None:
    snapshot, record = journey("site-a", "journey-autologous")[0]
    (default, *_), _ = render(snapshot, record, profile("site-a"))
    started = time.perf_counter()
    (message, *_), issues = render(snapshot, record, _live_variant("site-a", "{{ 'A' * 5000 }}"))
    assert time.perf_counter() - started < 10.0
    obr = next(s for s in message.er7.split("\r") if s.startswith("OBR|"))
    assert obr == next(s for s in default.er7.split("\r") if s.startswith("OBR|"))
    failed = [i for i in issues if i.code == "hl7v2-override-failed"]
    assert failed and failed[0].severity == "error" and failed[0].path == "profile.hl7v2.overrides.OBR-4"
    assert "template_max_output_bytes" in failed[0].message and "default value was sent" in failed[0].message


def test_a_live_profile_cannot_hang_delivery() -> None:
    snapshot, record = journey("site-a", "journey-autologous")[0]
    started = time.perf_counter()
    _, issues = render(snapshot, record, _live_variant("site-a", "{{ 3**20000000 }}"))
    assert time.perf_counter() - started < 10.0
    assert any(i.code == "hl7v2-override-failed" and "big-integer" in i.message for i in issues)


def test_many_overrides_of_one_event_share_one_step_budget() -> None:
    snapshot, record = journey("site-a", "journey-autologous")[0]
    loop = "{% for a in range(100) %}{% for b in range(100) %}{% endfor %}{% endfor %}"
    overrides = {f"NTE-{n}": loop for n in range(1, 40)}
    started = time.perf_counter()
    _, issues = render(snapshot, record, variant("site-a", overrides=overrides))  # each passes the check
    assert time.perf_counter() - started < 10.0
    assert len([i for i in issues if i.code == "hl7v2-override-failed"]) == 39


# ----------------------------------------------------------------------------- mrn_only


@pytest.mark.parametrize("field", ["family", "given", "birth_date", "sex"])
def test_mrn_only_profile_naming_a_demographic_is_refused_at_check_time(field: str) -> None:
    problems = _draft_problems(f"{{{{ order.patient.{field} }}}}", demographics="mrn_only")
    assert problems == [
        f"site-a.yaml:{OVERRIDE_LINE}: hl7v2.overrides.OBR-4: 'order.patient.{field}' is not available: the "
        "profile's patient.demographics is mrn_only (rule template-demographics)"]
    load_profile_text(_draft(f"{{{{ order.patient.{field} }}}}"), "site-a.yaml")  # full: fine


def test_mrn_only_is_checked_on_direct_validation_too() -> None:
    import yaml

    data = yaml.safe_load(_draft("{{ order.patient.family }}", demographics="mrn_only"))
    with pytest.raises(ValueError, match="template-demographics"):
        SiteProfile.model_validate(data)


def test_mrn_only_context_has_no_demographics_at_render_time() -> None:
    """site-b is mrn_only; an override smuggled past the check still cannot read the patient's name."""
    snapshot, record = journey("site-b", "journey-autologous")[0]
    patient = snapshot.order.patient
    for template in ("{{ order.patient.family }}", "{{ order.patient.given | join(' ') }}",
                     "{{ order.patient.birth_date }}", "{{ order.patient.sex }}",
                     "{% for k in order.patient %}{{ k }}={{ order.patient[k] }} {% endfor %}",
                     "{{ order.patient.get('family', 'none') }}"):
        (message, *_), issues = render(snapshot, record, _live_variant("site-b", template))
        assert patient.family not in message.er7 and patient.given[0] not in message.er7
        assert patient.birth_date.strftime("%Y%m%d") not in message.er7
        obr4 = next(s for s in message.er7.split("\r") if s.startswith("OBR|")).split("|")[4]
        assert obr4 in ("", "none", f"mrn={patient.mrn} ") or any(
            i.code == "hl7v2-override-failed" for i in issues), (template, obr4)
    (message, *_), _ = render(snapshot, record, _live_variant("site-b", "{{ order.patient.mrn }}"))
    assert patient.mrn in message.er7


def test_full_site_templates_still_see_demographics() -> None:
    snapshot, record = journey("site-a", "journey-autologous")[0]
    (message, *_), issues = render(snapshot, record, _live_variant("site-a", "{{ order.patient.family }}"))
    assert not [i for i in issues if i.code == "hl7v2-override-failed"]
    assert f"|{snapshot.order.patient.family}|" in message.er7


def test_context_schema_without_demographics() -> None:
    assert set(context_schema("mrn_only")["order"]["patient"]) == {"mrn"}
    assert set(context_schema("full")["order"]["patient"]) == {"mrn", "family", "given", "birth_date", "sex"}


_SHARED = "[" + ", ".join(["a"] * 8) + "]"


@pytest.mark.parametrize("template", [
    # a list of 4000 references to a list of 4000 references...: each `*` is short, the whole is 64e9
    # items, and comparing two of them runs in C, holding the GIL (the server froze for good)
    "{{ [[[1]*4000]*4000]*4000 == [[[1]*4000]*4000]*4000 }}",
    "{{ [[[0]*4000]*4000]*4000 is eq [[[0]*4000]*4000]*4000 }}",
    "{{ ([[1]*4000]*4000) | sum(start=[]) | length }}",
    "{{ {(((1,)*4000,)*4000,)*4000: 1} | length }}",
    "{% for a in [[1] * 4000] %}{{ " + _SHARED + " == " + _SHARED + " }}{% endfor %}",
])
def test_nested_values_are_bounded_so_comparing_or_hashing_them_is_cheap(template: str) -> None:
    started = time.perf_counter()
    with pytest.raises(TemplateRenderError, match="template_max_output_bytes"):
        render_template(template, CONTEXT)
    assert time.perf_counter() - started < 10.0
