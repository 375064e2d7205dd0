"""The token-quota Lua filter and the identity filter, taken from the rendered EnvoyFilters and run
in LuaJIT against a stand-in for Envoy's stream handle."""

from __future__ import annotations

import json
import random
import time

import pytest
from hypothesis import given, settings, strategies as st

import lupa  # noqa: F401  (a test dependency: missing it is an error, never a skip)
from ruamel.yaml import YAML

from conftest import EXAMPLES, need_tool
from envoy_lua import Filter, text

NS = "modelplat.tokens"
CHAT = {":method": "POST", ":path": "/v1/chat/completions", "content-type": "application/json",
        "x-modelplat-sa": "svc-search"}


@pytest.fixture(scope="module")
def envoyfilters(tmp_path_factory) -> dict[str, dict]:
    """The qwen-chat example's EnvoyFilters as Helm renders them (what Istio would receive)."""
    import subprocess

    from modelplat import pipeline, yamlout
    from modelplat.render import render_model

    helm = need_tool("helm")
    result = pipeline.run([EXAMPLES])
    (p,) = [p for p in result.plans if (p.namespace, p.name) == ("llm", "qwen-chat")]
    root = tmp_path_factory.mktemp("qwen")
    for rel, data in render_model(p, result.platform).items():
        (root / rel).parent.mkdir(parents=True, exist_ok=True)
        (root / rel).write_bytes(data)
    values = root / "values.yaml"
    values.write_text(yamlout.dump(p.chart_values))
    out = subprocess.run([helm, "template", p.name, str(root / p.chart_dir), "-f", str(values), "-n", p.namespace],
                         capture_output=True, text=True, check=True, timeout=120).stdout
    docs = [d for d in YAML(typ="safe").load_all(out) if d and d["kind"] == "EnvoyFilter"]
    return {d["metadata"]["name"]: d for d in docs}


def lua_filter(envoyfilter: dict) -> tuple[str, str, dict]:
    """(filter name, Lua source, route metadata) of the Lua filter in an EnvoyFilter."""
    patches = envoyfilter["spec"]["configPatches"]
    (lua,) = [p["patch"]["value"] for p in patches
              if p["applyTo"] == "HTTP_FILTER" and p["patch"]["value"]["typed_config"]["@type"].endswith("lua.v3.Lua")]
    route = [p["patch"]["value"] for p in patches if p["applyTo"] == "HTTP_ROUTE"]
    metadata = route[0]["metadata"]["filter_metadata"] if route else {}
    return lua["name"], lua["typed_config"]["default_source_code"]["inline_string"], metadata


@pytest.fixture(scope="module")
def tokens_source(envoyfilters) -> tuple[str, str, dict]:
    return lua_filter(envoyfilters["qwen-chat-tokenlimit"])


def make(tokens_source, **overrides) -> Filter:
    name, source, metadata = tokens_source
    metadata = json.loads(json.dumps(metadata))
    metadata[name].update(overrides)
    return Filter(source, name, metadata)


@pytest.fixture(scope="module")
def tokens(tokens_source) -> Filter:
    return make(tokens_source)


def counted(f: Filter, body: bytes | list[bytes], content_type="application/json", request=None):
    """A counted request and its response; returns the stream."""
    stream = f.stream()
    stream.request(request or CHAT, [b'{"model":"q","messages":[]}'])
    chunks = body if isinstance(body, list) else [body]
    stream.response({":status": "200", "content-type": content_type}, chunks)
    return stream


def used(stream) -> int | None:
    meta = stream.metadata(NS) or {}
    return int(meta["used"]) if "used" in meta else None


# --- what the rendered filter is ------------------------------------------------------------------

def test_the_lua_is_static_and_settings_are_route_metadata(tokens_source, envoyfilters):
    name, source, metadata = tokens_source
    assert name == "modelplat.tokens.lua"
    settings_ = metadata[name]
    assert settings_["tenantId"] == "team-search" and settings_["paths"][0] == "/v1/chat/completions"
    assert "team-search" not in source and "x-modelplat-sa" not in source
    # the shipped file, byte for byte: no value was templated into it
    from modelplat.resources import lua_sources

    assert source.encode() == lua_sources()["token_quota"]
    strip = lua_filter(envoyfilters["qwen-chat-identity"])
    assert strip[1].encode() == lua_sources()["strip_identity"]


