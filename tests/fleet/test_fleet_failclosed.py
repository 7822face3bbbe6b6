"""Issue 20, item 1 across a fleet: a worker whose guarding plugin failed at start serves
no request unauthenticated (503), beside workers whose guard serves (401 without a token).
Real worker processes on one port and a real redis-server, as ``test_fleet.py`` runs them."""

from __future__ import annotations

from collections import Counter
from pathlib import Path

import httpx
import pytest

from helixlab.fleet import _redis as fleet_redis

from _fleet_support import fleet

pytestmark = pytest.mark.skipif(fleet_redis.redis_binary() is None, reason="no redis-server")

GUARD = """
import os
import helixlab as hx
from helixlab.gateway import error_response


class Guard(hx.MiddlewarePlugin):
    name = "guard"
    version = "1.0.0"
    required = True  # it guards requests: the gateway refuses to serve without it
    config_model = dict

    def init(self, ctx, config):
        self.fail_slot = config.get("fail_slot")

    def start(self, ctx):
        if self.fail_slot == int(os.environ.get("HELIXLAB_WORKER_SLOT", -1)):
            raise RuntimeError("the key server sent nonsense")

    def get_middleware(self):
        def factory(app):
            async def guarded(scope, receive, send):
                if (b"authorization", b"Bearer ok") not in scope.get("headers", []):
                    await error_response(401, "no token")(scope, receive, send)
                    return
                await app(scope, receive, send)

            return guarded

        return factory
"""


def test_a_worker_whose_guard_failed_at_start_refuses_beside_the_others(
    tmp_path: Path,
    redis_server,
):
    plugins = tmp_path / "plugins"
    plugins.mkdir()
    (plugins / "guard.py").write_text(GUARD)
    config = tmp_path / "plugins.yaml"
    config.write_text("plugins:\n  custom-provider: {}\n  guard:\n    config: {fail_slot: 1}\n")
    with fleet(config, 2, redis_server.url) as sup:
        statuses: Counter = Counter()
        workers: dict[str, set[int]] = {}
        for _ in range(400):  # fresh connections, until both workers answered
            if len(workers) == 2 and sum(statuses.values()) >= 40:
                break
            with httpx.Client(timeout=10) as client:
                response = client.get(sup.url + "/v1/models")
            statuses[response.status_code] += 1
            workers.setdefault(response.headers["x-helixlab-worker"], set()).add(
                response.status_code
            )
            if response.status_code == 503:
                message = response.json()["error"]["message"]
                assert "'guard' guards this gateway" in message and "phase start" in message
        assert set(statuses) <= {401, 503}, statuses
        assert 200 not in statuses
        # one worker refuses everything, the other asks for the token
        assert sorted(map(sorted, workers.values())) == [[401], [503]], workers


# -- 4. /metrics is not public ----------------------------------------------------------------


def test_metrics_answer_the_admin_key_or_their_own_loopback_listener(tmp_path: Path, redis_server):
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    (tmp_path / "plugins").mkdir()
    config = tmp_path / "plugins.yaml"
    config.write_text(f"gateway:\n  metrics_port: {port}\nplugins:\n  custom-provider: {{}}\n")
    key = "metrics-key-0123456789"
    with fleet(config, 1, redis_server.url, admin_key=key) as sup:
        assert httpx.get(sup.url + "/v1/models").status_code == 200
        refused = httpx.get(sup.url + "/metrics")
        assert refused.status_code == 401 and "admin key" in refused.json()["error"]["message"]
        wrong = httpx.get(sup.url + "/metrics", headers={"Authorization": "Bearer nope"})
        assert wrong.status_code == 401
        keyed = httpx.get(sup.url + "/metrics", headers={"Authorization": f"Bearer {key}"})
        assert keyed.status_code == 200 and "helixlab_requests_total" in keyed.text
        # Prometheus scrapes the listener of its own, loopback by default, no credentials
        scraped = httpx.get(f"http://127.0.0.1:{port}/metrics")
        assert scraped.status_code == 200 and "helixlab_requests_total" in scraped.text
        assert 'route="/v1/models"' in scraped.text


def test_without_an_admin_key_metrics_are_not_on_the_gateway_port(tmp_path: Path, redis_server):
    (tmp_path / "plugins").mkdir()
    config = tmp_path / "plugins.yaml"
    config.write_text("plugins:\n  custom-provider: {}\n")
    with fleet(config, 1, redis_server.url) as sup:
        response = httpx.get(sup.url + "/metrics")
        assert response.status_code == 404
        assert "metrics_port" in response.json()["error"]["message"]
