"""custom-logger and request-logger, through a real Kernel; request-logger wraps a tiny
Starlette app served over loopback HTTP."""

from __future__ import annotations

import asyncio
import json
import threading

import httpx
import pytest
from starlette.applications import Starlette
from starlette.responses import StreamingResponse
from starlette.routing import Route

import helixlab as hx

from test_plugins_asgi import echo_app, serving

TOKEN = "eyJhbGciOiJIUzI1NiJ9.secret-token-value.sig"


def memory_logger(kernel, **config):
    kernel.apply_config(
        {"plugins": {"custom-logger": {"config": {"output": "memory", "format": "json", **config}}}}
    )
    kernel.load_all()
    return kernel.get("custom-logger")


def records(logger):
    return [json.loads(line) for line in logger.lines]


# -- custom-logger ---------------------------------------------------------------------


@pytest.mark.parametrize("level", ["verbose", "", "trace"])
def test_an_invalid_log_level_is_a_config_error_before_anything_starts(kernel, level):
    yaml = f"plugins:\n  custom-logger:\n    config:\n      log_level: {level!r}\n"
    with pytest.raises(hx.ConfigError) as info:
        kernel.apply_config(yaml)
    problem = info.value.problems[0]
    assert problem.plugin == "custom-logger" and problem.path == "config.log_level"
    assert problem.line == 4
    assert "custom-logger" not in kernel


def test_log_level_is_case_insensitive_and_filters_lower_levels(kernel):
    logger = memory_logger(kernel, log_level="WARNING")
    logger.log("info", "not shown")
    logger.log("Error", "shown", code=7)
    assert [(r["level"], r["message"], r.get("code")) for r in records(logger)] == [
        ("error", "shown", 7)
    ]


def test_fields_with_secret_names_are_masked(kernel):
    logger = memory_logger(kernel)
    logger.info("calling upstream", api_key="sk-live-123", nested={"password": "hunter2"}, n=1)
    (record,) = [r for r in records(logger) if r["message"] == "calling upstream"]
    assert record["api_key"] == "***" and record["nested"] == {"password": "***"}
    assert record["n"] == 1
    assert "sk-live-123" not in "".join(logger.lines) and "hunter2" not in "".join(logger.lines)


def test_text_format_is_one_readable_line(kernel):
    logger = memory_logger(kernel, format="text")
    logger.warning("disk low", free="2 GB", host="a1")
    assert logger.lines[-1].endswith('WARNING disk low free="2 GB" host=a1')


def test_memory_output_keeps_only_the_last_lines(kernel):
    logger = memory_logger(kernel, memory_lines=3)
    for i in range(10):
        logger.info(f"line {i}")
    assert [r["message"] for r in records(logger)] == ["line 7", "line 8", "line 9"]


def test_file_output_appends_lines_and_is_closed_on_stop(kernel, tmp_path):
    path = tmp_path / "logs" / "helix.log"
    kernel.apply_config(
        {"plugins": {"custom-logger": {"config": {"output": str(path), "format": "json"}}}}
    )
    kernel.load_all()
    kernel.get("custom-logger").info("hello", user="ada")
    assert kernel.health()["custom-logger"].healthy
    kernel.unload("custom-logger")
    messages = [json.loads(line)["message"] for line in path.read_text().splitlines()]
    assert messages == ["Custom logger plugin started", "hello", "Custom logger plugin stopped"]


def test_stdout_is_the_default_as_in_the_course(kernel, capsys):
    kernel.apply_config({"plugins": {"custom-logger": {}}})
    kernel.load_all()
    kernel.get("custom-logger").info("to stdout")
    out = capsys.readouterr().out
    assert "Custom logger plugin started" in out and "to stdout" in out


def test_configure_changes_the_level_of_the_running_logger(kernel):
    memory_logger(kernel, log_level="error")
    kernel.get("custom-logger").info("dropped")
    kernel.configure("custom-logger", {"log_level": "debug"})
    logger = kernel.get("custom-logger")
    logger.debug("kept")
    assert "kept" in [r["message"] for r in records(logger)]
    assert "dropped" not in [r["message"] for r in records(logger)]