def test_no_json_library_is_preloaded(tokens):
    for module in ("cjson", "json", "dkjson"):
        assert tokens.lua.eval(f"package.loaded[{module!r}]") is None
    assert tokens.lua.eval("pcall(require, 'cjson')")[0] is False


# --- counting JSON responses ----------------------------------------------------------------------

@pytest.mark.parametrize("body, tokens_", [
    (b'{"id":"x","usage":{"prompt_tokens":10,"completion_tokens":32,"total_tokens":42}}', 42),
    (b'{"usage":{"total_tokens":7},"choices":[{"message":{"content":"usage total_tokens 999"}}]}', 7),
    (b'{\n  "choices" : [ ] ,\n  "usage" :\n    {\n      "completion_tokens" : 5 ,\n      "prompt_tokens" : 3\n    }\n}\n', 8),
    (b'{"usage":{"prompt_tokens":12}}', 12),  # embeddings
    (b'{"data":[{"usage":{"total_tokens":500}}],"usage":{"total_tokens":9}}', 9),  # only the top-level one
    (b'{"a":"\\"usage\\": {\\"total_tokens\\": 77}","usage":{"total_tokens":1.0e1}}', 10),
    (b'{"x":"\\u00e9\\ud83d\\ude00{[","usage":{"total_tokens":3,"prompt_tokens":100}}', 3),
    (b'\t{"usage":{"total_tokens":2}}\r\n', 2),
])
def test_usage_is_read_from_json_whatever_the_layout(tokens, body, tokens_):
    assert used(counted(tokens, body)) == tokens_


@pytest.mark.parametrize("body", [
    b'{"usage":null}', b'{"usage":{"total_tokens":"12"}}', b'{"usage":{"total_tokens":-4}}', b'{"id":"x"}',
    b'[1,2]', b'{"usage":{"total_tokens":3}', b'{"usage":{"total_tokens":3}} trailing',
])
def test_responses_without_valid_usage_count_nothing(tokens, body):
    assert used(counted(tokens, body)) is None


def test_a_non_json_error_from_the_model_counts_nothing_and_passes_through(tokens):
    stream = tokens.stream()
    stream.request(CHAT, [b"{}"])
    result = stream.response({":status": "503", "content-type": "text/plain"}, [b"upstream connect error"])
    assert result.body == b"upstream connect error"
    assert used(stream) is None
    assert not [log for log in stream.logs if log["level"] == "Err"]


def test_broken_json_with_a_json_content_type_is_logged(tokens):
    stream = counted(tokens, b'{"usage": {"total_tokens": 12')
    assert used(stream) is None
    assert any("not JSON" in log["message"] for log in stream.logs if log["level"] == "Warn")


def test_a_20_mb_body_is_counted_in_chunks_and_passed_through_unchanged(tokens):
    vector = ",".join(f"{random.Random(i).random():.17f}" for i in range(1024))
    item = ('{"object":"embedding","index":%d,"embedding":[' + vector + "]}").encode()
    items = b",".join(item % i for i in range(1050))
    body = b'{"object":"list","data":[' + items + b'],"model":"q","usage":{"prompt_tokens":2048,"total_tokens":2048}}'
    assert len(body) > 20 * 1024 * 1024
    chunks = [body[i:i + 65536] for i in range(0, len(body), 65536)]
    started = time.perf_counter()
    stream = tokens.stream()
    stream.request({**CHAT, ":path": "/v1/embeddings"}, [b'{"input":"x"}'])
    result = stream.response({":status": "200", "content-type": "application/json"}, chunks)
    elapsed = time.perf_counter() - started
    assert used(stream) == 2048
    assert result.body == body
    print(f"20 MB response counted in {elapsed:.2f} s")


# --- counting streams -----------------------------------------------------------------------------

def sse(events: list[dict | str], newline=b"\n") -> bytes:
    out = b""
    for event in events:
        data = event if isinstance(event, str) else json.dumps(event)
        out += b"data: " + data.encode() + newline + newline
    return out


STREAM = [
    {"id": "c1", "choices": [{"delta": {"content": "Hel"}}], "usage": None},
    {"id": "c1", "choices": [{"delta": {"content": "lo \u00e9\U0001F600 data: {usage}"}}], "usage": None},
    {"id": "c1", "choices": [], "usage": {"prompt_tokens": 11, "completion_tokens": 2, "total_tokens": 13}},
    "[DONE]",
]


