"""The loader's fast path (a document built from parser events) agrees with ruamel's full loader.

The fast path either hands a document to the full loader (tags, anchors, merge keys, directives,
duplicate keys, syntax errors) or returns exactly what the full loader returns: the same values
of the same types. Checked on the examples, on hand-picked corner cases and on generated text.
"""

from __future__ import annotations

import math
from pathlib import Path

import pytest
from hypothesis import given, settings, strategies as st
from ruamel.yaml import YAML

from modelplat import loader
from modelplat.yamlout import dump

from strategies import model_values

REPO = Path(__file__).resolve().parent.parent
FULL = YAML(typ="safe")


def same(a, b) -> bool:
    """Equal with the same types all the way down (1, 1.0 and True are different values here)."""
    if type(a) is not type(b):
        return False
    if isinstance(a, dict):
        return list(a) == list(b) and all(same(k, k2) and same(a[k], b[k2]) for k, k2 in zip(a, b))
    if isinstance(a, list):
        return len(a) == len(b) and all(same(x, y) for x, y in zip(a, b))
    if isinstance(a, float) and math.isnan(a):
        return math.isnan(b)
    return a == b


def check(text: str) -> str:
    """'fast' when the fast path built the document (and agreed), else 'full'."""
    try:
        fast = loader._load_plain(text)
    except loader._NotPlain:
        return "full"
    full = FULL.load(text)  # must not raise: the fast path accepted the document
    assert same(fast, full), (text, fast, full)
    return "fast"


def test_examples_take_the_fast_path_and_agree():
    files = sorted((REPO / "examples").rglob("*.yaml"))
    assert len(files) >= 6
    for path in files:
        assert check(path.read_text()) == "fast", path


@pytest.mark.parametrize("text, path", [
    ("", "fast"), ("# only a comment\n", "fast"), ("plain", "fast"), ("- 1\n- 2.5\n- true\n- ~\n", "fast"),
    ("a: 0o17\nb: 0x1F\nc: 1_000\nd: .inf\ne: -.5\nf: 1e3\ng: +1\nh: 010\ni: .NaN\n", "fast"),
    ("a: yes\nb: on\nc: 'true'\nd: \"1\"\ne: |\n  two\n  lines\nf: >-\n  folded\n", "fast"),
    ("a: [1, {b: c}, []]\nd: {}\n1: int key\n", "fast"),
    ("a: &x 1\nb: *x\n", "full"), ("a: !!str 1\n", "full"), ("a: 1\na: 2\n", "full"),
    ("a: 1\n---\nb: 2\n", "full"), ("%YAML 1.1\n---\na: yes\n", "full"), ("? [a]\n: 1\n", "full"),
    ("a: 2001-12-14\n", "full"), ("<<: {a: 1}\nb: 2\n", "full"), ("a: {\n", "full"), ("x: 1\n- y\n", "full"),
    ("a: =\n", "full"), ("1: a\n1.0: b\n", "full"), ("true: a\n1: b\n", "full"),
])
def test_corner_cases(text, path):
    assert check(text) == path


def test_a_yaml_1_1_document_does_not_change_how_later_ones_resolve():
    old = "%YAML 1.1\n---\na: yes\nb: 0o17\n"
    assert same(loader.parse(old, "old.yaml"), YAML(typ="safe").load(old))  # whatever ruamel makes of it
    assert same(loader.parse("a: yes\nb: 0o17\n", "new.yaml"), {"a": "yes", "b": 15})


def test_errors_are_the_full_loaders():
    with pytest.raises(loader.LoadError) as duplicate:
        loader.parse("a: 1\nb: 2\na: 3\n", "f.yaml")
    assert duplicate.value.diagnostic.code == "duplicate-key" and duplicate.value.diagnostic.line == 3
    with pytest.raises(loader.LoadError) as syntax:
        loader.parse("a: [1, 2\nb: 3\n", "f.yaml")
    assert syntax.value.diagnostic.code == "yaml-syntax" and syntax.value.diagnostic.line >= 2


TOKENS = st.sampled_from([
    "a", "b", "key", "1", "-1", "0o7", "0x1f", "1_0", "1.5", "1e3", ".inf", ".nan", "true", "True", "yes", "no",
    "null", "~", "", "<<", "=", "2001-12-14", "'q'", '"d\\n"', "&a x", "*a", "!!str 1", "!!int '1'", "[1, 2]",
    "{x: y}", "[", "}", "|", ">-", "# c", "? k", ": v", "- ", "--- ", "...", "%YAML 1.1", "@x", "`x`", "a b",
    "é", "\t", "{{ x }}",
])


