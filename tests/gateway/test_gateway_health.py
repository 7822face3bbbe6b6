"""``/health`` tells an unauthenticated probe the status only; the per-plugin detail (names,
states, errors) goes to a caller with a token the loaded custom-auth accepts, or to everyone
or no one as the gateway's ``health_detail`` says."""

from __future__ import annotations

import httpx
import jwt
import pytest
from test_plugins_auth import AUDIENCE, SECRET, claims

import helixlab as hx

from _gateway_support import provider_plugin


class Sick(hx.Plugin):
    name = "sick"

    def health_check(self, ctx: hx.Context) -> str:
        return "disk full on /var/lib/sick"


def get(url: str, token: str | None = None) -> httpx.Response:
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    return httpx.get(url + "/health", headers=headers)


def test_without_credentials_health_answers_the_status_only(kernel) -> None:
    kernel.register(provider_plugin())
    kernel.load_all()
    with kernel.serve() as server:
        assert get(server.url).json() == {"status": "ok"}
        kernel.register(Sick)
        kernel.load("sick")
        response = get(server.url, "anything-at-all")
    assert response.status_code == 503
    assert response.json() == {"status": "unavailable"}
    assert "sick" not in response.text and "disk" not in response.text


@pytest.fixture
def guarded(kernel):
    kernel.register(provider_plugin())
    kernel.register(Sick)
    kernel.apply_config(
        {
            "plugins": {
                "custom-auth": {
                    "config": {"secret": SECRET, "audience": AUDIENCE, "allowed_roles": ["ops"]}
                }
            }
        }
    )
    assert kernel.load_all().ok
    with kernel.serve() as server:
        yield server


def test_a_token_custom_auth_accepts_unlocks_the_detail(guarded) -> None:
    ops = jwt.encode(claims(roles=["ops"]), SECRET, algorithm="HS256")
    body = get(guarded.url, ops).json()
    assert body["status"] == "unavailable"
    assert body["plugins"]["sick"]["detail"] == "disk full on /var/lib/sick"
    assert body["providers"] == ["fake-provider"]


@pytest.mark.parametrize(
    "token",
    [
        None,
        "not-a-jwt",
        jwt.encode(claims(roles=["developer"]), SECRET, algorithm="HS256"),  # no allowed role
        jwt.encode(claims(), "another-secret-that-is-long-enough!!", algorithm="HS256"),
        jwt.encode(claims(exp=1), SECRET, algorithm="HS256"),
    ],
    ids=["none", "garbage", "wrong-role", "wrong-key", "expired"],
)
def test_any_other_caller_gets_the_status_only(guarded, token) -> None:
    response = get(guarded.url, token)
    assert response.status_code == 503 and response.json() == {"status": "unavailable"}


@pytest.mark.parametrize(("policy", "detail"), [("public", True), ("none", False)])
def test_health_detail_is_configurable_in_the_gateway_section(kernel, policy, detail) -> None:
    from helixlab.gateway import gateway_config
    from helixlab.kernel._config import parse_config

    doc = parse_config(f"plugins: {{}}\ngateway:\n  health_detail: {policy}\n")
    kernel.register(provider_plugin())
    kernel.load_all()
    with kernel.serve(config=gateway_config(doc)) as server:
        body = get(server.url).json()
    assert ("plugins" in body) is detail


def test_an_unknown_health_detail_is_a_config_error() -> None:
    from helixlab.gateway import gateway_config

    with pytest.raises(hx.ConfigError, match="health_detail"):
        gateway_config({"health_detail": "everyone"})