@pytest.mark.parametrize("newline", [b"\n", b"\r\n", b"\r"])
def test_a_stream_cut_at_every_byte_counts_the_final_usage(tokens, newline):
    body = sse(STREAM, newline)
    for cut in range(1, len(body)):
        stream = counted(tokens, [body[:cut], body[cut:]], "text/event-stream")
        assert used(stream) == 13, (newline, cut)
    one_byte_chunks = [body[i:i + 1] for i in range(len(body))]
    stream = counted(tokens, one_byte_chunks, "text/event-stream; charset=utf-8")
    assert used(stream) == 13


def test_stream_details_comments_multiline_data_no_space_and_cumulative_usage(tokens):
    body = (b": keep-alive\n\n"
            b'data:{"choices":[],"usage":{"total_tokens":4}}\n\n'
            b'event: message\ndata: {"choices":[],\ndata: "usage":{"total_tokens":9}}\n\n'
            b"data: [DONE]\n\n")
    stream = counted(tokens, [body], "text/event-stream")
    assert used(stream) == 9  # the last (cumulative) usage wins; data lines joined with LF


def test_a_stream_without_usage_counts_nothing(tokens):
    stream = counted(tokens, [sse(STREAM[:2] + ["[DONE]"])], "text/event-stream")
    assert used(stream) is None


def test_a_stream_that_ends_without_a_blank_line_still_counts(tokens):
    body = b'data: {"choices":[],"usage":{"total_tokens":21}}'
    assert used(counted(tokens, [body], "text/event-stream")) == 21


# --- the request side -----------------------------------------------------------------------------

def test_a_counted_request_publishes_the_caller(tokens):
    stream = tokens.stream(remote_address="203.0.113.9:40000")
    stream.request({**CHAT, ":path": "/v1/chat/completions?x=1"}, [b"{}"])
    assert stream.metadata(NS) == {"sa": "svc-search", "ip": "203.0.113.9"}
    v6 = tokens.stream(remote_address="[2001:db8::1]:443")
    v6.request(CHAT, [b"{}"])
    assert v6.metadata(NS)["ip"] == "2001:db8::1"


def test_paths_that_are_not_counted_are_left_alone(tokens):
    stream = tokens.stream()
    body = b'{"stream": true}'
    result = stream.request({**CHAT, ":path": "/v1/models"}, [body])
    assert stream.metadata(NS) is None and result.body == body
    stream.response({":status": "200", "content-type": "application/json"}, [b'{"usage":{"total_tokens":5}}'])
    assert used(stream) is None


def test_missing_identity_is_refused_with_an_openai_error(tokens):
    stream = tokens.stream()
    headers = {k: v for k, v in CHAT.items() if k != "x-modelplat-sa"}
    result = stream.request(headers, [b"{}"])
    assert result.responded["headers"][":status"] == "401"
    error = json.loads(result.responded["body"])["error"]
    assert error["code"] == "missing_identity" and error["type"] == "invalid_request_error"
    assert stream.metadata(NS) is None


def test_missing_identity_counts_by_ip_when_configured(tokens_source):
    f = make(tokens_source, missingIdentity="countByIP")
    stream = f.stream(remote_address="198.51.100.4:1234")
    result = stream.request({k: v for k, v in CHAT.items() if k != "x-modelplat-sa"}, [b"{}"])
    assert result.responded is None
    assert stream.metadata(NS) == {"ip": "198.51.100.4"}


@pytest.mark.parametrize("body, expected", [
    (b'{"model":"q","stream":true,"messages":[{"role":"user","content":"hi"}]}',
     b'{"stream_options":{"include_usage":true},"model":"q","stream":true,"messages":[{"role":"user","content":"hi"}]}'),
    (b'  {\n "stream" : true , "stream_options": null }',
     b'  {\n "stream" : true , "stream_options": {"include_usage":true} }'),
    (b'{"stream":true,"stream_options":{ }}', b'{"stream":true,"stream_options":{"include_usage":true }}'),
    (b'{"stream":true,"stream_options":{"continuous_usage_stats":true}}',
     b'{"stream":true,"stream_options":{"include_usage":true,"continuous_usage_stats":true}}'),
    (b'{"stream":true,"stream_options":{"include_usage": false}}',
     b'{"stream":true,"stream_options":{"include_usage": true}}'),
])
def test_streaming_requests_get_include_usage_and_keep_every_other_byte(tokens, body, expected):
    stream = tokens.stream()
    result = stream.request({**CHAT, "content-length": str(len(body))}, [body[:5], body[5:]])
    assert result.body == expected
    assert result.header("content-length") == str(len(expected))
    assert json.loads(expected)["stream_options"]["include_usage"] is True


