"""Security properties a user relies on, beyond the per-plugin tests.

- custom-auth: what ``test_plugins_auth.py`` leaves out — a signature off by its last byte,
  ``alg`` spelt ``None``/``NONE`` or missing, an HMAC algorithm other than the configured one,
  no roles claim at all; and the signature check goes through ``hmac.compare_digest``.
- rate-limiter, through the real gateway: every forwarded-address header ignored unless
  trusted, the limit held exactly while the plugin is reloaded and reconfigured under
  concurrent load, memory bounded under many distinct clients.
- Secrets never show: reprs, info rows, events, logs, the dashboard, ``/v1/plugins`` and
  ``/health``.
- The gateway and the embedded upstream bind to loopback unless told otherwise; the file
  watcher imports code only from the directory it was given.
"""

from __future__ import annotations

import hmac
import logging
import os
import socket
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import jwt
import pytest
from test_plugins_auth import AUDIENCE, ISSUER, SECRET, assert_refused, b64, call, claims, forged
from test_plugins_auth import load_auth as _load_auth
from test_plugins_ratelimit import Clock

import helixlab as hx

from _gateway_support import provider_plugin
from test_plugins_asgi import echo_app, serving

# -- custom-auth ------------------------------------------------------------------------------


@pytest.fixture
def auth_url(kernel) -> Iterator[str]:
    plugin = _load_auth(
        kernel, secret=SECRET, issuer=ISSUER, audience=AUDIENCE, allowed_roles=["developer"]
    )
    with serving(plugin.get_middleware()(echo_app())) as url:
        yield url


def last_byte_flipped(token: str) -> str:
    head, payload, sig = token.split(".")
    raw = bytearray(jwt.utils.base64url_decode(sig))
    raw[-1] ^= 0x01
    return f"{head}.{payload}.{b64(bytes(raw))}"


def test_a_signature_wrong_only_in_its_last_byte_is_refused_via_compare_digest(
    auth_url, monkeypatch
):
    compared = []
    real = hmac.compare_digest

    def spy(a, b):
        compared.append((len(a), len(b)))
        return real(a, b)

    monkeypatch.setattr(hmac, "compare_digest", spy)
    token = jwt.encode(claims(), SECRET, algorithm="HS256")
    assert call(auth_url, token).status_code == 200
    error = assert_refused(call(auth_url, last_byte_flipped(token)))
    assert "signature" in error["message"]
    # both checks compared whole 32-byte MACs in constant time, not with ==
    assert compared == [(32, 32), (32, 32)]


@pytest.mark.parametrize(
    "header",
    [{"alg": "None"}, {"alg": "NONE"}, {"alg": "nOnE", "typ": "JWT"}, {"typ": "JWT"}],
    ids=["None", "NONE", "nOnE", "no-alg"],
)
def test_unsigned_tokens_in_any_spelling_are_refused(auth_url, header):
    assert_refused(call(auth_url, forged(header, claims(), None)))
    # nor with a (valid HMAC) signature attached under a bogus alg
    assert_refused(call(auth_url, forged(header, claims(), SECRET.encode())))


@pytest.mark.filterwarnings("ignore:The HMAC key")  # the attacker's key length is not ours
def test_only_the_configured_hmac_algorithm_is_accepted(auth_url):
    token = jwt.encode(claims(), SECRET, algorithm="HS384")
    error = assert_refused(call(auth_url, token))
    assert "HS384" in error["message"]


def test_a_token_without_any_roles_claim_is_403(auth_url):
    error = assert_refused(call(auth_url, jwt.encode(claims(roles=None), SECRET)), 403)
    assert error["code"] == "insufficient_role"


def test_an_error_never_echoes_the_token(auth_url):
    token = jwt.encode(claims(exp=1), SECRET, algorithm="HS256")
    response = call(auth_url, token)
    assert response.status_code == 401 and token not in response.text
    assert token.split(".")[2] not in response.text


# -- rate-limiter through the gateway ---------------------------------------------------------


def limited_gateway(kernel: hx.Kernel, clock: Clock, **config: Any) -> Any:
    settings = {"requests_per_minute": 60, "burst_size": 5, **config}
    kernel.register(provider_plugin())
    kernel.apply_config({"plugins": {"rate-limiter": {"config": settings}}})
    assert kernel.load_all().ok
    kernel.get("rate-limiter").store.clock = clock  # frozen: no refill during the test
    return kernel.serve()


SPOOFS = [
    {"X-Forwarded-For": "10.0.0.{i}"},
    {"X-Real-IP": "10.0.0.{i}"},
    {"Forwarded": "for=10.0.0.{i}"},
    {"X-Client-IP": "10.0.0.{i}", "True-Client-IP": "10.0.0.{i}"},
]


