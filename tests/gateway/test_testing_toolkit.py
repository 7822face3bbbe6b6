"""helixlab.testing (issue 12): the pytest plugin's fixtures and the ASGI helpers, as a
plugin author uses them (no conftest: the ``pytest11`` entry point provides them)."""

from __future__ import annotations

import asyncio
import subprocess
import sys
import textwrap
import tomllib
import types
from pathlib import Path
from typing import Any

import pydantic
import pytest

import helixlab as hx
from helixlab.mockllm import MockServer
from helixlab.testing import ServedGateway, acall_middleware, call_middleware


class StampConfig(pydantic.BaseModel):
    value: str = "v1"


class Stamp(hx.MiddlewarePlugin[StampConfig]):
    """A middleware typed with its config model: ``init`` receives a StampConfig."""

    name = "stamp"

    def init(self, ctx: hx.Context, config: StampConfig) -> None:
        self.value = config.value.encode()

    def get_middleware(self) -> hx.MiddlewareFactory:
        def factory(app: Any) -> Any:
            async def stamped(scope: Any, receive: Any, send: Any) -> None:
                if scope["path"] == "/refuse":
                    await send({"type": "http.response.start", "status": 403, "headers": []})
                    await send({"type": "http.response.body", "body": b"no"})
                    return
                scope["headers"].append((b"x-seen-by", b"stamp"))

                async def stamping(message: Any) -> None:
                    if message["type"] == "http.response.start":
                        message.setdefault("headers", []).append((b"x-stamp", self.value))
                    await send(message)

                await app(scope, receive, stamping)

            return stamped

        return factory


def test_plugin_generic_sets_the_config_model_and_init_gets_it(helix_kernel: hx.Kernel):
    assert Stamp.config_model is StampConfig
    helix_kernel.register(Stamp)
    helix_kernel.apply_config({"plugins": {"stamp": {"config": {"value": "v9"}}}})
    helix_kernel.load_all()
    assert helix_kernel.get("stamp").value == b"v9"


def test_call_middleware_shows_what_went_downstream_and_what_came_back():
    plugin = Stamp()
    plugin.init(hx.Context("stamp", "0.1.0", StampConfig(), {}), StampConfig(value="u"))
    call = call_middleware(plugin, json={"model": "m"}, reply={"answer": 42})
    assert call.passed and call.status == 200 and call.json() == {"answer": 42}
    assert call.headers["x-stamp"] == "u"
    assert call.downstream[0].headers["x-seen-by"] == "stamp"
    assert call.downstream[0].json() == {"model": "m"}
    refused = call_middleware(plugin, method="GET", path="/refuse")
    assert not refused.passed and refused.status == 403 and refused.body == b"no"


def test_acall_middleware_runs_on_the_callers_loop():
    call = asyncio.run(acall_middleware(lambda app: app, reply_status=201))
    assert call.status == 201 and call.passed


def test_gateway_fixture_serves_with_httpx_and_openai_clients(gateway: ServedGateway):
    gateway.kernel.register(Stamp)
    gateway.apply("plugins:\n  custom-provider: {}\n  stamp: {config: {value: served}}\n")
    response = gateway.chat("hello")
    assert response.status_code == 200 and response.headers["x-stamp"] == "served"
    completion = gateway.openai.chat.completions.create(
        model="mock-small", messages=[{"role": "user", "content": "hello"}]
    )
    assert completion.choices[0].message.content == "Echo: hello"
    assert gateway.url.startswith("http://127.0.0.1:")


def test_mock_llm_fixture_with_its_fault_knobs_behind_the_gateway(
    gateway: ServedGateway, mock_llm: MockServer
):
    gateway.apply(
        f"plugins:\n  custom-provider:\n    config: {{api_url: '{mock_llm.url}', retry_count: 0}}\n"
    )
    mock_llm.fail_next(503)
    assert gateway.chat("first").status_code in (502, 503)  # the upstream failed
    assert gateway.chat("second").json()["choices"][0]["message"]["content"] == "Echo: second"
    assert mock_llm.requests[-1]["messages"][0]["content"] == "second"