def test_a_chunked_streaming_request_gets_no_content_length(tokens):
    body = b'{"stream":true}'
    result = tokens.stream().request(CHAT, [body[:4], body[4:]])
    assert result.body == b'{"stream_options":{"include_usage":true},"stream":true}'
    assert result.header("content-length") is None


@pytest.mark.parametrize("body", [
    b'{"stream":true,"stream_options":{"include_usage":true}}', b'{"stream":false}', b'{"messages":[]}',
    b'not json {"stream":true}', b'{"stream":true', b'["stream", true]',
])
def test_bodies_that_need_no_include_usage_are_untouched(tokens, body):
    result = tokens.stream().request(CHAT, [body])
    assert result.body == body


# --- over quota ---------------------------------------------------------------------------------

@pytest.mark.parametrize("quota, code", [("service-account", "service_account_token_quota_exceeded"),
                                         ("client-ip", "client_ip_token_quota_exceeded")])
def test_a_429_from_the_quota_filters_gets_an_openai_error_and_retry_after(tokens, quota, code):
    stream = tokens.stream()
    stream.request(CHAT, [b"{}"])
    result = stream.response({":status": "429", "content-length": "0", "x-modelplat-quota": quota, "x-envoy-ratelimited": "true",
                              "x-ratelimit-limit": "12000, 12000;w=86400", "x-ratelimit-remaining": "0",
                              "x-ratelimit-reset": "3600"}, [])
    error = result.json()["error"]
    assert error["type"] == "rate_limit_exceeded" and error["code"] == code
    assert "team-search" in error["message"] and ("service account" in error["message"]) == (quota == "service-account")
    assert result.header("retry-after") == "3600"
    assert result.header("content-type") == "application/json"
    assert result.header("content-length") == str(len(result.body))
    assert result.header("x-ratelimit-remaining") == "0"
    assert used(stream) is None


def test_a_429_from_the_model_itself_is_passed_through(tokens):
    stream = tokens.stream()
    stream.request(CHAT, [b"{}"])
    result = stream.response({":status": "429", "content-type": "application/json"}, [b'{"error":"busy"}'])
    assert result.body == b'{"error":"busy"}'


# --- hostile input --------------------------------------------------------------------------------

HOSTILE = ['"]]..os.exit(1)--', "]==]\nerror('x')\n--[==[", "%s%d%%", "\\u0000\"}", "team\nsearch"]


@pytest.mark.parametrize("tenant", HOSTILE)
def test_a_hostile_tenant_is_data_in_the_error_body_never_code(tokens_source, tenant):
    f = make(tokens_source, tenantId=tenant)
    stream = f.stream()
    stream.request(CHAT, [b"{}"])
    result = stream.response({":status": "429", "x-modelplat-quota": "client-ip", "x-ratelimit-reset": "60"}, [])
    assert tenant in result.json()["error"]["message"]


@pytest.mark.parametrize("tenant", HOSTILE + ["Team", "a" * 64, ""])
def test_the_schema_refuses_hostile_tenants(tenant):
    from pydantic import ValidationError

    from modelplat.values import TokenLimit

    with pytest.raises(ValidationError):
        TokenLimit(enabled=True, tenantId=tenant)


@pytest.mark.parametrize("body", [b"[" * 100_000, b'{"usage":' * 5000, b'{"a":"\\', b"\xff\xfe{}", b'{"a":1e999999}'])
def test_hostile_bodies_never_break_the_filter(tokens, body):
    stream = counted(tokens, body)
    assert used(stream) is None
    result = tokens.stream().request(CHAT, [body])
    assert result.body == body


def test_hostile_identity_values_are_passed_as_data(tokens):
    stream = tokens.stream()
    stream.request({**CHAT, "x-modelplat-sa": "a\"b\\c%00]]"}, [b"{}"])
    assert stream.metadata(NS)["sa"] == "a\"b\\c%00]]"


