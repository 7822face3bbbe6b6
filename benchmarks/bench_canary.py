"""The canary: 500s served when a middleware broken on every request is reloaded in.

Run ``python benchmarks/bench_canary.py``. Two client threads send chat completions over
loopback to a gateway (the built-in custom-provider on the embedded upstream, and a
header-stamping middleware). Its middleware is reloaded with a version that raises on
every request, left for one second (an operator noticing), then reloaded with a fixed
version. The same run twice: without ``verify`` (the peer: the broken version serves)
and with ``verify`` (the canary probes the new chain before the swap). Reported: the
requests sent, the 500s served, and traceback records logged (repeats are counted, not
printed again).
"""

from __future__ import annotations

import logging
import sys
import threading
import time
from pathlib import Path
from typing import Any

import httpx

if __package__ in (None, ""):
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import helixlab as hx

CLIENTS = 2
BROKEN_SECONDS = 1.0


def _stamp(value: str, broken: bool) -> type[hx.MiddlewarePlugin]:
    def factory(app: Any) -> Any:
        async def stamped(scope: Any, receive: Any, send: Any) -> None:
            if broken:
                raise RuntimeError("broken on every request")

            async def stamping(message: Any) -> None:
                if message["type"] == "http.response.start":
                    message.setdefault("headers", []).append((b"x-stamp", value.encode()))
                await send(message)

            await app(scope, receive, stamping)

        return stamped

    def get_middleware(self: Any) -> Any:
        return factory

    return type(
        f"Stamp_{value}",
        (hx.MiddlewarePlugin,),
        {"name": "stamp", "version": "1.0.0", "get_middleware": get_middleware},
    )


class _Count(logging.Handler):
    def __init__(self) -> None:
        super().__init__(logging.ERROR)
        self.tracebacks = 0

    def emit(self, record: logging.LogRecord) -> None:
        self.tracebacks += bool(record.exc_info)


def _measure(verify: bool) -> dict[str, Any]:
    counter = _Count()
    logger = logging.getLogger("helixlab.gateway")
    logger.addHandler(counter)
    logger.propagate = False
    stop = threading.Event()
    sent, errors = [0] * CLIENTS, [0] * CLIENTS
    with hx.Kernel() as kernel:
        kernel.register(_stamp("v1", False))
        kernel.apply_config("plugins:\n  custom-provider: {}\n  stamp: {}\n")
        kernel.load_all()
        server = kernel.serve(verify=verify)
        body = {"model": "mock-small", "messages": [{"role": "user", "content": "hi"}]}

        def client(i: int) -> None:
            with httpx.Client(base_url=server.url, timeout=20) as http:
                while not stop.is_set():
                    sent[i] += 1
                    errors[i] += http.post("/v1/chat/completions", json=body).status_code >= 500

        threads = [threading.Thread(target=client, args=(i,)) for i in range(CLIENTS)]
        for thread in threads:
            thread.start()
        refused = False
        try:
            kernel.reload(_stamp("v2", True))
        except hx.ReloadError:
            refused = True
        time.sleep(BROKEN_SECONDS)  # the broken version's time in service, when it got in
        kernel.reload(_stamp("v3", False))
        stop.set()
        for thread in threads:
            thread.join()
    logger.removeHandler(counter)
    logger.propagate = True
    return {
        "name": f"broken middleware reloaded, {'verify' if verify else 'no verify (peer)'}",
        "requests": sum(sent),
        "errors_500": sum(errors),
        "swap_refused": refused,
        "traceback_records": counter.tracebacks,
    }


def run() -> list[dict[str, Any]]:
    peer = _measure(verify=False)
    canary = _measure(verify=True)
    canary["target"] = "0 errors served"
    canary["met"] = canary["errors_500"] == 0
    return [peer, canary]


if __name__ == "__main__":
    for row in run():
        print(row)
