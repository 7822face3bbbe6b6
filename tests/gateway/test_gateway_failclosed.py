"""Issue 20, the gateway: authentication fails closed, health is outside every plugin.

A plugin that guards requests (custom-auth, or any plugin the YAML marks ``required:
true``) that is not serving — failed at load or start, hung past its timeout, not started
yet, stopped — makes every route behind the chain answer 503 in the OpenAI shape naming
the plugin and the phase; never 200. ``/livez``, ``/readyz`` and ``/health`` are answered
outside the chain: no rate limit or authentication applies to them. Every test runs a real
gateway (uvicorn on loopback)."""

from __future__ import annotations

import json
import socket
import threading
from collections.abc import Iterator

import httpx
import jwt
import pytest
from cryptography.hazmat.primitives.asymmetric import rsa
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from test_plugins_auth import AUDIENCE, SECRET, KeyServer, claims

import helixlab as hx
from helixlab.plugins._auth import JWKSCache

from _gateway_support import provider_plugin
from test_plugins_asgi import serving

TIMEOUTS = hx.Timeouts(init=2, start=1, stop=2, health=1, export_state=2, import_state=2, drain=2)
ROUTES = (("GET", "/v1/models"), ("GET", "/v1/plugins"), ("POST", "/v1/chat/completions"))
CHAT = {"model": "fake-small", "messages": [{"role": "user", "content": "hi"}]}


@pytest.fixture
def kernel(make_kernel) -> hx.Kernel:
    return make_kernel(timeouts=TIMEOUTS)


def request(url: str, method: str, path: str, token: str | None = None) -> httpx.Response:
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    body = CHAT if method == "POST" else None
    return httpx.request(method, url + path, json=body, headers=headers, timeout=10)


def assert_guarded_503(response: httpx.Response, plugin: str, phase: str) -> None:
    assert response.status_code == 503, response.text
    error = response.json()["error"]
    assert set(error) == {"message", "type", "param", "code"}
    assert error["code"] == "guard_unavailable" and error["type"] == "server_error"
    assert repr(plugin) in error["message"] and f"phase {phase}" in error["message"]
    assert response.headers["retry-after"]


def auth_config(**config) -> dict:
    return {"plugins": {"custom-auth": {"config": {"audience": AUDIENCE, **config}}}}


@pytest.fixture(scope="module")
def rsa_key():
    return rsa.generate_private_key(public_exponent=65537, key_size=2048)


@pytest.fixture
def silent_key_server() -> Iterator[str]:
    """A JWKS URL whose server accepts connections and never answers."""
    sock = socket.create_server(("127.0.0.1", 0))
    sock.listen(16)
    try:
        yield f"http://127.0.0.1:{sock.getsockname()[1]}/jwks.json"
    finally:
        sock.close()


# -- 1. a guard that is not serving: 503, never 200 ------------------------------------------


def test_a_silent_key_server_fails_start_and_every_route_answers_503(kernel, silent_key_server):
    """jwks_timeout above the start timeout: custom-auth fails in start (it hung)."""
    kernel.register(provider_plugin())
    kernel.apply_config(auth_config(public_key_url=silent_key_server, jwks_timeout="30s"))
    report = kernel.load_all()
    assert report.failed["custom-auth"].phase == "start"
    assert kernel.state("custom-auth") == hx.PluginState.FAILED
    with kernel.serve() as server:
        for method, path in ROUTES:
            assert_guarded_503(request(server.url, method, path), "custom-auth", "start")
            assert_guarded_503(request(server.url, method, path, "x.y.z"), "custom-auth", "start")
        health = httpx.get(server.url + "/health")
        assert health.status_code == 503
        assert health.json()["guards"] == [
            {"plugin": "custom-auth", "phase": "start", "reason": "it failed in start"}
        ]
        ready = httpx.get(server.url + "/readyz")
        assert ready.status_code == 503 and "custom-auth" in ready.json()["reason"]
        assert httpx.get(server.url + "/livez").status_code == 200


def test_a_jwks_key_with_a_non_string_kid_is_a_clear_error_not_a_crash(kernel, rsa_key):
    keys = KeyServer()
    keys.add(rsa_key, "k1")
    keys.keys[0]["kid"] = ["k1"]  # valid configuration, malformed document
    kernel.register(provider_plugin())
    with serving(keys.app) as url:
        kernel.apply_config(auth_config(public_key_url=url + "/jwks.json"))
        assert kernel.load_all().ok  # start no longer dies of a TypeError
        auth = kernel.get("custom-auth")
        assert "key 0: 'kid' must be a string, not list" in auth.jwks.last_error
        health = kernel.health()["custom-auth"]
        assert not health.healthy and "'kid' must be a string" in health.detail
        with kernel.serve() as server:
            token = jwt.encode(claims(), rsa_key, algorithm="RS256", headers={"kid": "k1"})
            for method, path in ROUTES:
                assert request(server.url, method, path).status_code == 401
                assert request(server.url, method, path, token).status_code == 401
            # the key server mends its document: the next refetch accepts the token
            keys.keys[0]["kid"] = "k1"
            auth.jwks.refetch_interval = 0
            assert request(server.url, "GET", "/v1/models", token).status_code == 200


