"""custom-auth through a real Kernel, wrapping a tiny Starlette app over loopback HTTP; the JWKS
comes from another tiny app on loopback."""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import time

import httpx
import jwt
import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from starlette.applications import Starlette
from starlette.responses import JSONResponse
from starlette.routing import Route

import helixlab as hx

from test_plugins_asgi import echo_app, serving

SECRET = "lab-secret-that-is-long-enough-for-hs256!"
ISSUER, AUDIENCE = "https://auth.example.test/", "helix-gateway"


@pytest.fixture(scope="module")
def rsa_key():
    return rsa.generate_private_key(public_exponent=65537, key_size=2048)


@pytest.fixture(scope="module")
def public_pem(rsa_key):
    return (
        rsa_key.public_key()
        .public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)
        .decode()
    )


def claims(**overrides):
    now = int(time.time())
    base = {
        "sub": "alice",
        "iss": ISSUER,
        "aud": AUDIENCE,
        "iat": now,
        "exp": now + 600,
        "roles": ["developer"],
    }
    base.update(overrides)
    return {k: v for k, v in base.items() if v is not None}


def b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def forged(header: dict, payload: dict, key: bytes | None) -> str:
    """A token built by hand, as an attacker would (PyJWT refuses to make these)."""
    signing_input = f"{b64(json.dumps(header).encode())}.{b64(json.dumps(payload).encode())}"
    mac = None if key is None else hmac.new(key, signing_input.encode(), hashlib.sha256)
    signature = b"" if mac is None else mac.digest()
    return f"{signing_input}.{b64(signature)}"


def load_auth(kernel, **config):
    kernel.apply_config({"plugins": {"custom-auth": {"config": config}}})
    kernel.load_all()
    return kernel.get("custom-auth")


def call(url, token=None, path="/echo"):
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    return httpx.get(url + path, headers=headers)


def assert_refused(response, status=401):
    assert response.status_code == status, response.text
    error = response.json()["error"]
    assert set(error) == {"message", "type", "param", "code"}
    kind = "authentication_error" if status == 401 else "permission_error"
    assert error["type"] == kind
    assert response.headers["www-authenticate"].startswith("Bearer")
    return error


# -- HMAC secret ------------------------------------------------------------------------


@pytest.fixture
def hmac_url(kernel):
    plugin = load_auth(
        kernel, secret=SECRET, issuer=ISSUER, audience=AUDIENCE, allowed_roles=["developer"]
    )
    with serving(plugin.get_middleware()(echo_app())) as url:
        yield url


def test_a_valid_token_passes_with_its_claims_in_the_scope(hmac_url):
    response = call(hmac_url, jwt.encode(claims(), SECRET, algorithm="HS256"))
    assert response.status_code == 200
    body = response.json()
    assert body["claims"]["sub"] == "alice" and body["claims"]["roles"] == ["developer"]
    assert body["client"] == "sub:alice"


def test_no_token_is_a_401_with_www_authenticate(hmac_url):
    error = assert_refused(call(hmac_url))
    assert error["code"] == "missing_token"
    assert_refused(httpx.get(hmac_url + "/echo", headers={"Authorization": "Basic YTpi"}))


def test_skip_paths_match_whole_segments_only(hmac_url):
    assert call(hmac_url, path="/health").status_code == 200
    assert_refused(call(hmac_url, path="/healthz-admin"))


@pytest.mark.parametrize(
    ("overrides", "reason"),
    [
        ({"exp": int(time.time()) - 60}, "expired"),
        ({"nbf": int(time.time()) + 3600}, "not valid yet"),
        ({"iss": "https://evil.example/"}, "issuer"),
        ({"aud": "another-service"}, "audience"),
        ({"exp": None}, "'exp'"),
    ],
)
def test_expired_premature_wrong_issuer_audience_or_no_expiry_are_401(hmac_url, overrides, reason):
    error = assert_refused(call(hmac_url, jwt.encode(claims(**overrides), SECRET, "HS256")))
    assert error["code"] == "invalid_token" and reason in error["message"]


def test_a_token_without_an_allowed_role_is_a_403(hmac_url):
    error = assert_refused(call(hmac_url, jwt.encode(claims(roles=["viewer"]), SECRET)), 403)
    assert error["code"] == "insufficient_role" and "developer" in error["message"]