@st.composite
def yaml_ish(draw) -> str:
    lines = []
    for _ in range(draw(st.integers(0, 12))):
        indent = " " * draw(st.sampled_from([0, 0, 2, 4]))
        dash = draw(st.sampled_from(["", "", "- "]))
        key, value = draw(TOKENS), draw(TOKENS)
        lines.append(f"{indent}{dash}{key}: {value}" if draw(st.booleans()) else f"{indent}{dash}{value}")
    return "\n".join(lines) + draw(st.sampled_from(["", "\n"]))


@settings(max_examples=600, deadline=None)
@given(yaml_ish())
def test_generated_text_either_falls_back_or_agrees(text):
    try:
        check(text)
    except AssertionError:
        raise
    except Exception as exc:  # the full loader refused what the fast path accepted
        pytest.fail(f"fast path accepted a document the full loader refuses: {text!r}: {exc}")


SCALARS = st.one_of(st.none(), st.booleans(), st.integers(), st.floats(allow_nan=False, allow_infinity=False),
                    st.text(max_size=20), st.sampled_from(["yes", "null", "1e3", "0o17", "2001-12-14", "<<"]))
DATA = st.recursive(SCALARS, lambda inner: st.one_of(st.lists(inner, max_size=4),
                                                     st.dictionaries(st.text(max_size=8), inner, max_size=4)),
                    max_leaves=20)


@settings(max_examples=300, deadline=None)
@given(st.dictionaries(st.text(max_size=8), DATA, max_size=5), st.sampled_from([None, True, False]))
def test_dumped_data_agrees(data, flow):
    import io

    writer = YAML(typ="safe", pure=True)
    writer.default_flow_style = flow
    stream = io.StringIO()
    try:
        writer.dump(data, stream)
    except Exception:
        return  # ruamel cannot write it (e.g. infinities as keys); nothing to read back
    check(stream.getvalue())
    assert check(dump(data)) == "fast"  # modelplat's own emitter writes plain documents only


@settings(max_examples=60, deadline=None)
@given(model_values())
def test_model_values_take_the_fast_path(values):
    assert check(dump(values)) == "fast"


@pytest.mark.parametrize("prefix", ["a: ", "a: &x ", "a: !!seq "])
def test_deep_nesting_is_refused_before_it_is_parsed(prefix):
    # libyaml's scanner is quadratic in flow nesting (100,000 levels took ~45 s to reach the
    # depth check); both paths now stop counting at the limit. A regression shows as minutes.
    deep = prefix + "[" * 200_000 + "]" * 200_000
    with pytest.raises(loader.LoadError) as refused:
        loader.parse(deep, "deep.yaml")
    assert refused.value.diagnostic.code == "too-deep"


@pytest.mark.parametrize("prefix", ["a: ", "a: &x "])
def test_the_depth_limit_is_the_same_on_both_paths(prefix):
    limit = loader.MAX_DEPTH
    assert loader.parse(prefix + "[" * limit + "]" * limit, "ok.yaml")["a"] is not None
    with pytest.raises(loader.LoadError) as refused:
        loader.parse(prefix + "[" * (limit + 1) + "]" * (limit + 1), "deep.yaml")
    assert refused.value.diagnostic.code == "too-deep"


def test_positions_from_the_parser_events_are_the_round_trip_readers():
    """_positions reads the C parser's events (a warning on many models cost a round-trip load
    each, 50 ms); it must place every key and list item where ruamel's round-trip reader does."""
    from conftest import EXAMPLES

    texts = [p.read_text() for p in sorted(EXAMPLES.rglob("*.yaml"))]
    texts.append("a:\n  - b: 1\n    c: [x, {d: 2}]\n  - - nested\n'1': quoted\n2: number\nempty: {}\n")
    for text in texts:
        assert loader._positions(text) == loader._positions_roundtrip(text)
    # What the events cannot place (an alias) goes to the round-trip reader.
    aliased = "a: &x 1\nb: *x\n"
    assert loader._positions(aliased) == loader._positions_roundtrip(aliased)


@settings(max_examples=150, deadline=None)
@given(yaml_ish())
def test_positions_agree_on_generated_text(text):
    """Whatever the text (plain, or needing the full loader), both readers place keys alike:
    every key the round-trip reader places, the fast one places there too (on exotic syntax, an
    explicit multi-line key, the round-trip reader places nothing)."""
    try:
        expected = loader._positions_roundtrip(text)
    except Exception:  # the round-trip reader itself fails: nothing to compare with
        return
    assert expected.items() <= loader._positions(text).items()