def test_a_guard_not_started_yet_or_stopped_answers_503_and_serves_once_it_runs(kernel):
    kernel.register(provider_plugin())
    kernel.apply_config(auth_config(secret=SECRET))
    assert kernel.load("fake-provider").ok  # custom-auth registered, not started
    token = jwt.encode(claims(), SECRET, algorithm="HS256")
    with kernel.serve() as server:
        for method, path in ROUTES:
            assert_guarded_503(request(server.url, method, path, token), "custom-auth", "load")
        assert kernel.load("custom-auth").ok
        assert request(server.url, "GET", "/v1/models").status_code == 401
        assert request(server.url, "GET", "/v1/models", token).status_code == 200
        kernel.unload("custom-auth")
        assert_guarded_503(request(server.url, "GET", "/v1/models", token), "custom-auth", "stop")
        assert httpx.get(server.url + "/readyz").status_code == 503


class Stamp(hx.MiddlewarePlugin):
    """A middleware that lets everything through: guarding only if the YAML says so."""

    name = "stamp"

    def get_middleware(self):
        return lambda app: app


def test_the_yaml_marks_any_plugin_required_and_cannot_unmark_custom_auth(kernel):
    kernel.register(provider_plugin())
    kernel.register(Stamp)
    kernel.apply_config({"plugins": {"stamp": {"required": True}}})
    assert kernel.guards() == ("stamp",)
    assert kernel.load("fake-provider").ok
    with kernel.serve() as server:
        assert_guarded_503(request(server.url, "GET", "/v1/models"), "stamp", "load")
        assert kernel.load("stamp").ok
        assert request(server.url, "GET", "/v1/models").status_code == 200
    with pytest.raises(hx.ConfigError) as info:
        kernel.apply_config("plugins:\n  custom-auth:\n    required: false\n")
    assert "<config>:2: custom-auth: required:" in str(info.value)
    assert "cannot make it optional" in str(info.value)
    with pytest.raises(hx.ConfigError, match="'required' must be true or false"):
        kernel.apply_config("plugins:\n  stamp:\n    required: maybe\n")


# -- every malformed JWKS document is a clear error -------------------------------------------

json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=8),
    lambda inner: (
        st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=6), inner, max_size=4)
    ),
    max_leaves=12,
)
jwk_like = st.dictionaries(
    st.sampled_from(["kty", "kid", "alg", "use", "n", "e", "crv", "x", "y", "k"]),
    json_values | st.sampled_from(["RSA", "EC", "oct", "OKP", "RS256", "sig", "AQAB", "P-256"]),
    max_size=8,
)
documents = json_values | st.fixed_dictionaries(
    {"keys": st.lists(jwk_like | json_values, max_size=5)}
)


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(document=documents)
def test_every_jwks_document_is_keys_or_a_clear_value_error(document):
    cache = JWKSCache("https://k.test/jwks", algorithms=None, ttl=1, refetch_interval=1, timeout=1)
    try:
        keys = cache._parse(json.loads(json.dumps(document)))
    except ValueError as exc:
        assert str(exc).startswith("the JWKS document ")
        return
    assert keys and all(kid is None or isinstance(kid, str) for kid in keys)


# -- 2. health is outside every plugin ---------------------------------------------------------


def test_health_probes_are_never_rate_limited_nor_authenticated(kernel):
    kernel.register(provider_plugin())
    kernel.apply_config(
        {
            "plugins": {
                "rate-limiter": {"config": {"requests_per_minute": 1, "burst_size": 1}},
                "custom-auth": {"config": {"secret": SECRET, "skip_paths": []}},
            }
        }
    )
    assert kernel.load_all().ok
    with kernel.serve() as server:
        statuses = [request(server.url, "GET", "/v1/models").status_code for _ in range(3)]
        assert statuses == [401, 401, 401]  # custom-auth refuses before the limiter counts
        token = jwt.encode(claims(aud=None), SECRET, algorithm="HS256")
        limited = [request(server.url, "GET", "/v1/models", token).status_code for _ in range(3)]
        assert limited[0] == 200 and limited[1:] == [429, 429]
        for _ in range(20):  # the bucket is empty, no token is sent: probes still answer
            for path, body in (("/livez", "alive"), ("/readyz", "ready"), ("/health", "ok")):
                response = httpx.get(server.url + path)
                assert response.status_code == 200, (path, response.text)
                assert response.json()["status"] == body
                assert "x-ratelimit-remaining-requests" not in response.headers
                assert "www-authenticate" not in response.headers


def test_readiness_needs_a_provider_and_liveness_needs_nothing(kernel):
    with kernel.serve() as server:
        ready = httpx.get(server.url + "/readyz")
        assert ready.status_code == 503
        assert ready.json()["reason"] == "no provider plugin is running"
        assert httpx.get(server.url + "/livez").json() == {"status": "alive"}
        assert httpx.post(server.url + "/livez").status_code == 405
        kernel.register(provider_plugin())
        kernel.load_all()
        assert httpx.get(server.url + "/readyz").json() == {"status": "ready"}


