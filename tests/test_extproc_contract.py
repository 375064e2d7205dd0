"""The contract of the rendered ext_proc filter, driven without Envoy (tests/extproc): the harness
parses the filter's and the route's config with Envoy's generated types (strictly, with Envoy's
validation rules), runs a small gRPC screening server, and plays Envoy's client side for each
exchange. What is asserted here is what the config makes Envoy send for each configured event,
what a caller sees when the provider refuses, is slow or is down, that a streamed response keeps
streaming, and the counters the safety alert reads.

Envoy itself cannot be built here (a Bazel build of C++); Istio's generated sidecar config (where
the filter sits, which routes turn it on) is checked by the engines, test_engines.py.
"""

from __future__ import annotations

import json
import subprocess

import pytest

from conftest import need_tool
from test_prompt_safety import GUARD, LLM, rendered, safety

CHAT = "/v1/chat/completions"
PROMPT = '{"model":"m","messages":[{"role":"user","content":"hello"}]}'
STREAM = ['data: {"choices":[{"delta":{"content":"Hel"}}]}\n\n', 'data: {"choices":[{"delta":{"content":"lo"}}]}\n\n',
          "data: [DONE]\n\n"]

# The provider answers too late (past the message timeout), then cannot be reached at all.
FAILURES = [{"name": "slow", "path": CHAT, "request": ['{"messages":"SLOW"}'], "response": STREAM},
            {"name": "down", "path": CHAT, "request": [PROMPT], "response": STREAM, "down": True}]


@pytest.fixture(scope="module")
def harness():
    return need_tool("extproc-harness")


def filter_configs(docs: list[dict]) -> tuple[dict, dict]:
    """(the ext_proc filter's typed_config, the first screened route's per-filter config)."""
    (f,) = [d for d in docs if d["kind"] == "EnvoyFilter" and d["metadata"]["name"].endswith("-safety")]
    patches = f["spec"]["configPatches"]
    return patches[0]["patch"]["value"]["typed_config"], patches[1]["patch"]["value"]["typed_per_filter_config"]["modelplat.safety"]