@pytest.mark.parametrize("headers", SPOOFS, ids=lambda h: "+".join(h))
def test_forwarded_address_headers_are_ignored_unless_trusted(kernel, headers):
    server = limited_gateway(kernel, Clock(), burst_size=2)
    statuses = [
        httpx.get(
            server.url + "/v1/models", headers={k: v.format(i=i) for k, v in headers.items()}
        ).status_code
        for i in range(4)
    ]
    assert statuses == [200, 200, 429, 429]  # one bucket: the peer's, whatever it claims
    assert list(kernel.get("rate-limiter").store._buckets) == ["ip:127.0.0.1"]


def test_the_limit_holds_exactly_while_reloaded_and_reconfigured_under_load(kernel):
    clock = Clock()
    server = limited_gateway(kernel, clock, burst_size=40)
    results: list[int] = []
    lock = threading.Lock()
    go = threading.Event()

    def client() -> None:
        go.wait()
        with httpx.Client(base_url=server.url) as http:
            mine = [http.get("/v1/models").status_code for _ in range(15)]
        with lock:
            results.extend(mine)

    threads = [threading.Thread(target=client) for _ in range(6)]
    for t in threads:
        t.start()
    go.set()
    for round_ in range(3):  # while the 90 requests run
        kernel.reload("rate-limiter")
        kernel.configure("rate-limiter", {"max_clients": 1000 + round_})  # same bucket shape
    for t in threads:
        t.join(30)
    assert len(results) == 90
    assert results.count(200) == 40 and results.count(429) == 50  # never reset, never doubled
    assert kernel.reload_count("rate-limiter") == 6
    assert kernel.get("rate-limiter").store.tokens("ip:127.0.0.1") == 0


def test_many_distinct_clients_keep_memory_bounded(kernel):
    clock = Clock()
    server = limited_gateway(kernel, clock, max_clients=20, burst_size=2, trust_forwarded=True)
    with httpx.Client(base_url=server.url) as http:
        for i in range(60):  # each address is a client of its own
            forwarded = {"X-Forwarded-For": f"10.0.{i // 250}.{i % 250}"}
            assert http.get("/v1/models", headers=forwarded).is_success
        store = kernel.get("rate-limiter").store
        assert len(store) == 20  # the least recently used were evicted
        kernel.reload("rate-limiter")
        new = kernel.get("rate-limiter").store
        assert new._buckets is store._buckets and len(new) == 20  # a view on the same buckets
        clock.advance(3600)  # everyone idle and full again
        assert http.get("/v1/models", headers={"X-Forwarded-For": "10.9.9.9"}).is_success
    assert len(store) == 1  # the newcomer's arrival swept the idle ones


# -- secrets ----------------------------------------------------------------------------------

SECRETS = {
    "api_key": "sk-SECRETAPIKEY-4a5b",
    "password": "pw-SECRETPASSWORD-77",
    "token": "tok-SECRETTOKEN-99",
    "client_secret": "cs-SECRETCLIENT-11",
}


class Vault(hx.Plugin):
    """A plugin with secret settings that logs, starts and reports health."""

    name = "vault"
    version = "1.0.0"
    config_model = dict

    def init(self, ctx, config):
        self.config = config
        ctx.logger.info("vault configured with %s", hx.redact(config))

    def health_check(self, ctx):
        return None


def everything_shown(kernel: hx.Kernel, server: Any, token: str) -> dict[str, str]:
    """Every surface where a user could read plugin settings."""
    from helixlab.widgets import Dashboard

    dashboard = Dashboard(kernel, graph=False)
    try:
        widget_values = []
        stack = [dashboard]
        while stack:
            widget = stack.pop()
            widget_values.append(str(getattr(widget, "value", "")))
            widget_values.append(str(getattr(widget, "description", "")))
            stack.extend(getattr(widget, "children", ()))
        surfaces = {
            "dashboard": "\n".join(widget_values) + repr(dashboard),
            "kernel repr": repr(kernel) + str(kernel.info()) + repr(kernel.info()),
            "specs": "\n".join(repr(kernel.entry(n).spec) for n in kernel.names),
            "events": "\n".join(map(repr, kernel.events())) + str(kernel.events()),
            "health": str(kernel.health()),
            "/v1/plugins": httpx.get(
                server.url + "/v1/plugins", headers={"Authorization": f"Bearer {token}"}
            ).text,
            "/health": httpx.get(server.url + "/health").text,
        }
    finally:
        dashboard.close()
    return surfaces


