# ruff: noqa: F811  (fixtures imported from the suites they extend)
"""Review of issue 20 item 1 (fail closed): routes guarded by a plugin that is not serving
answer 503, whatever the path, method or configuration trick. Real uvicorn on loopback."""

from __future__ import annotations

import httpx
from test_gateway_failclosed import (  # noqa: F401  (fixtures)
    TIMEOUTS,
    assert_guarded_503,
    auth_config,
    kernel,
    silent_key_server,
)

from _gateway_support import provider_plugin

TRICKS = [
    ("GET", "//v1/models"),
    ("GET", "/v1/models/"),
    ("GET", "/v1/models/fake-small"),
    ("GET", "/v1//models"),
    ("GET", "/v1/%6dodels"),
    ("POST", "/v1/chat%2Fcompletions"),
    ("POST", "/v1/chat/completions/"),
    ("HEAD", "/v1/models"),
    ("OPTIONS", "/v1/models"),
    ("GET", "/nope"),
    ("GET", "/health/"),
    ("GET", "/health/../v1/models"),
    ("GET", "/admin"),
    ("GET", "/metrics"),
]


def raw(url: str, method: str, path: str, **headers: str) -> httpx.Response:
    with httpx.Client(timeout=10) as c:
        req = c.build_request(method, url, headers=headers, json={"model": "fake-small",
                              "messages": [{"role": "user", "content": "hi"}]}
                              if method == "POST" else None)  # fmt: skip
        req.url = req.url.copy_with(raw_path=path.encode())
        return c.send(req)


def test_no_path_or_method_trick_reaches_a_route_while_the_guard_failed(kernel, silent_key_server):
    kernel.register(provider_plugin())
    kernel.apply_config(
        auth_config(public_key_url=silent_key_server, jwks_timeout="30s", skip_paths=["/health"])
    )
    assert kernel.load_all().failed["custom-auth"].phase == "start"
    with kernel.serve(cors_origins=["https://a.test"]) as server:
        for method, path in TRICKS:
            response = raw(server.url, method, path)
            assert response.status_code == 503, (method, path, response.status_code)
        preflight = raw(server.url, "OPTIONS", "/v1/chat/completions", Origin="https://a.test",
                        **{"Access-Control-Request-Method": "POST"})  # fmt: skip
        assert preflight.status_code in (200, 400) and not preflight.content.startswith(b'{"obj')
        spoof = raw(server.url, "GET", "/v1/models", **{"X-Forwarded-For": "10.0.0.1"})
        assert spoof.status_code == 503


def test_a_required_plugin_named_in_the_yaml_but_never_registered_fails_closed(kernel):
    """The YAML says `my-guard: required: true`, but its file failed to import (or was not
    discovered): the gateway must not serve without it."""
    kernel.register(provider_plugin())
    kernel.apply_config({"plugins": {"fake-provider": {}}})
    assert kernel.load_all().ok
    with kernel.serve() as server:
        assert httpx.get(server.url + "/v1/models", timeout=10).status_code == 200
        # a reload (SIGHUP, the watcher, the admin API) of a config that adds a guard whose
        # class is not there: accepted ("kept until one is"), and the gateway serves on
        kernel.apply_config({"plugins": {"my-guard": {"required": True},
                                         "fake-provider": {}}})  # fmt: skip
        response = httpx.get(server.url + "/v1/models", timeout=10)
        assert response.status_code == 503, (kernel.guards(), response.status_code)
