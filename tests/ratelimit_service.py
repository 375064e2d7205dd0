"""The real envoyproxy/ratelimit service and its Redis on loopback, for behaviour tests; and what
Envoy would send it for a request, worked out from a rendered EnvoyFilter's rate-limit actions.

Test support only: it starts, asks and stops processes, and never renders or changes output.

Use (see tests/test_ratelimit_service.py):

    with RateLimitService.start(configs, tmp_path, settings=env_of_rendered_deployment) as service:
        descriptors = envoy_descriptors(vhost_rate_limits(envoyfilter), Request("10.1.0.7", {"x-sa": "a"}))
        answer = service.should_rate_limit(domain, descriptors)      # one request, as Envoy sends it
        answer = service.check(domain, {"remote_address": "10.1.0.7"}, hits_addend=0)   # one descriptor
        service.flush()                                              # forget every counter
"""

from __future__ import annotations

import json
import os
import re
import shutil
import signal
import socket
import subprocess
import time
import urllib.error
import urllib.request
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

START_TIMEOUT = 15.0  # seconds; both processes are ready in well under one here
STOP_TIMEOUT = 5.0
REQUEST_TIMEOUT = 5.0

# Settings the harness owns: where the service listens, finds its config and its Redis. Everything
# else comes from the rendered Deployment, so the tests run the service as the platform does.
_OWNED = ("HOST", "PORT", "GRPC_HOST", "GRPC_PORT", "DEBUG_HOST", "DEBUG_PORT", "REDIS_URL", "REDIS_SOCKET_TYPE",
          "RUNTIME_ROOT")
# The service logs this (and keeps serving, with no config) when it refuses a config file.
_CONFIG_ERROR = re.compile(r'msg="Error loading new configuration: (.*?)"\s*$', re.M)


class ServiceError(RuntimeError):
    """A process that does not start in time, exits, or a config the service refuses; the message
    carries the process's log."""


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _start(args: list[str], env: dict[str, str], log: Path, cwd: Path) -> subprocess.Popen:
    # A session of its own: stop() ends the whole process group, whatever it spawned.
    with log.open("wb") as out:
        return subprocess.Popen(args, env=env, stdout=out, stderr=subprocess.STDOUT, cwd=cwd,
                                stdin=subprocess.DEVNULL, start_new_session=True)


def _stop(process: subprocess.Popen | None) -> None:
    if process is None or process.poll() is not None:
        return
    for sig, wait in ((signal.SIGTERM, STOP_TIMEOUT), (signal.SIGKILL, STOP_TIMEOUT)):
        try:
            os.killpg(process.pid, sig)
        except ProcessLookupError:
            return
        try:
            process.wait(wait)
            return
        except subprocess.TimeoutExpired:
            continue


def _log_tail(log: Path, chars: int = 4000) -> str:
    try:
        return log.read_text(errors="replace")[-chars:]
    except OSError:
        return "(no log)"


# --- Redis --------------------------------------------------------------------------------------