def test_a_tampered_payload_is_rejected(hmac_url):
    token = jwt.encode(claims(roles=["viewer"]), SECRET, algorithm="HS256")
    head, _, sig = token.split(".")
    promoted = b64(json.dumps(claims(roles=["developer", "admin"])).encode())
    error = assert_refused(call(hmac_url, f"{head}.{promoted}.{sig}"))
    assert "signature" in error["message"]


def test_alg_none_is_rejected(hmac_url):
    token = forged({"alg": "none", "typ": "JWT"}, claims(), None)
    assert_refused(call(hmac_url, token))


def test_garbage_and_wrongly_signed_tokens_are_rejected(hmac_url):
    assert_refused(call(hmac_url, "not-a-jwt"))
    other = jwt.encode(claims(), "another-secret-that-is-also-32-bytes-long", algorithm="HS256")
    assert_refused(call(hmac_url, other))


# -- PEM public key ----------------------------------------------------------------------


def test_rs256_with_a_pem_public_key_and_algorithm_confusion_refused(kernel, rsa_key, public_pem):
    plugin = load_auth(kernel, public_key=public_pem, audience=AUDIENCE, issuer=ISSUER)
    with serving(plugin.get_middleware()(echo_app())) as url:
        good = jwt.encode(claims(), rsa_key, algorithm="RS256")
        assert call(url, good).status_code == 200
        # the attack: HS256 "signed" with the public key, which the attacker knows
        confused = forged({"alg": "HS256", "typ": "JWT"}, claims(), public_pem.encode())
        error = assert_refused(call(url, confused))
        assert "HS256" in error["message"]
        assert_refused(call(url, forged({"alg": "none"}, claims(), None)))
        other_key = ec.generate_private_key(ec.SECP256R1())
        assert_refused(call(url, jwt.encode(claims(), other_key, algorithm="ES256")))


@pytest.mark.parametrize(
    ("config", "message"),
    [
        ({"secret": SECRET, "algorithms": ["none"]}, "'none'"),
        ({"secret": SECRET, "algorithms": ["HS256", "RS256"]}, "only HMAC"),
        ({"secret": "short"}, "at least 32"),
        ({"public_key": "PEM", "algorithms": ["HS256"]}, "PEM public key"),
        ({"public_key_url": "http://keys.example.com/jwks.json"}, "https"),
        ({"secret": SECRET, "public_key_url": "https://k.example/jwks"}, "one key source"),
        ({"secret": SECRET, "algorithms": ["HS999"]}, "unknown algorithm"),
    ],
)
def test_unsafe_configurations_are_refused_at_config_time(kernel, config, message):
    with pytest.raises(hx.ConfigError, match=message):
        kernel.apply_config({"plugins": {"custom-auth": {"config": config}}})


def test_hmac_algorithms_are_refused_next_to_a_public_key(kernel, public_pem):
    config = {"public_key": public_pem, "algorithms": ["RS256", "HS256"]}
    with pytest.raises(hx.ConfigError, match="algorithm confusion"):
        kernel.apply_config({"plugins": {"custom-auth": {"config": config}}})


def test_a_private_key_is_refused_where_the_public_key_goes(kernel, rsa_key):
    pem = rsa_key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    ).decode()
    with pytest.raises(hx.ConfigError, match="private key") as info:
        kernel.apply_config({"plugins": {"custom-auth": {"config": {"public_key": pem}}}})
    assert "BEGIN" not in str(info.value)


# -- JWKS ------------------------------------------------------------------------------


class KeyServer:
    """A JWKS endpoint on loopback that counts its fetches."""

    def __init__(self):
        self.keys: list[dict] = []
        self.fetches = 0
        self.app = Starlette(routes=[Route("/jwks.json", self.jwks)])

    async def jwks(self, request):
        self.fetches += 1
        return JSONResponse({"keys": self.keys})

    def add(self, private_key, kid):
        jwk = json.loads(jwt.algorithms.RSAAlgorithm.to_jwk(private_key.public_key()))
        self.keys.append({**jwk, "kid": kid, "use": "sig", "alg": "RS256"})


