"""explain: what the values file accepts at a dotted key, read from the published schema."""

from __future__ import annotations

import pytest

from modelplat.errors import InvalidInput
from modelplat.explain import explain, explain_text


def test_gpu_request_is_an_integer_defaulting_to_zero_with_bounds():
    info = explain("resources.requestGPU")
    assert info["key"] == "resources.requestGPU"
    assert info["type"] == "integer"
    assert info["default"] == 0
    assert info["minimum"] == 0 and info["maximum"] == 16
    assert "GPU node group" in info["description"]
    assert info["allowed"] == [] and "children" not in info


def test_model_format_lists_its_allowed_values_and_is_required():
    info = explain("model.format")
    assert {"sklearn", "custom", "huggingface"} <= set(info["allowed"])
    assert info["type"] == "string" and info["required"] is True
    assert "default" not in info
    assert info["examples"] == ["sklearn", "huggingface", "custom"]


def test_optional_integer_with_seed_name_in_description():
    info = explain("tokenLimit.saLimit")
    assert info["type"] == "integer" and info["minimum"] == 1
    assert info["default"] is None and info["nullable"] is True
    assert info["examples"] == [12000] and "sa_limit" in info["description"]


def test_list_items_are_walked_through_with_or_without_an_index():
    assert explain("env.value") | {"key": ""} == explain("env.0.value") | {"key": ""}
    info = explain("env.0.value")
    assert info["type"] == "string" and info["description"] == "Literal value."
    env = explain("env")
    assert env["type"] == "list of EnvVar"
    assert env["children"] == ["name", "value", "secretKeyRef"]
    assert env["default"] == []  # a default_factory, which the JSON Schema leaves out
    assert explain("env.secretKeyRef.name")["required"] is True


def test_quantities_optional_sections_and_free_form_mappings():
    assert explain("resources.requestCPU")["type"] == "quantity (string or number)"
    logger = explain("logger")
    assert logger["type"] == "mapping" and logger["children"] == ["mode", "url"]
    assert logger["description"] == "KServe inference logger; unset: off."
    assert explain("logger.mode")["allowed"] == ["all", "request", "response"]
    assert explain("labels")["type"] == "mapping of string to string"
    assert explain("labels.team")["type"] == "string"
    assert explain("autoscaling.targetRequestRate")["exclusiveMinimum"] == 0
    assert "platform" in explain("tokenLimit.paths")["description"]
    assert explain("tokenLimit.missingIdentity")["allowed"] == ["refuse", "countByIP"]
    port = explain("metrics.port")
    assert port["default"] is None and "8080" in port["description"] and "Triton 8002" in port["description"]
    assert explain("metrics.path")["default"] == "/metrics"


def test_empty_key_lists_the_top_level_keys():
    info = explain("")
    assert info["key"] == "" and info["type"] == "mapping"
    assert {"model", "resources", "replicaCount", "primaryLoad", "tokenLimit"} <= set(info["children"])
    assert info["children"][0] == "name"


@pytest.mark.parametrize(
    "key, suggestion",
    [
        ("resources.requestGPUs", "resources.requestGPU"),
        ("resources.requestGpu", "resources.requestGPU"),
        ("autoscaling.maxReplicas", "autoscaling.maxReplicaCount"),
        ("canary.primaryLoad", "primaryLoad"),  # right name, wrong section: it is top-level
    ],
)
def test_unknown_key_suggests_the_close_one(key, suggestion):
    with pytest.raises(InvalidInput) as caught:
        explain(key)
    assert f"unknown key '{key}'" in caught.value.message
    assert f"did you mean '{suggestion}'?" in caught.value.message


def test_unknown_key_without_a_close_match_lists_the_siblings():
    with pytest.raises(InvalidInput, match="keys there: enabled, port, path"):
        explain("metrics.zzz")


def test_walking_below_a_scalar_or_indexing_a_mapping_is_refused():
    with pytest.raises(InvalidInput, match="'resources.requestGPU' is of type integer"):
        explain("resources.requestGPU.count")
    with pytest.raises(InvalidInput, match="'model' is not a list"):
        explain("model.0")
    with pytest.raises(InvalidInput, match="not a dotted key"):
        explain("resources..requestGPU")


def test_text_is_plain_and_names_every_fact():
    text = explain_text(explain("resources.requestGPU"))
    lines = text.splitlines()
    assert lines[0] == "resources.requestGPU"
    assert "  type:    integer" in lines
    assert "  default: 0" in lines
    assert "  minimum: 0" in lines and "  maximum: 16" in lines
    assert "[" not in text  # no rich markup
    fmt = explain_text(explain("model.format"))
    assert "allowed:  sklearn, xgboost" in fmt and "required: yes" in fmt
    top = explain_text(explain(""))
    assert top.startswith("(model values file)") and "keys: name, project, namespace" in top
    assert 'examples: "2"' in explain_text(explain("resources.requestCPU"))  # strings that look numeric stay quoted