# --- identity hygiene -----------------------------------------------------------------------------

def test_client_sent_identity_headers_are_removed_before_jwt(envoyfilters):
    name, source, metadata = lua_filter(envoyfilters["qwen-chat-identity"])
    f = Filter(source, name, metadata)
    result = f.stream().request({":path": "/v1/chat/completions", "x-modelplat-sa": "forged",
                                 "X-Modelplat-Tenant": "forged", "x-other": "kept"}, [])
    names = [k for k, _ in result.headers]
    assert "x-modelplat-sa" not in names and "x-modelplat-tenant" not in names and "x-other" in names


# --- property tests: the decoder and the stream reader --------------------------------------------

json_values = st.recursive(
    st.none() | st.booleans() | st.integers(-2**53, 2**53) | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(max_size=20),
    lambda children: st.lists(children, max_size=5) | st.dictionaries(st.text(max_size=8), children, max_size=5),
    max_leaves=25,
)


@settings(max_examples=300, deadline=None)
@given(value=json_values, indent=st.sampled_from([None, 0, 2]), ascii_=st.booleans())
def test_decoder_agrees_with_python(tokens, value, indent, ascii_):
    encoded = json.dumps(value, indent=indent, ensure_ascii=ascii_)
    decode = tokens.lua.eval("function(s) local v, err = modelplat_tokens.json.decode(s); return v, err end")
    decoded, err = decode(encoded.encode())
    assert err is None, text(err)
    is_null = tokens.lua.eval("function(v) return v == modelplat_tokens.json.null end")
    assert _normalise(value) == _from_lua(decoded, is_null)


def _normalise(value):
    """Python's view, with the distinctions a Lua table cannot keep folded away."""
    if isinstance(value, dict):
        return {k: _normalise(v) for k, v in value.items()} if value else []
    if isinstance(value, list):
        return [_normalise(v) for v in value]
    if isinstance(value, bool) or value is None or isinstance(value, str):
        return value
    return float(value)


def _from_lua(value, is_null):
    if value is None:
        raise AssertionError("a JSON value decoded to nil")
    if isinstance(value, (bool, int, float)):
        return float(value) if not isinstance(value, bool) else value
    if isinstance(value, (str, bytes)):
        return text(value)
    if is_null(value):
        return None
    keys = list(value.keys())
    if not keys:
        return []
    if all(isinstance(k, int) for k in keys):
        return [_from_lua(value[i], is_null) for i in range(1, len(keys) + 1)]
    return {text(k): _from_lua(v, is_null) for k, v in value.items()}


@settings(max_examples=200, deadline=None)
@given(prefix=st.dictionaries(st.text(max_size=6).filter(lambda k: k != "usage"), json_values, max_size=4),
       total=st.integers(0, 10**9), order=st.randoms(), indent=st.sampled_from([None, 1, 4]))
def test_usage_is_found_in_any_key_order(tokens, prefix, total, order, indent):
    items = list(prefix.items()) + [("usage", {"total_tokens": total, "prompt_tokens": 1})]
    order.shuffle(items)
    body = json.dumps(dict(items), indent=indent).encode()
    assert tokens.lua.eval("modelplat_tokens.usage_tokens")(body) == total


@settings(max_examples=200, deadline=None)
@given(texts=st.lists(st.text(max_size=30), min_size=1, max_size=6), cuts=st.lists(st.integers(1, 400), max_size=8),
       newline=st.sampled_from(["\n", "\r\n", "\r"]))
def test_the_sse_reader_yields_each_event_whatever_the_chunking(tokens, texts, cuts, newline):
    lines = [t.replace("\r", " ").replace("\n", " ") for t in texts]
    body = "".join(f"data: {line}{newline}{newline}" for line in lines).encode()
    chunks, start = [], 0
    for cut in sorted(set(c for c in cuts if c < len(body))):
        chunks.append(body[start:cut])
        start = cut
    chunks.append(body[start:])
    collect = tokens.lua.eval("""function(chunks)
      local got = {}
      local r = modelplat_tokens.sse_reader(function(data) got[#got + 1] = data end)
      for i = 1, #chunks do r.feed(chunks[i]) end
      r.finish()
      return got
    end""")
    got = collect(tokens.lua.table_from(chunks))  # chunks may split a UTF-8 character
    assert [text(got[i]) for i in range(1, len(got) + 1)] == lines