@pytest.fixture
def jwks(rsa_key):
    keys = KeyServer()
    keys.add(rsa_key, "k1")
    with serving(keys.app) as url:
        keys.url = url + "/jwks.json"
        yield keys


def test_jwks_keys_are_used_by_kid_and_unknown_kids_refetch_at_most_once(kernel, rsa_key, jwks):
    plugin = load_auth(
        kernel, public_key_url=jwks.url, audience=AUDIENCE, jwks_refetch_interval="30s"
    )
    assert jwks.fetches == 1  # fetched at start
    now = [time.monotonic()]
    plugin.jwks.clock = lambda: now[0]
    with serving(plugin.get_middleware()(echo_app())) as url:
        token = jwt.encode(claims(), rsa_key, algorithm="RS256", headers={"kid": "k1"})
        assert call(url, token).status_code == 200
        assert jwks.fetches == 1  # cached

        stranger = rsa.generate_private_key(public_exponent=65537, key_size=2048)
        unknown = jwt.encode(claims(), stranger, algorithm="RS256", headers={"kid": "k9"})
        now[0] += 31
        assert "kid" in assert_refused(call(url, unknown))["message"]
        assert jwks.fetches == 2  # refetched once for the unknown kid
        assert_refused(call(url, unknown))
        assert jwks.fetches == 2  # and not again within the refetch interval

        jwks.add(stranger, "k9")  # the key server rotates in the new key
        now[0] += 31
        assert call(url, unknown).status_code == 200
        assert jwks.fetches == 3


def test_jwks_never_accepts_hmac_tokens_signed_with_a_published_key(kernel, rsa_key, jwks):
    plugin = load_auth(kernel, public_key_url=jwks.url, audience=AUDIENCE)
    with serving(plugin.get_middleware()(echo_app())) as url:
        n = jwks.keys[0]["n"].encode()
        confused = forged({"alg": "HS256", "kid": "k1"}, claims(), n)
        assert_refused(call(url, confused))


def test_an_unreachable_jwks_fails_closed_and_reports_unhealthy(kernel, rsa_key):
    dead = KeyServer()
    with serving(dead.app) as url:
        pass  # the port is closed again
    plugin = load_auth(kernel, public_key_url=url + "/jwks.json", audience=AUDIENCE)
    assert not kernel.health()["custom-auth"].healthy
    with serving(plugin.get_middleware()(echo_app())) as app_url:
        token = jwt.encode(claims(), rsa_key, algorithm="RS256", headers={"kid": "k1"})
        assert_refused(call(app_url, token))


# -- through the kernel ------------------------------------------------------------------


def test_with_no_key_configured_every_request_is_refused(kernel):
    plugin = load_auth(kernel)
    health = kernel.health()["custom-auth"]
    assert not health.healthy and "no key configured" in health.detail
    with serving(plugin.get_middleware()(echo_app())) as url:
        assert_refused(call(url, jwt.encode(claims(), SECRET, algorithm="HS256")))
        assert call(url, path="/health").status_code == 200


def test_the_secret_never_shows_and_a_reload_keeps_authenticating(kernel):
    plugin = load_auth(kernel, secret=SECRET, audience=AUDIENCE)
    shown = [repr(plugin.config), repr(kernel.info()), repr(kernel.events())]
    assert not any(SECRET in text for text in shown)
    kernel.configure("custom-auth", {"allowed_roles": ["admin"]})
    new = kernel.get("custom-auth")
    with serving(new.get_middleware()(echo_app())) as url:
        assert_refused(call(url, jwt.encode(claims(), SECRET, algorithm="HS256")), 403)
        admin = jwt.encode(claims(roles="admin ops"), SECRET, algorithm="HS256")
        assert call(url, admin).status_code == 200
    assert not any(SECRET in repr(e) for e in kernel.events())


def test_roles_can_come_from_a_nested_claim(kernel):
    plugin = load_auth(
        kernel, secret=SECRET, roles_claim="realm_access.roles", allowed_roles=["admin"]
    )
    with serving(plugin.get_middleware()(echo_app())) as url:
        nested = claims(aud=None, roles=None, realm_access={"roles": ["admin"]})
        assert call(url, jwt.encode(nested, SECRET, algorithm="HS256")).status_code == 200