def test_unknown_keys_and_bad_formats_are_refused_with_their_line(kernel):
    yaml = "plugins:\n  custom-logger:\n    config:\n      format: xml\n      colour: red\n"
    with pytest.raises(hx.ConfigError) as info:
        kernel.apply_config(yaml)
    found = {(p.path, p.line) for p in info.value.problems}
    assert found == {("config.format", 4), ("config.colour", 5)}


# -- request-logger --------------------------------------------------------------------


@pytest.fixture
def request_logger(kernel):
    kernel.apply_config(
        {
            "plugins": {
                "custom-logger": {"config": {"output": "memory", "format": "json"}},
                "request-logger": {
                    "config": {
                        "log_body": True,
                        "log_headers": ["Authorization", "X-Request-Id", "X-Api-Key"],
                        "skip_paths": ["/health"],
                    }
                },
            }
        }
    )
    assert kernel.load_all().order == ["custom-logger", "request-logger"]
    return kernel.get("request-logger")


def test_logs_method_path_status_latency_with_secrets_masked(kernel, request_logger):
    app = request_logger.get_middleware()(echo_app())
    body = {"model": "m", "api_key": "sk-body-secret", "messages": []}
    with serving(app) as url:
        response = httpx.post(
            url + "/echo?api_key=sk-query-secret",
            json=body,
            headers={
                "Authorization": f"Bearer {TOKEN}",
                "X-Request-Id": "req-42",
                "X-Api-Key": "sk-header-secret",
            },
        )
    assert response.status_code == 200 and response.json()["body_bytes"] > 0
    (entry,) = request_logger.entries
    assert (entry["method"], entry["path"], entry["status"]) == ("POST", "/echo", 200)
    assert entry["latency_ms"] >= 0
    assert entry["headers"] == {
        "authorization": "***",
        "x-request-id": "req-42",
        "x-api-key": "***",
    }
    assert entry["body"] == {"model": "m", "api_key": "***", "messages": []}
    written = "\n".join(kernel.get("custom-logger").lines)
    assert "POST /echo 200" in written
    for secret in (TOKEN, "sk-body-secret", "sk-query-secret", "sk-header-secret"):
        assert secret not in written and secret not in repr(list(request_logger.entries))


def test_skip_paths_are_not_logged(request_logger):
    app = request_logger.get_middleware()(echo_app())
    with serving(app) as url:
        assert httpx.get(url + "/health").status_code == 200
        assert httpx.get(url + "/echo").status_code == 200
    assert [e["path"] for e in request_logger.entries] == ["/echo"]


def test_a_streamed_response_passes_through_chunk_by_chunk(request_logger):
    gate = threading.Event()

    async def chunks():
        yield b"first\n"
        await asyncio.to_thread(gate.wait, 10)
        yield b"second\n"

    async def stream(request):
        return StreamingResponse(chunks(), media_type="text/plain")

    app = request_logger.get_middleware()(Starlette(routes=[Route("/stream", stream)]))
    with serving(app) as url, httpx.stream("GET", url + "/stream") as response:
        pieces = response.iter_raw()
        assert next(pieces) == b"first\n"  # arrived while the app was still waiting
        assert not request_logger.entries  # the request is not finished yet
        gate.set()
        assert b"".join(pieces) == b"second\n"
    (entry,) = request_logger.entries
    assert entry["status"] == 200 and entry["path"] == "/stream"


def test_a_failing_app_is_logged_as_500_and_the_error_still_propagates(request_logger):
    async def boom(request):
        raise RuntimeError("bug")

    app = request_logger.get_middleware()(Starlette(routes=[Route("/boom", boom)]))
    with serving(app) as url:
        assert httpx.get(url + "/boom").status_code == 500
    assert request_logger.entries[-1]["status"] == 500


def test_request_logger_follows_a_reload_of_custom_logger(kernel, request_logger):
    report = kernel.reload("custom-logger")
    assert report.order == ["custom-logger", "request-logger"]
    new = kernel.get("request-logger")
    app = new.get_middleware()(echo_app())
    with serving(app) as url:
        httpx.get(url + "/echo")
    assert any("GET /echo 200" in line for line in kernel.get("custom-logger").lines)