def test_secrets_never_appear_on_any_surface(kernel, caplog):
    caplog.set_level(logging.DEBUG)
    kernel.register(Vault)
    kernel.register(provider_plugin())
    kernel.apply_config(
        {
            "plugins": {
                "vault": {"config": dict(SECRETS)},
                "custom-auth": {"config": {"secret": SECRET, "audience": AUDIENCE}},
                "custom-logger": {"config": {"output": "memory", "log_level": "debug"}},
            }
        }
    )
    assert kernel.load_all().ok
    server = kernel.serve()
    token = jwt.encode(claims(), SECRET, algorithm="HS256")
    chat = httpx.post(
        server.url + "/v1/chat/completions",
        headers={"Authorization": f"Bearer {token}"},
        json={"model": "fake-small", "messages": [{"role": "user", "content": "hi"}]},
    )
    assert chat.status_code == 200, chat.text
    kernel.configure("vault", {"password": "pw-SECRETPASSWORD-78"})  # a reload, with events
    kernel.reload("custom-auth")
    surfaces = everything_shown(kernel, server, token)
    surfaces["logs"] = "\n".join(r.getMessage() for r in caplog.records)
    surfaces["custom-logger"] = "\n".join(map(str, kernel.get("custom-logger")._lines))
    secrets = [*SECRETS.values(), "pw-SECRETPASSWORD-78", SECRET]
    leaks = {name: s for name, text in surfaces.items() for s in secrets if s in text}
    assert leaks == {}
    assert "***" in surfaces["/v1/plugins"] and "***" in surfaces["specs"]


def test_a_secret_quoted_in_a_plugin_error_is_redacted_in_events_and_info(kernel):
    class Leaky(hx.Plugin):
        name = "leaky"
        config_model = dict

        def start(self, ctx):
            raise ConnectionError(f"login refused for password {ctx.config['password']}")

    kernel.register(Leaky)
    kernel.configure("leaky", {"password": "pw-SECRETPASSWORD-77"})
    report = kernel.load_all()
    shown = "\n".join(
        [str(report), *map(str, kernel.events()), *map(str, kernel.info()), str(kernel.health())]
    )
    assert "pw-SECRETPASSWORD-77" not in shown


# -- loopback and the watched directory -------------------------------------------------------


def test_the_gateway_binds_to_loopback_by_default(kernel):
    kernel.register(provider_plugin())
    kernel.load_all()
    server = kernel.serve()
    assert server.host == "127.0.0.1" and server._sock.getsockname()[0] == "127.0.0.1"
    from helixlab.gateway import gateway_config
    from helixlab.kernel._config import parse_config

    assert gateway_config(parse_config("plugins: {}\n")).host == "127.0.0.1"  # CLI default
    for address in _other_addresses():
        with pytest.raises(OSError):
            socket.create_connection((address, server.port), timeout=2).close()


def test_the_embedded_upstream_binds_to_loopback():
    from helixlab import mockllm
    from helixlab.plugins._provider import embedded_upstream

    upstream = embedded_upstream()
    assert upstream.host == "127.0.0.1" and upstream.url.startswith("http://127.0.0.1:")
    with mockllm.start() as server:
        assert server.host == "127.0.0.1"
        for address in _other_addresses():
            with pytest.raises(OSError):
                socket.create_connection((address, server.port), timeout=2).close()


def _other_addresses() -> list[str]:
    """This machine's non-loopback IPv4 addresses (none, on some sandboxes)."""
    try:
        infos = socket.getaddrinfo(socket.gethostname(), None, socket.AF_INET)
    except OSError:
        return []
    return sorted({i[4][0] for i in infos if not i[4][0].startswith("127.")})


MARKER = "HELIXLAB_OUTSIDE_IMPORTED"
EVIL = f"import os\nos.environ[{MARKER!r}] = '1'\nimport helixlab as hx\n\n" + (
    "class Evil(hx.Plugin):\n    name = 'evil'\n"
)


@pytest.fixture
def watched(kernel, tmp_path: Path) -> Iterator[tuple[Path, Path, Any]]:
    inside, outside = tmp_path / "plugins", tmp_path / "outside"
    inside.mkdir()
    outside.mkdir()
    (outside / "evil.py").write_text(EVIL)
    (outside / "pkg").mkdir()
    (outside / "pkg" / "plugin.py").write_text(EVIL)
    os.environ.pop(MARKER, None)
    watcher = kernel.watch_files(inside, debounce=400, step=20)
    yield inside, outside, watcher
    watcher.stop()
    os.environ.pop(MARKER, None)


def test_the_watcher_ignores_changes_outside_its_directory(kernel, watched):
    _, outside, watcher = watched
    kernel.run(watcher.handle({outside / "evil.py"}))
    assert MARKER not in os.environ and "evil" not in kernel


@pytest.mark.parametrize("target", ["evil.py", "pkg"])
def test_the_watcher_does_not_import_through_a_symlink_pointing_outside(kernel, watched, target):
    inside, outside, watcher = watched
    before = watcher.batches
    (inside / target).symlink_to(outside / target)
    if target.endswith(".py"):  # a new .py entry is a change the watcher handles itself
        assert watcher.wait_for_batch(before, timeout=10)
    kernel.run(watcher.handle({inside / target, inside / target / "plugin.py"}))
    assert MARKER not in os.environ and "evil" not in kernel
    assert [e for e in kernel.events() if e.kind == "file_error"] == []
