"""Issue 11: profile YAML is bounded before and while it is parsed, never after.

The size is checked before the text is parsed (or the file read); nodes (aliases expanded), aliases
and nesting are counted while composing, so a 1 MB flat list or a billion-laughs document is refused
after reading only as much as the limit; duplicate keys are refused while composing, with the line
and the key; the list of problems of an invalid profile is bounded.
"""

from __future__ import annotations

import time
from pathlib import Path

import pytest

from mappings.profile.loader import (
    MAX_PROFILE_BYTES,
    MAX_PROFILE_NODES,
    ProfileInvalid,
    ProfileLimits,
    load_profile,
    load_profile_dir,
    load_profile_text,
)
from tests.unit.test_profile_loader import MINIMAL

ROOT = Path(__file__).resolve().parents[2]


def _refused(text: str, limits: ProfileLimits | None = None, seconds: float = 10.0) -> list[str]:
    started = time.perf_counter()
    with pytest.raises(ProfileInvalid) as caught:
        load_profile_text(text, "x.yaml", *(() if limits is None else (limits,)))
    assert time.perf_counter() - started < seconds
    return caught.value.problems


def test_a_1mb_flat_list_is_refused_before_parsing() -> None:
    text = MINIMAL + "junk:\n" + "- x\n" * 262_144  # 1 MiB
    assert len(text) > 1_000_000
    assert _refused(text, seconds=10.0) == [
        f"x.yaml:1: (file): larger than {MAX_PROFILE_BYTES} bytes (profile_max_bytes)"]


def test_a_flat_list_under_the_size_limit_stops_at_the_node_limit_while_composing() -> None:
    text = MINIMAL + "junk:\n" + "- x\n" * 60_000  # 240 KB: under profile_max_bytes, 60k values
    assert len(text.encode()) < MAX_PROFILE_BYTES
    problems = _refused(text)
    assert len(problems) == 1
    assert problems[0].endswith(
        f": (yaml): more than {MAX_PROFILE_NODES} values once aliases are expanded (profile_max_nodes)")
    line = int(problems[0].split(":")[1])
    assert 18 < line < 18 + MAX_PROFILE_NODES  # where composing stopped, not at the end of the text


def test_the_size_limit_counts_utf8_bytes_and_files_are_not_read_past_it(tmp_path: Path) -> None:
    limits = ProfileLimits(max_bytes=len(MINIMAL) + 10)
    text = MINIMAL + "# " + "é" * 10 + "\n"  # 12 characters, 22 bytes
    assert _refused(text, limits) == [
        f"x.yaml:1: (file): larger than {limits.max_bytes} bytes (profile_max_bytes)"]
    big = tmp_path / "big.yaml"
    with big.open("wb") as handle:
        handle.write(MINIMAL.encode())
        handle.seek(2 * 1024**3)  # a sparse 2 GiB file
        handle.write(b"\n")
    started = time.perf_counter()
    with pytest.raises(ProfileInvalid) as caught:
        load_profile(big)
    assert time.perf_counter() - started < 10.0
    assert caught.value.problems == [
        f"{big}:1: (file): larger than {MAX_PROFILE_BYTES} bytes (profile_max_bytes)"]


def test_billion_laughs_is_refused_while_composing() -> None:
    levels = ["a0: &a0 [x, x, x, x, x, x, x, x, x, x]"]
    levels += [f"a{i}: &a{i} [{', '.join([f'*a{i - 1}'] * 10)}]" for i in range(1, 10)]
    problems = _refused(MINIMAL + "\n".join(levels) + "\n")
    assert len(problems) == 1 and "(profile_max_nodes)" in problems[0]


def test_aliases_are_limited() -> None:
    text = MINIMAL + "a: &a x\nb: [" + ", ".join(["*a"] * 101) + "]\n"
    assert _refused(text) == ["x.yaml:18: (yaml): more than 100 aliases (profile_max_aliases)"]
    assert _refused(text.replace("101", "1"), ProfileLimits(max_aliases=5))[0].endswith(
        "more than 5 aliases (profile_max_aliases)")


def test_duplicate_keys_are_refused_with_line_and_key_at_any_depth() -> None:
    text = MINIMAL.replace("    local_code: X1\n", "    local_code: X1\n    local_code: X2\n")
    assert _problems_of(text) == [
        "x.yaml:15: products.CART-CD19.local_code: duplicate key (also on line 14)"]


def _problems_of(text: str) -> list[str]:
    with pytest.raises(ProfileInvalid) as caught:
        load_profile_text(text, "x.yaml")
    return caught.value.problems


def test_duplicate_keys_do_not_bypass_the_node_limit() -> None:
    """Before: a duplicate key's value was skipped by the counting walk, yet parsed and validated."""
    bomb = "[" + ", ".join(["*b"] * 10) + "]"
    levels = "b0: &b [" + ", ".join(["x"] * 100) + "]\n"  # each duplicate below stands for 1,000 values
    text = MINIMAL + levels + "".join(f"name: {bomb}\n" for _ in range(50))
    problems = _refused(text, ProfileLimits(max_aliases=10_000))
    assert len(problems) == 1 and problems[0].endswith("(profile_max_nodes)"), problems


def test_70k_unknown_keys_give_a_short_answer_fast() -> None:
    text = MINIMAL + "".join(f"unknown_{i}: {i}\n" for i in range(70_000))
    problems = _refused(text, ProfileLimits(max_bytes=4 * 1024 * 1024))
    assert len(problems) == 1 and "(profile_max_nodes)" in problems[0]


def test_problems_are_listed_up_to_max_problems_then_counted() -> None:
    text = MINIMAL + "".join(f"unknown_{i}: {i}\n" for i in range(500))
    problems = _refused(text)
    assert len(problems) == 101
    assert problems[:2] == ["x.yaml:17: unknown_0: unknown field (not allowed here)",
                            "x.yaml:18: unknown_1: unknown field (not allowed here)"]
    assert problems[-1] == "x.yaml: ... and 400 more problems not listed"
    assert len(_refused(text, ProfileLimits(max_problems=3))) == 4
    dup = MINIMAL + "".join("name: x\n" for _ in range(500))
    assert len(_refused(dup)) == 101


def test_the_demo_profiles_pass_with_a_large_margin() -> None:
    for path in (ROOT / "fixtures/profiles").glob("*.yaml"):
        assert path.stat().st_size * 20 < MAX_PROFILE_BYTES
        load_profile(path, ProfileLimits(max_bytes=MAX_PROFILE_BYTES // 20, max_nodes=MAX_PROFILE_NODES // 20,
                                         max_aliases=5))


def test_load_profile_dir_applies_the_limits(tmp_path: Path) -> None:
    (tmp_path / "x.yaml").write_text(MINIMAL, encoding="utf-8")
    with pytest.raises(ProfileInvalid, match="profile_max_bytes"):
        load_profile_dir(tmp_path, ProfileLimits(max_bytes=100))
    assert set(load_profile_dir(tmp_path)) == {"site-x"}
