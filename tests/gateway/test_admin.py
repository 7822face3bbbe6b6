"""The admin API in process (issue 12): outside the public chain, secrets masked, every
refusal with its status and the plugin and phase. Uses the toolkit's ServedGateway."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any, ClassVar

import httpx
import pytest

import helixlab as hx
from helixlab.testing import ServedGateway

from _gateway_support import provider_plugin

KEY = "in-process-admin-key"
AUTH = {"Authorization": f"Bearer {KEY}"}


class DenyAll(hx.MiddlewarePlugin):
    """A public middleware refusing every request: the operator must still get in."""

    name = "deny-all"
    seen: ClassVar[list[str]] = []

    def get_middleware(self) -> hx.MiddlewareFactory:
        def factory(app: Any) -> Any:
            async def deny(scope: Any, receive: Any, send: Any) -> None:
                DenyAll.seen.append(scope["path"])
                await send({"type": "http.response.start", "status": 403, "headers": []})
                await send({"type": "http.response.body", "body": b"denied"})

            return deny

        return factory


@pytest.fixture
def admin(helix_kernel: hx.Kernel) -> Iterator[ServedGateway]:
    with ServedGateway(helix_kernel, admin_key=KEY) as served:
        served.http.headers.update(AUTH)
        yield served


def test_no_public_middleware_sees_or_blocks_the_admin_api(admin: ServedGateway):
    DenyAll.seen.clear()
    admin.add(provider_plugin(), DenyAll)
    assert httpx.get(admin.url + "/v1/models").status_code == 403  # the public chain
    rows = admin.http.get("/admin/plugins")
    assert rows.status_code == 200
    answer = admin.http.post("/admin/reload", json={"plugin": "deny-all"})
    assert answer.status_code == 200 and answer.json()["ok"]
    assert DenyAll.seen == ["/v1/models"]


def test_secrets_are_masked_in_the_plugins_rows(admin: ServedGateway):
    admin.apply("plugins:\n  custom-provider:\n    config: {api_key: sk-admin-never-shown}\n")
    text = admin.http.get("/admin/plugins").text
    assert "sk-admin-never-shown" not in text and "custom-provider" in text


def test_refusals_carry_their_status(admin: ServedGateway):
    admin.add(provider_plugin())
    unknown = admin.http.post("/admin/reload", json={"plugin": "nosuch"})
    assert unknown.status_code == 404 and "nosuch" in unknown.json()["text"]
    admin.apply("plugins:\n  custom-provider: {}\n")
    bad = admin.http.post(
        "/admin/configure", json={"plugin": "custom-provider", "config": {"retry_count": "x"}}
    )
    assert bad.status_code == 422 and "retry_count" in bad.json()["text"]
    assert admin.http.post("/admin/reload", content=b"{not json").status_code == 400
    assert admin.http.post("/admin/reload", json={"name": "x"}).status_code == 400


def test_a_rolled_back_reload_answers_409_with_plugin_and_phase(admin: ServedGateway):
    class Flaky(hx.Plugin):
        name = "flaky"
        starts = 0

        def start(self, ctx: hx.Context) -> None:
            Flaky.starts += 1
            if Flaky.starts > 1:
                raise RuntimeError("no second start")

    admin.add(Flaky)
    answer = admin.http.post("/admin/reload", json={"plugin": "flaky"})
    assert answer.status_code == 409
    body = answer.json()
    assert (body["ok"], body["plugin"], body["phase"]) == (False, "flaky", "start")
    assert body["reports"][0]["rolled_back"] is True
    assert "the old versions keep serving" in body["text"]
    assert admin.kernel.state("flaky") == "active"


def test_an_empty_key_leaves_the_admin_api_off(helix_kernel: hx.Kernel):
    with ServedGateway(helix_kernel, admin_key="") as served:
        assert served.server.admin is None
        assert served.http.get("/admin/plugins", headers=AUTH).status_code == 404