def drive(harness: str, filt: dict, route: dict | None, exchanges: list[dict]) -> dict:
    result = subprocess.run([harness], input=json.dumps({"filter": filt, "route": route, "exchanges": exchanges}),
                            capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stderr
    return json.loads(result.stdout)


def by_name(report: dict) -> dict[str, dict]:
    return {e["name"]: e for e in report["exchanges"]}


def kinds(exchange: dict) -> list[str]:
    return [m["kind"] for m in exchange["received"]]


@pytest.fixture(scope="module")
def configs(tmp_path_factory):
    """The filter configs of three providers, rendered from model values through the chart."""
    import tempfile
    from pathlib import Path

    def render(values: str, platform: str) -> tuple[dict, dict]:
        folder = Path(tempfile.mkdtemp(dir=tmp_path_factory.getbasetemp()))

        def tree(files: dict[str, str], platform: str) -> Path:
            models = folder / "models"
            for name, text in {**files, "platform.yaml": platform}.items():
                (models / name).parent.mkdir(parents=True, exist_ok=True)
                (models / name).write_text(text)
            return models

        return filter_configs(rendered(tree, values, platform, folder))

    buffered_open = GUARD.replace("        bodyMode: streamed\n", "        failureMode: open\n")
    return {
        "streamed": render(LLM + safety("guard"), GUARD),
        "prompts-only": render(LLM + safety("prompts-only", "  screen: prompts\n"), GUARD),
        "buffered-open": render(LLM + safety("guard"), buffered_open),
    }


def test_a_streamed_provider_sees_every_event_and_the_response_keeps_streaming(harness, configs):
    filt, route = configs["streamed"]
    report = drive(harness, filt, route, [{"name": "chat", "path": CHAT, "request": [PROMPT], "response": STREAM}])
    assert report["mode"] == {"request_header_mode": "SEND", "response_header_mode": "SEND",
                              "request_body_mode": "STREAMED", "response_body_mode": "STREAMED"}
    chat = by_name(report)["chat"]
    assert chat["result"] == "passed" and chat["body"] == "".join(STREAM)
    assert kinds(chat) == ["request_headers", "request_body", "response_headers"] + ["response_body"] * 3
    assert chat["received"][0]["path"] == CHAT
    assert [m["end_of_stream"] for m in chat["received"][3:]] == [False, False, True]
    # Each chunk reaches the caller before the model has produced the next: it keeps streaming.
    assert chat["timeline"] == ["upstream 0", "caller 0", "upstream 1", "caller 1", "upstream 2", "caller 2"]
    # The provider learns which model the traffic is for.
    assert chat["metadata"] == {"x-modelplat-model": "chat/model"}


def test_a_refused_prompt_never_reaches_the_model(harness, configs):
    filt, route = configs["streamed"]
    report = drive(harness, filt, route, [{"name": "bad", "path": CHAT, "request": ['{"messages":"FORBIDDEN"}'],
                                           "response": STREAM}])
    bad = by_name(report)["bad"]
    assert bad["result"] == "refused" and bad["status"] == 403 and "safety" in bad["body"]
    assert bad["details"] == "prompt_refused"  # what the access log's %RESPONSE_CODE_DETAILS% prints
    assert kinds(bad) == ["request_headers", "request_body"]  # no response: the model was never called
    assert not bad["timeline"]


def test_a_withheld_response_chunk_is_replaced_before_the_caller_sees_it(harness, configs):
    filt, route = configs["streamed"]
    report = drive(harness, filt, route, [{"name": "leak", "path": CHAT, "request": [PROMPT],
                                           "response": [STREAM[0], "data: FORBIDDEN\n\n", STREAM[2]]}])
    leak = by_name(report)["leak"]
    assert "FORBIDDEN" not in leak["body"] and "[withheld by the safety provider]" in leak["body"]


def test_fail_closed_refuses_when_the_provider_is_slow_or_down(harness, configs):
    filt, route = configs["streamed"]
    assert filt["failure_mode_allow"] is False
    report = drive(harness, filt, route, FAILURES)
    slow, down = by_name(report)["slow"], by_name(report)["down"]
    assert (slow["result"], slow["status"]) == ("failed", 504) and not slow["timeline"]
    assert (down["result"], down["status"]) == ("failed", 500)
    # What the alert reads for a fail-closed provider (streams_failed, message_timeouts).
    assert report["stat_prefix"] == "modelplat_safety"
    assert report["stats"]["message_timeouts"] == 1 and report["stats"]["streams_failed"] == 1
    assert "failure_mode_allowed" not in report["stats"]


def test_fail_open_lets_traffic_through_unscreened_and_counts_it(harness, configs):
    filt, route = configs["buffered-open"]
    assert filt["failure_mode_allow"] is True
    report = drive(harness, filt, route, FAILURES)
    for exchange in by_name(report).values():
        assert exchange["result"] == "passed" and exchange["body"] == "".join(STREAM), exchange
    # What the alert reads for a fail-open provider.
    assert report["stats"]["failure_mode_allowed"] == 2


def test_a_buffered_provider_gets_whole_bodies_and_holds_a_stream_until_it_ends(harness, configs):
    filt, route = configs["buffered-open"]
    report = drive(harness, filt, route, [{"name": "chat", "path": CHAT, "request": [PROMPT[:20], PROMPT[20:]],
                                           "response": STREAM}])
    chat = by_name(report)["chat"]
    assert kinds(chat) == ["request_headers", "request_body", "response_headers", "response_body"]
    assert chat["received"][1] == {"kind": "request_body", "body": PROMPT, "end_of_stream": True}
    assert chat["received"][3]["body"] == "".join(STREAM)
    # The caller gets nothing until the model has finished (the safety-buffers-streams warning).
    assert chat["timeline"] == ["upstream 0", "upstream 1", "upstream 2", "caller 2"]


def test_a_prompts_only_provider_is_sent_the_prompt_body_and_nothing_else(harness, configs):
    filt, route = configs["prompts-only"]
    report = drive(harness, filt, route, [{"name": "chat", "path": CHAT, "request": [PROMPT], "response": STREAM}])
    assert report["mode"] == {"request_header_mode": "SKIP", "response_header_mode": "SKIP",
                              "request_body_mode": "BUFFERED", "response_body_mode": "NONE"}
    assert report["message_timeout"] == "1m30s"
    chat = by_name(report)["chat"]
    assert kinds(chat) == ["request_body"] and chat["body"] == "".join(STREAM)
    assert chat["timeline"] == ["upstream 0", "caller 0", "upstream 1", "caller 1", "upstream 2", "caller 2"]


def test_the_route_override_is_what_decides_the_mode(harness, configs):
    filt, route = configs["streamed"]
    override = json.loads(json.dumps(route))
    override["config"]["overrides"]["processing_mode"] = {"request_body_mode": "BUFFERED",
                                                          "request_header_mode": "SKIP", "response_header_mode": "SKIP"}
    report = drive(harness, filt, override, [{"name": "chat", "path": CHAT, "request": [PROMPT], "response": STREAM}])
    assert kinds(by_name(report)["chat"]) == ["request_body"]


@pytest.mark.parametrize("where, field", [("filter", "processing_modes"), ("route", "overide")])
def test_a_config_envoy_would_refuse_is_refused(harness, configs, where, field):
    filt, route = json.loads(json.dumps(configs["streamed"]))
    (filt if where == "filter" else route["config"])[field] = {}
    result = subprocess.run([harness], input=json.dumps({"filter": filt, "route": route, "exchanges": []}),
                            capture_output=True, text=True, timeout=60)
    assert result.returncode == 2 and field in result.stderr, result.stderr


def test_envoys_validation_rules_apply_too(harness, configs):
    filt, route = json.loads(json.dumps(configs["streamed"]))
    filt["message_timeout"] = "7200s"  # Envoy caps it at one hour
    result = subprocess.run([harness], input=json.dumps({"filter": filt, "route": route, "exchanges": []}),
                            capture_output=True, text=True, timeout=60)
    assert result.returncode == 2 and "MessageTimeout" in result.stderr, result.stderr