# -- 3. behind a reverse proxy: the real client, from trusted proxies only ---------------------


def limited_gateway(kernel, **options):
    kernel.register(provider_plugin())
    kernel.apply_config(
        {"plugins": {"rate-limiter": {"config": {"requests_per_minute": 1, "burst_size": 1}}}}
    )
    assert kernel.load_all().ok
    return kernel.serve(**options)


def models(url: str, **headers: str) -> int:
    return httpx.get(url + "/v1/models", headers=headers).status_code


def test_without_trusted_proxies_forwarded_headers_are_ignored(kernel):
    with limited_gateway(kernel) as server:
        assert models(server.url, **{"x-forwarded-for": "203.0.113.1"}) == 200
        # a client cannot buy a new bucket by writing a header: one address, one bucket
        assert models(server.url, **{"x-forwarded-for": "203.0.113.2"}) == 429
        assert models(server.url, forwarded="for=203.0.113.3") == 429


def test_behind_a_trusted_proxy_each_client_has_its_own_bucket(kernel):
    with limited_gateway(kernel, forwarded_allow_ips=["127.0.0.1"]) as server:
        for client in ("203.0.113.1", "203.0.113.2", "2001:db8::7"):
            assert models(server.url, **{"x-forwarded-for": client}) == 200
            assert models(server.url, **{"x-forwarded-for": client}) == 429
        # what the client wrote left of the proxy's entry is never the key
        assert models(server.url, **{"x-forwarded-for": "198.51.100.9, 203.0.113.1"}) == 429
        # Forwarded is not the header this proxy writes: ignored, the peer is the client
        assert models(server.url, forwarded="for=198.51.100.10") == 200
        assert models(server.url, forwarded="for=198.51.100.11") == 429


def test_the_forwarded_header_and_a_chain_of_trusted_proxies(kernel):
    options = {"forwarded_allow_ips": "127.0.0.1, 10.0.0.0/8", "forwarded_header": "forwarded"}
    with limited_gateway(kernel, **options) as server:
        chain = 'for="[2001:db8::1]:4711";proto=https, for=10.1.2.3'  # client, inner proxy
        assert models(server.url, forwarded=chain) == 200
        assert models(server.url, forwarded="for=2001:db8::1") == 429  # the same client
        assert models(server.url, forwarded="for=192.0.2.5:8080, for=10.9.9.9") == 200
        assert models(server.url, **{"x-forwarded-for": "192.0.2.77"}) == 200  # the peer
        assert models(server.url, **{"x-forwarded-for": "192.0.2.78"}) == 429  # still it


addresses = st.ip_addresses().map(str)


@settings(max_examples=200, deadline=None)
@given(written=st.lists(addresses, max_size=4), client=addresses, hops=st.integers(0, 3))
def test_what_a_client_writes_never_chooses_its_address(written, client, hops):
    """Behind ``hops`` trusted inner proxies (10/8), the proxy-appended chain decides."""
    from helixlab.gateway._forwarded import ProxyHeaders

    proxies = ProxyHeaders(["127.0.0.1", "10.0.0.0/8"])
    if proxies.trusted(client):
        return  # a client inside the proxies' own network is not the case here
    chain = [client] + [f"10.0.0.{i + 1}" for i in range(hops)]
    assert proxies.client("127.0.0.1", ", ".join(written + chain)) == client
    assert proxies.client("127.0.0.1", ", ".join(chain)) == client


class SlowGuard(hx.MiddlewarePlugin):
    """A guard whose start waits until released (a slow key server, say)."""

    name = "slow-guard"
    required = True
    release: threading.Event

    def start(self, ctx: hx.Context) -> None:
        assert type(self).release.wait(20)

    def get_middleware(self):
        def factory(app):
            async def refuse(scope, receive, send):
                await hx.gateway.error_response(401, "no token")(scope, receive, send)

            return refuse

        return factory


def test_while_a_guard_is_still_in_its_start_requests_are_refused(make_kernel):
    kernel = make_kernel(timeouts=hx.Timeouts(start=30))
    SlowGuard.release = threading.Event()
    kernel.register(provider_plugin())
    kernel.register(SlowGuard)
    assert kernel.load("fake-provider").ok
    entered = threading.Event()
    kernel.subscribe(lambda e: entered.set() if e.kind == "initialized" else None)
    with kernel.serve() as server:
        loading = threading.Thread(target=kernel.load, args=("slow-guard",))
        loading.start()
        try:
            assert entered.wait(10)  # init done, start under way
            assert_guarded_503(request(server.url, "GET", "/v1/models"), "slow-guard", "start")
            assert "it is starting" in request(server.url, "GET", "/v1/models").text
        finally:
            SlowGuard.release.set()
            loading.join(20)
        assert request(server.url, "GET", "/v1/models").status_code == 401