@dataclass
class Redis:
    """A throwaway redis-server: loopback only, no persistence."""

    port: int
    process: subprocess.Popen
    log: Path

    @classmethod
    def start(cls, binary: str, workdir: Path, timeout: float = START_TIMEOUT) -> Redis:
        workdir.mkdir(parents=True, exist_ok=True)
        port = free_port()
        log = workdir / "redis.log"
        args = [binary, "--port", str(port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no",
                "--dir", str(workdir), "--daemonize", "no", "--protected-mode", "yes", "--loglevel", "warning"]
        redis = cls(port, _start(args, {"PATH": os.environ.get("PATH", "")}, log, workdir), log)
        deadline = time.monotonic() + timeout
        while True:
            try:
                if redis.command("PING") == b"+PONG":
                    return redis
            except OSError:
                pass
            if redis.process.poll() is not None or time.monotonic() > deadline:
                redis.stop()
                raise ServiceError(f"redis-server did not answer PING within {timeout}s:\n{_log_tail(log)}")
            time.sleep(0.02)

    def command(self, *args: str) -> bytes:
        """One command in RESP; the first line of the answer (enough for PING, FLUSHALL, DBSIZE)."""
        payload = f"*{len(args)}\r\n" + "".join(f"${len(a.encode())}\r\n{a}\r\n" for a in args)
        with socket.create_connection(("127.0.0.1", self.port), timeout=REQUEST_TIMEOUT) as conn:
            conn.sendall(payload.encode())
            answer = b""
            while not answer.endswith(b"\r\n"):
                chunk = conn.recv(4096)
                if not chunk:
                    break
                answer += chunk
        return answer.strip()

    def flush(self) -> None:
        answer = self.command("FLUSHALL")
        if answer != b"+OK":
            raise ServiceError(f"FLUSHALL answered {answer!r}")

    def stop(self) -> None:
        _stop(self.process)


# --- the rate limit service ---------------------------------------------------------------------


def write_configmap_volume(configs: Mapping[str, str], folder: Path) -> None:
    """Lay out `configs` as the kubelet mounts a ConfigMap: the files in a hidden, timestamped
    folder, a `..data` link to it, and one link per key. The service reads this folder as it reads
    the real mount, so a setting it needs there (RUNTIME_IGNOREDOTFILES) is exercised too."""
    folder.mkdir(parents=True, exist_ok=True)
    stamp = folder / "..2026_01_01_00_00_00.000000000"
    stamp.mkdir()
    for name, text in configs.items():
        (stamp / name).write_text(text)
    (folder / "..data").symlink_to(stamp.name)
    for name in configs:
        (folder / name).symlink_to(f"..data/{name}")


@dataclass
class RateLimitService:
    """envoyproxy/ratelimit (its `service_cmd`) with its own Redis, both on 127.0.0.1."""

    redis: Redis
    process: subprocess.Popen
    log: Path
    port: int
    grpc_port: int
    debug_port: int
    env: dict[str, str] = field(default_factory=dict)

    @classmethod
    def start(cls, configs: Mapping[str, str], workdir: Path, settings: Mapping[str, str] | None = None,
              binary: str = "ratelimit", redis_binary: str = "redis-server",
              timeout: float = START_TIMEOUT) -> RateLimitService:
        """Start Redis and the service with `configs` (file name → descriptor config YAML, e.g. the
        data of the rendered `_platform/ratelimit/configmap.yaml`) and `settings` (the rendered
        Deployment's env, see deployment_settings; addresses and paths are the harness's own).

        Returns once the service reports healthy with its config loaded. Raises ServiceError if
        the service refuses the config, exits, or is not ready within `timeout` seconds; nothing
        is left running then."""
        workdir.mkdir(parents=True, exist_ok=True)
        binary = shutil.which(binary) or binary
        redis_binary = shutil.which(redis_binary) or redis_binary
        redis = Redis.start(redis_binary, workdir / "redis", timeout)
        try:
            # Without settings, the one the ConfigMap layout needs (the rendered Deployment sets it).
            settings = {"RUNTIME_IGNOREDOTFILES": "true"} if settings is None else settings
            env = {k: v for k, v in settings.items() if k not in _OWNED}
            root = workdir / "runtime"
            env.setdefault("RUNTIME_SUBDIRECTORY", "ratelimit")
            write_configmap_volume(configs, root / env["RUNTIME_SUBDIRECTORY"] / env.get("RUNTIME_APPDIRECTORY", "config"))
            port, grpc_port, debug_port = free_port(), free_port(), free_port()
            env |= {
                "PATH": os.environ.get("PATH", ""),
                "RUNTIME_ROOT": str(root), "RUNTIME_WATCH_ROOT": env.get("RUNTIME_WATCH_ROOT", "false"),
                "USE_STATSD": "false", "REDIS_SOCKET_TYPE": "tcp", "REDIS_URL": f"127.0.0.1:{redis.port}",
                "HOST": "127.0.0.1", "PORT": str(port), "GRPC_HOST": "127.0.0.1", "GRPC_PORT": str(grpc_port),
                "DEBUG_HOST": "127.0.0.1", "DEBUG_PORT": str(debug_port),
                # Not healthy until a config with at least one domain is loaded: the readiness signal.
                "HEALTHY_WITH_AT_LEAST_ONE_CONFIG_LOADED": "true",
            }
            env.setdefault("LOG_LEVEL", "warn")
            log = workdir / "ratelimit.log"
            process = _start([binary], env, log, workdir)
        except BaseException:
            redis.stop()
            raise
        service = cls(redis, process, log, port, grpc_port, debug_port, env)
        try:
            service._wait_ready(timeout)
        except BaseException:
            service.stop()
            raise
        return service

    def _wait_ready(self, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        while True:
            refused = _CONFIG_ERROR.search(_log_tail(self.log, 1_000_000))
            if refused:
                raise ServiceError(f"the rate limit service refused its config: {refused.group(1)}")
            if self.process.poll() is not None:
                raise ServiceError(f"the rate limit service exited ({self.process.returncode}):\n{_log_tail(self.log)}")
            try:
                with urllib.request.urlopen(f"{self.url}/healthcheck", timeout=1) as answer:
                    if answer.status == 200:
                        return
            except (urllib.error.URLError, OSError):
                pass  # not listening yet, or not healthy (no config loaded)
            if time.monotonic() > deadline:
                raise ServiceError(f"the rate limit service was not healthy within {timeout}s:\n{_log_tail(self.log)}")
            time.sleep(0.02)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def should_rate_limit(self, domain: str, descriptors: list[dict[str, Any]]) -> dict[str, Any]:
        """One RateLimitRequest over the service's `POST /json`, as Envoy sends it over gRPC:
        descriptors are `{"entries": [{"key", "value"}, …]}`, optionally with `"hits_addend": N`.

        Returns the answer: `overallCode` (OK / OVER_LIMIT) and one status per descriptor, in
        order. proto3 JSON leaves out zeros; they are put back (`limitRemaining: 0` where a limit
        applied), so a caller can read every field. A status without `currentLimit` means no
        limit in the config matched that descriptor."""
        body = json.dumps({"domain": domain, "descriptors": descriptors}).encode()
        request = urllib.request.Request(f"{self.url}/json", data=body, method="POST",
                                         headers={"Content-Type": "application/json"})
        try:
            with urllib.request.urlopen(request, timeout=REQUEST_TIMEOUT) as answer:
                status, text = answer.status, answer.read()
        except urllib.error.HTTPError as error:
            status, text = error.code, error.read()
        if status not in (200, 429):  # 429 carries the same JSON with OVER_LIMIT
            raise ServiceError(f"POST /json answered {status}: {text.decode(errors='replace').strip()}\n"
                               f"{_log_tail(self.log, 1000)}")
        answer = json.loads(text)
        answer.setdefault("overallCode", "OK")
        for status_ in answer.setdefault("statuses", []):
            status_.setdefault("code", "OK")
            if "currentLimit" in status_:
                status_.setdefault("limitRemaining", 0)
        return answer

    def check(self, domain: str, entries: Mapping[str, str] | Iterable[tuple[str, str]],
              hits_addend: int | None = None) -> dict[str, Any]:
        """One descriptor (entries in order); `hits_addend` None leaves the service's default of 1.
        Returns the answer of should_rate_limit."""
        pairs = entries.items() if isinstance(entries, Mapping) else entries
        descriptor: dict[str, Any] = {"entries": [{"key": k, "value": v} for k, v in pairs]}
        if hits_addend is not None:
            descriptor["hits_addend"] = hits_addend
        return self.should_rate_limit(domain, [descriptor])

    def loaded_limits(self) -> dict[str, str]:
        """The limits the service holds, from its debug endpoint: `domain.key[_value]…` → `unit=…
        requests_per_unit=…` (the service's own rendering)."""
        with urllib.request.urlopen(f"http://127.0.0.1:{self.debug_port}/rlconfig", timeout=REQUEST_TIMEOUT) as answer:
            text = answer.read().decode()
        limits = {}
        for line in text.splitlines():
            key, _, rest = line.partition(": ")
            if rest:
                limits[key] = rest.split(",")[0].strip()
        return limits

    def flush(self) -> None:
        """Forget every counter (Redis FLUSHALL), so tests do not depend on each other."""
        self.redis.flush()

    def stop(self) -> None:
        try:
            _stop(self.process)
        finally:
            self.redis.stop()

    def __enter__(self) -> RateLimitService:
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()


def deployment_settings(deployment: dict[str, Any]) -> dict[str, str]:
    """The env of the rendered ratelimit Deployment's container (`_platform/ratelimit/ratelimit.yaml`)."""
    (container,) = deployment["spec"]["template"]["spec"]["containers"]
    return {item["name"]: item["value"] for item in container.get("env", [])}


def seconds_left_in_window(unit_seconds: int) -> float:
    """The service counts in fixed windows aligned to the epoch (a minute starts at :00)."""
    return unit_seconds - time.time() % unit_seconds


def start_of_fresh_window(unit_seconds: int, needed: float) -> None:
    """Wait (at most `needed` seconds) for the next window if fewer than `needed` seconds are left
    in this one, so a burst of requests is counted in one window."""
    left = seconds_left_in_window(unit_seconds)
    if left < needed:
        time.sleep(left + 0.05)


# --- what Envoy sends ---------------------------------------------------------------------------


@dataclass
class Request:
    """A simulated request as the rate limit filter sees it: the client address Envoy trusts,
    the request headers (names are case-insensitive), and dynamic metadata set by earlier
    filters (`{"namespace": {"key": value}}`, read by a `hits_addend` format)."""

    remote_address: str
    headers: Mapping[str, str] = field(default_factory=dict)
    dynamic_metadata: Mapping[str, Mapping[str, Any]] = field(default_factory=dict)

    def header(self, name: str) -> str | None:
        wanted = name.lower()
        return next((v for k, v in self.headers.items() if k.lower() == wanted), None)


class UnsupportedAction(ValueError):
    """An action this model of Envoy does not know: extend envoy_descriptors, never guess."""


def _entry(action: dict[str, Any], request: Request) -> tuple[str, str] | None | bool:
    """The descriptor entry one action appends: (key, value); None when the action cannot append
    one (no descriptor for the whole rate limit); True when it is skipped (the others still count)."""
    (kind, spec), = action.items()
    spec = spec or {}
    if kind == "remote_address":
        return ("remote_address", request.remote_address) if request.remote_address else None
    if kind == "request_headers":
        value = request.header(spec["header_name"])
        if value is None:
            return True if spec.get("skip_if_absent") else None
        return (spec["descriptor_key"], value)
    if kind == "generic_key":
        return (spec.get("descriptor_key") or "generic_key", spec["descriptor_value"])
    if kind == "metadata":
        # Dynamic metadata set by an earlier filter (modelplat's token Lua filter): the value at
        # metadata_key.key / path; absent → default_value, else skipped or no descriptor.
        if spec.get("source", "DYNAMIC") != "DYNAMIC":
            raise UnsupportedAction(f"metadata source {spec.get('source')!r} is not modelled")
        value: Any = request.dynamic_metadata.get(spec["metadata_key"]["key"])
        for step in spec["metadata_key"].get("path", []):
            value = value.get(step["key"]) if isinstance(value, Mapping) else None
        if value is None or value == "":
            if spec.get("default_value"):
                return (spec["descriptor_key"], spec["default_value"])
            return True if spec.get("skip_if_absent") else None
        if not isinstance(value, str):
            raise UnsupportedAction("only string metadata values are modelled")
        return (spec["descriptor_key"], value)
    if kind == "header_value_match":
        matched = all(_header_matches(m, request) for m in spec.get("headers", []))
        if matched == spec.get("expect_match", True):
            return (spec.get("descriptor_key") or "header_match", spec["descriptor_value"])
        return None
    raise UnsupportedAction(f"rate limit action {kind!r} is not modelled")


def _header_matches(matcher: dict[str, Any], request: Request) -> bool:
    value = request.header(matcher["name"])
    if "present_match" in matcher:
        result = (value is not None) == matcher["present_match"]
    elif "exact_match" in matcher or "exact" in matcher.get("string_match", {}):
        result = value == matcher.get("exact_match", matcher.get("string_match", {}).get("exact"))
    elif "prefix" in matcher.get("string_match", {}):
        result = value is not None and value.startswith(matcher["string_match"]["prefix"])
    else:
        raise UnsupportedAction(f"header matcher {sorted(matcher)} is not modelled")
    return result != matcher.get("invert_match", False)


_DYNAMIC_METADATA = re.compile(r"^%DYNAMIC_METADATA\(([^:)]+):([^:)]+)\)%$")


_SKIP = object()


def _hits_addend(limit: dict[str, Any], request: Request) -> int | None | object:
    """The descriptor's hits_addend; _SKIP when its format yields no number (Envoy then sends no
    descriptor for the configuration, with a warning)."""
    addend = limit.get("hits_addend")
    if addend is None:
        return None
    if "number" in addend:
        return int(addend["number"])
    match = _DYNAMIC_METADATA.match(addend.get("format", ""))
    if not match:
        raise UnsupportedAction(f"hits_addend {addend} is not modelled")
    value = request.dynamic_metadata.get(match.group(1), {}).get(match.group(2))
    try:
        number = float(value)
    except (TypeError, ValueError):
        return _SKIP
    return int(number) if 0 <= number <= 1e9 else _SKIP


def envoy_descriptors(rate_limits: list[dict[str, Any]], request: Request, stage: int = 0,
                      on_stream_done: bool = False) -> list[dict[str, Any]]:
    """The descriptors Envoy's HTTP rate limit filter sends for `request`, one per rate limit
    configuration that produces one, in order (Envoy's RateLimit.Action semantics):

    - the actions of one configuration append their entries in order; if any action cannot
      append one (a header that is absent without `skip_if_absent`, an unmatched
      `header_value_match`), the configuration sends no descriptor at all;
    - a skipped action (`skip_if_absent: true`) appends nothing and the others still count; a
      configuration left with no entries sends nothing;
    - only configurations of the filter's `stage` (default 0) apply, and those with
      `apply_on_stream_done` only when the stream ends (`on_stream_done=True`);
    - `hits_addend` (`number`, or a `%DYNAMIC_METADATA(ns:key)%` format) goes on the descriptor.
    """
    descriptors = []
    for limit in rate_limits:
        if int(limit.get("stage", 0)) != stage or bool(limit.get("apply_on_stream_done")) != on_stream_done:
            continue
        entries: list[dict[str, str]] = []
        for action in limit["actions"]:
            entry = _entry(action, request)
            if entry is None:
                entries = []
                break
            if entry is not True:
                entries.append({"key": entry[0], "value": entry[1]})
        if not entries:
            continue
        descriptor: dict[str, Any] = {"entries": entries}
        addend = _hits_addend(limit, request)
        if addend is _SKIP:
            continue
        if addend is not None:
            descriptor["hits_addend"] = addend
        descriptors.append(descriptor)
    return descriptors


def applied_rate_limits(vhost: list[dict[str, Any]], route: list[dict[str, Any]] | None = None,
                        per_route: dict[str, Any] | None = None) -> list[dict[str, Any]]:
    """The rate limit configurations Envoy applies to a request on one route, from the virtual
    host's `rate_limits`, the route's own (`RouteAction.rate_limits`) and the filter's per-route
    config (`typed_per_filter_config` RateLimitPerRoute):

    - per-route `rate_limits`, when set, replace all the others (the virtual host's too);
    - otherwise the route's own limits, if any, hide the virtual host's unless `vh_rate_limits`
      is INCLUDE (or the route's deprecated `include_vh_rate_limits`); IGNORE drops them always.
    """
    per_route = per_route or {}
    if per_route.get("rate_limits"):
        return list(per_route["rate_limits"])
    route = route or []
    option = per_route.get("vh_rate_limits", "OVERRIDE")
    if option == "IGNORE" or (route and option != "INCLUDE"):
        return list(route)
    return list(route) + list(vhost)


def ratelimit_filter(envoyfilter: dict[str, Any]) -> dict[str, Any]:
    """The typed_config of the `envoy.filters.http.ratelimit` filter an EnvoyFilter inserts."""
    (config,) = [p["patch"]["value"]["typed_config"] for p in envoyfilter["spec"]["configPatches"]
                 if p["applyTo"] == "HTTP_FILTER" and p["patch"]["value"].get("name") == "envoy.filters.http.ratelimit"]
    return config


def vhost_rate_limits(envoyfilter: dict[str, Any]) -> list[dict[str, Any]]:
    """The `rate_limits` an EnvoyFilter merges into the virtual host, in order."""
    return [limit for p in envoyfilter["spec"]["configPatches"] if p["applyTo"] == "VIRTUAL_HOST"
            for limit in p["patch"]["value"].get("rate_limits", [])]