def run_pytest(project: Path) -> subprocess.CompletedProcess:
    """pytest run on a plugin author's ``project`` in a new process (the installed plugin)."""
    return subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", str(project)],
        capture_output=True,
        text=True,
        timeout=120,
        cwd=project,
    )


def test_the_fixtures_come_from_the_installed_pytest_plugin(tmp_path: Path):
    """A plugin author's project: no conftest, the fixtures are there."""
    (tmp_path / "test_author.py").write_text(
        textwrap.dedent(
            """
            def test_fixtures(helix_kernel, gateway, mock_llm):
                assert gateway.kernel is helix_kernel
                assert gateway.http.get("/v1/models").status_code == 200
                assert mock_llm.url.endswith("/v1")
            """
        )
    )
    result = run_pytest(tmp_path)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "1 passed" in result.stdout


def test_make_helix_kernel_takes_timeouts_and_a_conftest_gives_them_to_helix_kernel(
    tmp_path: Path,
):
    """A plugin author's project: a hang fails within the timeout the test gave, every kernel
    made is closed after its test, and the docs' conftest reaches ``gateway`` too."""
    (tmp_path / "conftest.py").write_text(
        textwrap.dedent(
            """
            import pytest


            @pytest.fixture
            def helix_kernel(make_helix_kernel):
                return make_helix_kernel(timeouts={"start": 0.5, "health": 0.2})
            """
        )
    )
    (tmp_path / "test_author.py").write_text(
        textwrap.dedent(
            """
            import asyncio
            import time

            import helixlab as hx

            made = []


            class Hangs(hx.Plugin):
                name = "hangs"

                async def start(self, ctx):
                    await asyncio.Event().wait()


            def test_a_hang_fails_within_the_timeout_given(make_helix_kernel):
                kernel = make_helix_kernel(timeouts={"start": 0.2})
                assert kernel.timeouts == hx.Timeouts(start=0.2)
                kernel.register(Hangs)
                began = time.monotonic()
                assert "hangs" in kernel.load_all().failed
                assert time.monotonic() - began < 5
                made.append(kernel)


            def test_a_config_a_loop_and_a_timeouts_object(make_helix_kernel):
                kernel = make_helix_kernel(
                    {"plugins": {"rate-limiter": {}}},
                    timeouts=hx.Timeouts(init=3),
                    loop="asyncio",
                )
                assert kernel.timeouts == hx.Timeouts(init=3)
                assert kernel.loop_kind == "asyncio" and kernel.load_all().ok
                assert kernel.names == ["rate-limiter"]
                made.append(kernel)


            def test_every_kernel_made_was_closed_after_its_test():
                assert len(made) == 2 and not any(k.running for k in made)


            def test_the_conftests_timeouts_reach_helix_kernel_and_gateway(helix_kernel, gateway):
                assert gateway.kernel is helix_kernel
                assert helix_kernel.timeouts == hx.Timeouts(start=0.5, health=0.2)
            """
        )
    )
    result = run_pytest(tmp_path)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "4 passed" in result.stdout


def test_the_package_ships_py_typed():
    assert (Path(hx.__file__).parent / "py.typed").is_file()
    project = tomllib.loads((Path(__file__).parents[2] / "pyproject.toml").read_text())
    assert "py.typed" in project["tool"]["setuptools"]["package-data"]["helixlab"]
    assert project["project"]["entry-points"]["pytest11"] == {"helixlab": "helixlab.testing.plugin"}


@pytest.mark.parametrize("kind", [hx.MiddlewarePlugin, hx.ProviderPlugin, hx.ToolPlugin])
def test_kinds_take_their_config_model_as_a_type_parameter(kind: type):
    cls = types.new_class("P", (kind[StampConfig],), exec_body=lambda ns: ns.update(name="p"))
    assert cls.config_model is StampConfig
