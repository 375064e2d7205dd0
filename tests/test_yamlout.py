"""The YAML emitter must round-trip any plain data exactly, whatever the strings contain."""

from __future__ import annotations

import pytest
from hypothesis import given, settings, strategies as st
from ruamel.yaml import YAML

from modelplat.yamlout import Block, dump, scalar

_yaml = YAML(typ="safe")

scalars = st.one_of(
    st.none(), st.booleans(), st.integers(-(2**63), 2**63),
    st.floats(allow_nan=False, allow_infinity=False),
    st.text(max_size=30),
    st.sampled_from(["yes", "No", "on", "OFF", "null", "~", "1e3", "0x1F", "0o17", "1_000", "12:30", ".inf",
                     "- a", "a: b", "#x", "{{ .Values.x }}", "[[ x ]]", "${x}", "*alias", "&anchor", "!tag",
                     "%x", "@x", "`x", "'q'", '"q"', "a\nb", "\t", "\x85", "\u2028", "\ufeff", "é", "😀", ""]),
)
keys = st.one_of(st.text(max_size=15), st.sampled_from(["yes", "null", "1", "a.b/c", "x: y", "<<", "?"]))
data = st.recursive(scalars, lambda inner: st.one_of(st.lists(inner, max_size=4),
                                                     st.dictionaries(keys, inner, max_size=4)), max_leaves=20)


@settings(max_examples=400, deadline=None)
@given(data)
def test_round_trips_any_plain_data(value):
    assert _yaml.load(dump(value)) == value


@pytest.mark.parametrize("text", ["true", "Yes", "null", "1", "1.5", "-1", ".5", "500m", "--flag", "a:", "x #y"])
def test_ambiguous_strings_are_quoted(text):
    assert scalar(text).startswith('"')
    assert _yaml.load(f"k: {scalar(text)}") == {"k": text}


@pytest.mark.parametrize("text", ["sklearn", "s3", "/metrics", "vllm/vllm-openai:v0.8.5", "nvidia.com/gpu"])
def test_ordinary_words_stay_plain(text):
    assert scalar(text) == text


def test_header_becomes_comments_and_output_is_stable():
    doc = {"b": [1, {"c": None}], "a": {}}
    first = dump(doc, "Generated\nby test")
    assert first.startswith("# Generated\n# by test\n")
    assert first == dump(doc, "Generated\nby test")
    assert first.index("b:") < first.index("a:"), "key order is kept as given"


def test_refuses_non_data():
    with pytest.raises(TypeError):
        dump({"a": object()})
    with pytest.raises(ValueError):
        dump({"a": float("nan")})


@settings(max_examples=200, deadline=None)
@given(data)
def test_a_pre_emitted_block_reads_back_as_its_data(value):
    assert _yaml.load(dump({"spec": {"values": Block(value if isinstance(value, (dict, list)) else [value])}})) == \
        {"spec": {"values": value if isinstance(value, (dict, list)) else [value]}}
    if isinstance(value, (dict, list)):
        assert _yaml.load(dump(Block(value))) == value
