"""Tokens an attacker crafts, and a key server that stalls: custom-auth answers every malformed
JWT with a 401 in the OpenAI shape (never a 500, never a logged traceback), and
``jwks_timeout`` bounds the whole JWKS fetch, not each read."""

from __future__ import annotations

import json
import logging
import socket
import threading
import time
from collections.abc import Iterator

import jwt
import pytest
from cryptography.hazmat.primitives.asymmetric import rsa
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from test_plugins_auth import (
    AUDIENCE,
    SECRET,
    KeyServer,
    assert_refused,
    b64,
    call,
    claims,
    forged,
    load_auth,
)

from test_plugins_asgi import echo_app, serving

JSON = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=8),
    lambda inner: (
        st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=5), inner, max_size=3)
    ),
    max_leaves=6,
)
HEADER_KEYS = st.sampled_from(["alg", "kid", "crit", "typ", "jku", "x5u", "b64", "cty", "zip"])


@pytest.fixture(scope="module")
def rsa_key() -> rsa.RSAPrivateKey:
    return rsa.generate_private_key(public_exponent=65537, key_size=2048)


@pytest.fixture
def hmac_url(kernel) -> Iterator[str]:
    plugin = load_auth(kernel, secret=SECRET, audience=AUDIENCE)
    with serving(plugin.get_middleware()(echo_app())) as url:
        yield url


def _raw(header: object, payload: object) -> str:
    """A token whose header is any JSON at all, signed with the right secret where it can be."""
    signing = f"{b64(json.dumps(header).encode())}.{b64(json.dumps(payload).encode())}"
    return f"{signing}.{b64(b'x' * 32)}"


@pytest.mark.parametrize(
    "header",
    [
        {"alg": "HS256", "kid": 5},
        {"alg": "HS256", "kid": ["k1"]},
        {"alg": "HS256", "kid": {"a": 1}},
        {"alg": "HS256", "crit": "exp"},
        {"alg": "HS256", "crit": [1]},
        {"alg": "HS256", "crit": []},
        {"alg": ["HS256"]},
        {"alg": None},
        {"alg": {"x": 1}},
    ],
)
def test_malformed_headers_are_401_without_a_traceback(hmac_url, header, caplog) -> None:
    caplog.set_level(logging.DEBUG)
    token = forged(header, claims(), SECRET.encode())
    error = assert_refused(call(hmac_url, token))
    assert error["code"] == "invalid_token"
    assert not [r for r in caplog.records if r.exc_info], "a traceback was logged"


def test_a_jwks_keyed_gateway_refuses_non_string_kids(kernel, rsa_key) -> None:
    keys = KeyServer()
    keys.add(rsa_key, "k1")
    with serving(keys.app) as url:
        plugin = load_auth(kernel, public_key_url=url + "/jwks.json", audience=AUDIENCE)
        with serving(plugin.get_middleware()(echo_app())) as app_url:
            for kid in (5, ["k1"], {"k": 1}, 1.5, True):
                token = jwt.encode(claims(), rsa_key, algorithm="RS256")
                _, payload, sig = token.split(".")
                header = {"alg": "RS256", "kid": kid}
                bad = f"{b64(json.dumps(header).encode())}.{payload}.{sig}"
                assert_refused(call(app_url, bad))


@settings(max_examples=60, deadline=None, suppress_health_check=list(HealthCheck))
@given(
    header=st.dictionaries(HEADER_KEYS, JSON, max_size=4) | JSON,
    payload=st.dictionaries(st.sampled_from(["sub", "exp", "aud", "iss", "nbf"]), JSON) | JSON,
)
def test_fuzzed_headers_are_always_a_401(hmac_url, header, payload) -> None:
    response = call(hmac_url, _raw(header, payload))
    assert_refused(response)


# -- a key server that trickles ---------------------------------------------------------------


class TricklingServer:
    """A loopback HTTP server that promises a JWKS and sends one byte every ``interval``."""

    def __init__(self, interval: float = 0.25, length: int = 80) -> None:
        self.interval, self.length = interval, length
        self.sock = socket.create_server(("127.0.0.1", 0))
        self.url = f"http://127.0.0.1:{self.sock.getsockname()[1]}/jwks.json"
        self.stop = threading.Event()
        self.connections = 0
        self.thread = threading.Thread(target=self._serve, daemon=True)
        self.thread.start()

    def _serve(self) -> None:
        self.sock.settimeout(0.1)
        while not self.stop.is_set():
            try:
                conn, _ = self.sock.accept()
            except TimeoutError:
                continue
            except OSError:
                return
            self.connections += 1
            threading.Thread(target=self._trickle, args=(conn,), daemon=True).start()

    def _trickle(self, conn: socket.socket) -> None:
        with conn:
            try:
                conn.recv(65536)
                head = (
                    "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\n"
                    f"Content-Length: {self.length}\r\n\r\n"
                )
                conn.sendall(head.encode())
                for _ in range(self.length):
                    if self.stop.wait(self.interval):
                        return
                    conn.sendall(b" ")
            except OSError:
                return

    def close(self) -> None:
        self.stop.set()
        self.sock.close()
        self.thread.join(5)


def test_jwks_timeout_bounds_the_whole_fetch_not_each_read(kernel, rsa_key) -> None:
    server = TricklingServer(interval=0.25, length=80)  # 20 s of bytes, each within 1 s
    try:
        started = time.monotonic()
        plugin = load_auth(
            kernel,
            public_key_url=server.url,
            audience=AUDIENCE,
            jwks_timeout="1s",
            jwks_refetch_interval="0s",
        )
        assert time.monotonic() - started < 4, "the start's fetch was not bounded"
        assert "within 1s" in plugin.jwks.last_error
        assert not kernel.health()["custom-auth"].healthy
        with serving(plugin.get_middleware()(echo_app())) as app_url:
            token = jwt.encode(claims(), rsa_key, algorithm="RS256", headers={"kid": "k1"})
            started = time.monotonic()
            assert_refused(call(app_url, token))  # it refetched (unknown kid), bounded again
            assert time.monotonic() - started < 3
        assert server.connections >= 2
    finally:
        server.close()
