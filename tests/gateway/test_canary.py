"""The canary (issue 12): with ``verify``, a reload of a middleware or provider is probed
through its new chain, aside, and refused when the probes fail; no request sees it. Also:
identical tracebacks logged once with a count. Uses the toolkit's ``gateway`` fixture."""

from __future__ import annotations

import logging
from typing import Any

import pytest

import helixlab as hx
from helixlab.testing import ServedGateway

from _gateway_support import provider_plugin
from _serving import Traffic


def stamp(value: str, *, broken: bool = False, probes: list | None = None, verify=None):
    """A middleware plugin class stamping ``x-stamp: value``; ``broken`` raises per request."""

    def factory(app: Any) -> Any:
        async def stamped(scope: dict, receive: Any, send: Any) -> None:
            if broken and scope["path"] != "/health":
                raise RuntimeError("broken on every request")

            async def stamping(message: dict) -> None:
                if message["type"] == "http.response.start":
                    message.setdefault("headers", []).append((b"x-stamp", value.encode()))
                await send(message)

            await app(scope, receive, stamping)

        return stamped

    attrs: dict[str, Any] = {
        "name": "stamp",
        "version": "1.0.0",
        "get_middleware": lambda self: factory,
    }
    if probes is not None:
        attrs["probe"] = lambda self: probes
    return type(f"Stamp_{value}", (hx.MiddlewarePlugin,), attrs)


@pytest.fixture
def verified(helix_kernel: hx.Kernel) -> Any:
    with ServedGateway(helix_kernel, verify=True) as served:
        served.add(provider_plugin(), stamp("v1"))
        yield served


def test_verify_refuses_a_middleware_broken_on_every_request_under_traffic(verified):
    with Traffic(verified.url, model="fake-small") as traffic:
        with pytest.raises(hx.ReloadError) as info:
            verified.kernel.reload(stamp("v2", broken=True))
        verified.kernel.reload(stamp("v3"))
        verified.http.get("/health")
    assert (info.value.plugin, info.value.phase) == ("stamp", "verify")
    assert info.value.report.rolled_back and "broken on every request" in info.value.report.error
    assert traffic.failures == []
    assert set(traffic.stamps) <= {"v1", "v3"} and "v2" not in traffic.stamps
    assert verified.http.post("/v1/chat/completions", json=chat()).headers["x-stamp"] == "v3"


def chat() -> dict:
    return {"model": "fake-small", "messages": [{"role": "user", "content": "hi"}]}


def test_verify_true_per_plugin_in_the_yaml(gateway: ServedGateway):
    gateway.kernel.register(provider_plugin())
    gateway.kernel.register(stamp("v1"))
    gateway.apply("plugins:\n  stamp:\n    verify: true\n  fake-provider: {}\n")
    with pytest.raises(hx.ReloadError, match="verify"):
        gateway.kernel.reload(stamp("v2", broken=True))
    assert gateway.chat("hi", model="fake-small").headers["x-stamp"] == "v1"


def test_without_verify_the_reload_is_not_probed(gateway: ServedGateway):
    gateway.add(provider_plugin(), stamp("v1"))
    gateway.kernel.reload(stamp("v2", broken=True))  # nothing asked for a canary
    assert gateway.chat("hi", model="fake-small").status_code == 500


def test_a_plugins_own_probes_decide(verified):
    must_refuse = hx.Probe(
        method="GET", path="/v1/models", headers={"x-test": "1"}, expect=lambda s: s == 401
    )
    with pytest.raises(hx.ReloadError) as info:
        verified.kernel.reload(stamp("v2", probes=[must_refuse]))
    assert "GET /v1/models through the new chain answered 200" in str(info.value)
    verified.kernel.reload(stamp("v3", probes=[]))  # no probes: nothing to refuse
    assert verified.chat("hi", model="fake-small").headers["x-stamp"] == "v3"


@pytest.mark.parametrize("fault", [SystemExit(3), KeyboardInterrupt()])
def test_a_probe_that_exits_refuses_the_swap_and_the_server_keeps_serving(verified, fault):
    def probe(self: Any) -> list:
        raise fault

    broken = type("Exiting", (stamp("v2"),), {"probe": probe})
    with pytest.raises(hx.ReloadError) as info:
        verified.kernel.reload(broken)
    assert info.value.phase == "verify"
    assert verified.chat("hi", model="fake-small").headers["x-stamp"] == "v1"


def test_a_provider_whose_new_version_fails_is_refused(verified):
    options = {"fail": RuntimeError("upstream gone")}
    with pytest.raises(hx.ReloadError) as info:
        verified.kernel.reload(provider_plugin(options=options))
    assert (info.value.plugin, info.value.phase) == ("fake-provider", "verify")
    assert verified.chat("hi", model="fake-small").status_code == 200


def test_identical_tracebacks_are_logged_once_with_a_count(gateway, caplog):
    gateway.add(provider_plugin(), stamp("v1", broken=True))
    with caplog.at_level(logging.ERROR, logger="helixlab.gateway"):
        for _ in range(100):
            assert gateway.chat("hi", model="fake-small").status_code == 500
    tracebacks = [r for r in caplog.records if r.exc_info]
    counts = [r.getMessage() for r in caplog.records if not r.exc_info]
    assert len(tracebacks) == 1
    assert counts == [
        "Unexpected error serving POST /v1/chat/completions: the same RuntimeError again, "
        f"{n} times so far (its traceback was logged once)"
        for n in (10, 100)
    ]
    with caplog.at_level(logging.ERROR, logger="helixlab.gateway"):
        for _ in range(5):
            gateway.chat("hi", model="fake-small")
        gateway.server.stop()  # the total since the last count is logged once, at stop
    assert caplog.records[-1].getMessage() == (
        "Unexpected error serving POST /v1/chat/completions: the same RuntimeError "
        "105 times in all (its traceback was logged once)"
    )
