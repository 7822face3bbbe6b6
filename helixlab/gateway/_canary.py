"""The canary: a reload's new middleware chain answers its plugins' probes before it serves.

With ``verify`` (the gateway option, ``helixlab serve --verify``) or a plugin's own
``verify: true``, a reload that replaces a middleware or provider plugin sends that
plugin's ``probe()`` requests through the chain the kernel built aside for the new
generation, in process, between the build and the swap. A probe that raises, times out
or gets an answer its ``expect`` refuses (by default a 5xx) refuses the swap: the kernel
rolls the reload back, the old generation never stopped serving, and the report names
the plugin and the phase ``verify``. No client request ever reaches the new chain before
the probes passed.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Mapping, MutableMapping
from typing import Any

from ..errors import PluginError, describe
from ..kernel import MiddlewarePlugin, Probe, ProviderPlugin
from ._build import GatewayState
from ._chat import CONFIG_KEY
from ._config import GatewayConfig
from ._endpoints import KERNEL_KEY

__all__ = ["PROBE_HEADER", "make_verifier", "send_probe"]

PROBE_HEADER = "x-helixlab-probe"
CHAT = "/v1/chat/completions"
PROBE_TIMEOUT = 10.0


def make_verifier(kernel: Any, config: GatewayConfig) -> Any:
    """The verifier to register with ``kernel.add_verifier``: probes per the options."""

    async def verify(generation: Any, changed: Mapping[str, Any]) -> None:
        state: GatewayState | None = generation.extras.get("gateway")
        if state is None:
            return
        for name, entry in changed.items():
            plugin = generation.live[name].plugin
            if not isinstance(plugin, MiddlewarePlugin | ProviderPlugin):
                continue
            if not (config.verify or getattr(entry.spec, "verify", False)):
                continue
            try:
                probes = list(plugin.probe())
            except (Exception, SystemExit, KeyboardInterrupt) as exc:  # plugin code: refuse
                raise PluginError(name, "verify", cause=exc) from exc
            for probe in probes:
                await _check(kernel, config, state, name, probe)

    return verify


async def _check(
    kernel: Any, config: GatewayConfig, state: GatewayState, name: str, probe: Probe
) -> None:
    where = f"{probe.method} {probe.path}"
    try:
        status, body = await asyncio.wait_for(
            send_probe(state, probe, kernel=kernel, config=config), PROBE_TIMEOUT
        )
    except TimeoutError:
        raise PluginError(
            name,
            "verify",
            f"Canary of {name!r}: {where} through the new chain got no answer within "
            f"{PROBE_TIMEOUT:g}s; the swap was refused.",
        ) from None
    except (Exception, SystemExit, KeyboardInterrupt) as exc:  # a plugin's exit refuses
        raise PluginError(
            name,
            "verify",
            f"Canary of {name!r}: {where} through the new chain raised {describe(exc)} "
            f"The swap was refused.",
            cause=exc,
        ) from exc
    if not probe.expect(status):
        snippet = body[:200].decode("utf-8", "replace")
        raise PluginError(
            name,
            "verify",
            f"Canary of {name!r}: {where} through the new chain answered {status} "
            f"({snippet}); the swap was refused.",
        )


async def send_probe(
    state: GatewayState, probe: Probe, *, kernel: Any, config: GatewayConfig
) -> tuple[int, bytes]:
    """Send one probe to a generation's chain, in process; returns (status, body)."""
    method, path, payload = probe.method, probe.path, probe.json
    if payload is None and path == CHAT:
        models = state.router.models()
        if models:
            payload = {
                "model": models[0],
                "messages": [{"role": "user", "content": "canary"}],
                "max_tokens": 8,
            }
        else:  # nothing to complete with yet: the chain still has to answer a request
            method, path = "GET", "/v1/models"
    body = b"" if payload is None else json.dumps(payload).encode()
    headers = [(k.lower().encode(), v.encode()) for k, v in probe.headers.items()]
    headers += [(PROBE_HEADER.encode(), b"1"), (b"content-length", str(len(body)).encode())]
    if payload is not None:
        headers.append((b"content-type", b"application/json"))
    scope: dict[str, Any] = {
        "type": "http",
        "asgi": {"version": "3.0"},
        "http_version": "1.1",
        "method": method,
        "scheme": "http",
        "path": path,
        "raw_path": path.encode(),
        "query_string": b"",
        "root_path": "",
        "headers": headers,
        "client": ("127.0.0.1", 0),
        "server": ("127.0.0.1", 0),
        "state": {},
        KERNEL_KEY: kernel,
        CONFIG_KEY: config,
    }
    sent = False
    status = 0
    chunks: list[bytes] = []
    done = asyncio.Event()

    async def receive() -> dict[str, Any]:
        nonlocal sent
        if not sent:
            sent = True
            return {"type": "http.request", "body": body, "more_body": False}
        await done.wait()
        return {"type": "http.disconnect"}

    async def send(message: MutableMapping[str, Any]) -> None:
        nonlocal status
        if message["type"] == "http.response.start":
            status = message["status"]
        elif message["type"] == "http.response.body":
            chunks.append(message.get("body", b""))
            if not message.get("more_body", False):
                done.set()

    try:
        await state.app(scope, receive, send)
    finally:
        done.set()
    if status == 0:
        raise RuntimeError("the chain returned without sending a response")
    return status, b"".join(chunks)
