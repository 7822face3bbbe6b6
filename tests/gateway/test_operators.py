"""Issue 12 as an operator meets it: ``helixlab serve`` with a plugins directory and an
installed entry-point package, every reload path under traffic (0 failed requests), the
admin API's key, the canary, and a busy port (issue 10)."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import textwrap
from pathlib import Path

import httpx

from _serving import Served, Traffic, stamp_plugin, write

KEY = "admin-key-for-tests-0123"


def config(tmp_path: Path, extra: str = "", stamp: str = "") -> Path:
    path = tmp_path / "plugins.yaml"
    write(
        path,
        "plugin_dirs: [plugins]\nplugins:\n  custom-provider: {}\n"
        f"  header-stamp: {{{stamp}}}\n{extra}",
    )
    return path


def cli(*args: str, **env: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "helixlab", *args],
        capture_output=True,
        text=True,
        timeout=60,
        env={**os.environ, **env},
    )


# -- serve your plugins ---------------------------------------------------------------------


def test_serve_loads_a_plugins_directory_from_the_flag_and_from_plugin_dirs(tmp_path: Path):
    write(tmp_path / "plugins" / "header_stamp.py", stamp_plugin("v1"))
    write(tmp_path / "more" / "other.py", stamp_plugin("x").replace("header-stamp", "other"))
    path = config(tmp_path, "  other: {}\n")
    served = Served([str(path), "--plugins", str(tmp_path / "more"), "--no-entry-points"])
    try:
        response = httpx.get(served.url + "/v1/models", timeout=10)
        assert response.headers.get_list("x-stamp") == ["x", "v1"] or sorted(
            response.headers.get_list("x-stamp")
        ) == ["v1", "x"]
        assert f"plugins directory {tmp_path / 'plugins'}: header-stamp" in served.stderr
        assert f"plugins directory {tmp_path / 'more'}: other" in served.stderr
    finally:
        assert served.stop() == 0


def test_no_plugin_named_x_says_where_it_looked_and_how_to_add_a_directory(tmp_path: Path):
    (tmp_path / "plugins").mkdir()
    result = cli("serve", str(config(tmp_path)), "--no-entry-points")
    assert result.returncode == 2
    assert "no plugin named 'header-stamp'" in result.stderr
    assert f"looked in the built-ins, plugins directory {tmp_path / 'plugins'}" in result.stderr
    assert "--plugins DIR" in result.stderr and "plugin_dirs:" in result.stderr
    assert "Traceback" not in result.stderr


def test_a_nameless_plugin_class_is_reported_with_its_file_and_class(tmp_path: Path):
    write(tmp_path / "plugins" / "header_stamp.py", stamp_plugin("v1"))
    write(
        tmp_path / "plugins" / "forgot.py",
        "import helixlab as hx\n\n\nclass Forgot(hx.Plugin):\n    version = '1.0'\n",
    )
    result = cli("serve", str(config(tmp_path)), "--no-entry-points")
    assert result.returncode == 1
    where = f"class Forgot in {tmp_path / 'plugins' / 'forgot.py'}:4"
    assert where in result.stderr and "without a `name`" in result.stderr
    assert "Traceback" not in result.stderr


def test_a_middleware_without_get_middleware_is_refused_at_load(tmp_path: Path):
    write(
        tmp_path / "plugins" / "header_stamp.py",
        "import helixlab as hx\n\n\nclass HeaderStamp(hx.MiddlewarePlugin):\n"
        "    name = 'header-stamp'\n",
    )
    result = cli("serve", str(config(tmp_path)), "--no-entry-points")
    assert result.returncode == 1
    assert "is a MiddlewarePlugin but does not define get_middleware()" in result.stderr
    assert "initialized" not in result.stderr  # refused before anything started


def _install_package(tmp_path: Path) -> Path:
    """A plugin package from its pyproject.toml, pip-installed into a target directory."""
    project = tmp_path / "header-stamp-pkg"
    write(
        project / "pyproject.toml",
        textwrap.dedent(
            """\
            [build-system]
            requires = ["setuptools>=77"]
            build-backend = "setuptools.build_meta"

            [project]
            name = "header-stamp"
            version = "1.0.0"

            [project.entry-points."helixlab.plugins"]
            header-stamp = "header_stamp:HeaderStamp"
            """
        ),
    )
    write(project / "header_stamp.py", stamp_plugin("from-package"))
    target = tmp_path / "site"
    subprocess.run(
        [
            sys.executable,
            "-m",
            "pip",
            "install",
            "--quiet",
            "--no-deps",
            "--target",
            str(target),
            str(project),
        ],
        check=True,
        capture_output=True,
        timeout=120,
    )
    return target


def test_serve_discovers_an_installed_entry_point_package(tmp_path: Path):
    site = _install_package(tmp_path)
    path = tmp_path / "plugins.yaml"
    write(path, "plugins:\n  custom-provider: {}\n  header-stamp: {}\n")
    env = {"PYTHONPATH": str(site)}
    served = Served([str(path), "--admin-key", KEY], env=env)
    try:
        response = httpx.get(served.url + "/v1/models", timeout=10)
        assert response.headers["x-stamp"] == "from-package"
        assert "entry points 'helixlab.plugins': header-stamp" in served.stderr
        # an installed module edited in place (as with `pip install -e .`), then reloaded
        write(site / "header_stamp.py", stamp_plugin("edited", version="1.1.0"))
        with Traffic(served.url) as traffic:
            reloaded = cli(
                "reload", "header-stamp", HELIXLAB_URL=served.url, HELIXLAB_ADMIN_KEY=KEY
            )
        assert reloaded.returncode == 0, reloaded.stderr
        assert "header-stamp 1.0.0 -> 1.1.0" in reloaded.stdout
        assert traffic.failures == []
        assert httpx.get(served.url + "/v1/models").headers["x-stamp"] == "edited"
    finally:
        assert served.stop() == 0
    opted_out = cli("serve", str(path), "--no-entry-points", **env)
    assert opted_out.returncode == 2 and "no plugin named 'header-stamp'" in opted_out.stderr


def test_a_busy_port_is_refused_before_any_plugin_starts(tmp_path: Path):
    write(tmp_path / "plugins" / "header_stamp.py", stamp_plugin("v1"))
    holder = socket.socket()
    holder.bind(("127.0.0.1", 0))
    holder.listen()
    port = holder.getsockname()[1]
    try:
        result = cli("serve", str(config(tmp_path)), "--port", str(port), "--no-entry-points")
    finally:
        holder.close()
    assert result.returncode == 1
    assert f"cannot listen on 127.0.0.1:{port}: the address is already in use" in result.stderr
    assert "--port" in result.stderr and "Errno" not in result.stderr
    assert "no plugin was started" in result.stderr
    assert "event" not in result.stderr  # not one plugin was initialized, started or stopped


# -- reload a running server ------------------------------------------------------------------


def test_every_reload_path_under_traffic_fails_no_request(tmp_path: Path):
    plugin = tmp_path / "plugins" / "header_stamp.py"
    write(plugin, stamp_plugin("v1"))
    path = config(tmp_path)
    served = Served([str(path), "--watch", "--admin-key", KEY, "--no-entry-points"])
    admin = {"Authorization": f"Bearer {KEY}"}
    client = {"HELIXLAB_URL": served.url, "HELIXLAB_ADMIN_KEY": KEY}
    try:
        with Traffic(served.url) as traffic:
            # 1. the admin API
            answer = httpx.post(
                served.url + "/admin/reload", json={"plugin": "header-stamp"}, headers=admin
            )
            assert answer.status_code == 200, answer.text
            assert answer.json()["reports"][0]["order"] == ["header-stamp"]
            answer = httpx.post(
                served.url + "/admin/configure",
                json={"plugin": "custom-provider", "config": {"retry_count": 4}},
                headers=admin,
            )
            assert answer.status_code == 200 and answer.json()["ok"], answer.text
            # 2. the command-line clients
            reloaded = cli("reload", "header-stamp", **client)
            assert reloaded.returncode == 0, reloaded.stderr
            assert reloaded.stdout.startswith("reloaded header-stamp: 1 plugin(s)")
            configured = cli("configure", "custom-provider", "retry_count=5", **client)
            assert configured.returncode == 0, configured.stderr
            status = cli("status", **client)
            assert status.returncode == 0 and "header-stamp" in status.stdout
            assert "custom-provider  1.0.0" in status.stdout
            # 3. --watch: a plugin file saved
            mark = served.mark()
            write(plugin, stamp_plugin("v2", version="2.0.0"))
            served.wait_for(r"reloaded\s+header-stamp 2\.0\.0", after=mark)
            served.wait_for(r"^helixlab:   1\. header-stamp 1\.0\.0 -> 2\.0\.0$", after=mark)
            # 4. --watch: the configuration file saved
            mark = served.mark()
            write(
                path,
                path.read_text().replace(
                    "custom-provider: {}", "custom-provider:\n    config: {retry_count: 2}"
                ),
            )
            served.wait_for(r"configured\s+custom-provider", after=mark)
            # 5. SIGHUP re-applies the configuration file
            mark = served.mark()
            write(path, path.read_text().replace("retry_count: 2", "retry_count: 1"))
            served.process.send_signal(signal.SIGHUP)
            served.wait_for(r"SIGHUP: re-applying", after=mark)
            served.wait_for(r"configured\s+custom-provider", after=mark)
            after_v2 = len(traffic.stamps)
            httpx.get(served.url + "/health", timeout=10)  # one more round trip
        assert traffic.failures == [], traffic.failures[:5]
        assert traffic.ok > 20
        assert "v2" in traffic.stamps[after_v2 - 1 :] or traffic.stamps[-1] == "v2"
        assert httpx.get(served.url + "/v1/models").headers["x-stamp"] == "v2"
    finally:
        assert served.stop() == 0
    assert "Traceback" not in served.stderr


def test_a_failed_reload_names_plugin_and_phase_and_the_old_version_serves(tmp_path: Path):
    plugin = tmp_path / "plugins" / "header_stamp.py"
    write(plugin, stamp_plugin("v1"))
    served = Served([str(config(tmp_path)), "--admin-key", KEY, "--no-entry-points"])
    client = {"HELIXLAB_URL": served.url, "HELIXLAB_ADMIN_KEY": KEY}
    try:
        failing_start = stamp_plugin("v2").replace(
            "    def get_middleware(self):",
            "    def start(self, ctx):\n        raise RuntimeError('no database')\n\n"
            "    def get_middleware(self):",
        )
        write(plugin, failing_start)
        with Traffic(served.url) as traffic:
            answer = httpx.post(
                served.url + "/admin/reload",
                json={"plugin": "header-stamp"},
                headers={"Authorization": f"Bearer {KEY}"},
            )
            refused = cli("reload", "header-stamp", **client)
        assert answer.status_code == 409
        assert (answer.json()["plugin"], answer.json()["phase"]) == ("header-stamp", "start")
        assert "the old versions keep serving" in answer.json()["text"]
        assert refused.returncode == 1
        assert "header-stamp failed in start" in refused.stderr
        assert traffic.failures == [] and set(traffic.stamps) == {"v1"}
    finally:
        assert served.stop() == 0


# -- the admin API's key ----------------------------------------------------------------------


def test_the_admin_api_refuses_without_the_key_and_with_a_wrong_one(tmp_path: Path):
    write(tmp_path / "plugins" / "header_stamp.py", stamp_plugin("v1"))
    served = Served([str(config(tmp_path)), "--no-entry-points"], env={"HELIXLAB_ADMIN_KEY": KEY})
    try:
        for headers in ({}, {"Authorization": "Bearer wrong"}, {"Authorization": KEY}):
            for method, route in (("GET", "plugins"), ("POST", "reload"), ("GET", "events")):
                response = httpx.request(
                    method,
                    f"{served.url}/admin/{route}",
                    json={"plugin": "header-stamp"},
                    headers=headers,
                )
                assert response.status_code == 401, (headers, route, response.text)
                assert response.headers["www-authenticate"].startswith("Bearer")
                assert "x-stamp" not in response.headers  # the public chain never ran
        assert "reloading" not in served.stderr
        ok = httpx.get(served.url + "/admin/plugins", headers={"Authorization": f"Bearer {KEY}"})
        assert ok.status_code == 200 and "x-stamp" not in ok.headers
        assert [row["name"] for row in ok.json()["data"]] == ["custom-provider", "header-stamp"]
        wrong = cli("status", HELIXLAB_URL=served.url, HELIXLAB_ADMIN_KEY="nope")
        assert wrong.returncode == 2 and "Wrong admin key" in wrong.stderr
    finally:
        assert served.stop() == 0
    assert KEY not in served.stderr


def test_without_an_admin_key_there_is_no_admin_api(tmp_path: Path):
    write(tmp_path / "plugins" / "header_stamp.py", stamp_plugin("v1"))
    served = Served([str(config(tmp_path)), "--no-entry-points"])
    try:
        response = httpx.get(served.url + "/admin/plugins", headers={"Authorization": "Bearer x"})
        assert response.status_code == 404
        assert response.headers["x-stamp"] == "v1"  # an ordinary unknown public route
        missing = cli("status", HELIXLAB_URL=served.url, HELIXLAB_ADMIN_KEY="x")
        assert missing.returncode == 2 and "--admin-key" in missing.stderr
    finally:
        assert served.stop() == 0


def test_the_admin_key_can_come_from_the_yaml_and_events_stream_as_sse(tmp_path: Path):
    write(tmp_path / "plugins" / "header_stamp.py", stamp_plugin("v1"))
    path = config(tmp_path, "gateway:\n  admin_key: ${TEST_ADMIN_KEY}\n")
    served = Served([str(path), "--no-entry-points"], env={"TEST_ADMIN_KEY": KEY})
    headers = {"Authorization": f"Bearer {KEY}"}
    try:
        with (
            httpx.Client(base_url=served.url, headers=headers, timeout=20) as client,
            client.stream("GET", "/admin/events") as events,
        ):
            lines = events.iter_lines()
            assert next(lines).startswith(": subscribed")
            client.post("/admin/reload", json={"plugin": "header-stamp"})
            kinds = []
            for line in lines:
                if line.startswith("event: "):
                    kinds.append(line.removeprefix("event: "))
                if "reloaded" in kinds:
                    break
        assert kinds[:2] == ["reloading", "reloaded"]
    finally:
        assert served.stop() == 0


# -- the canary -------------------------------------------------------------------------------


def test_the_canary_refuses_a_middleware_broken_on_every_request_with_0_errors_served(
    tmp_path: Path,
):
    plugin = tmp_path / "plugins" / "header_stamp.py"
    write(plugin, stamp_plugin("v1"))
    served = Served([str(config(tmp_path)), "--watch", "--verify", "--no-entry-points"])
    try:
        with Traffic(served.url) as traffic:
            mark = served.mark()
            write(plugin, stamp_plugin("v2", version="2.0.0", broken=True))
            failed = served.wait_for(r"reload_failed\s+header-stamp.*in verify", after=mark)
            served.wait_for(r"rolled_back\s+header-stamp 1\.0\.0", after=mark)
            mark = served.mark()
            write(plugin, stamp_plugin("v3", version="3.0.0"))  # the fix goes through
            served.wait_for(r"reloaded\s+header-stamp 3\.0\.0", after=mark)
            httpx.get(served.url + "/health", timeout=10)
        assert "broken on every request" in failed.string
        assert traffic.failures == [], traffic.failures[:5]
        assert set(traffic.stamps) <= {"v1", "v3"} and "v1" in traffic.stamps
    finally:
        assert served.stop() == 0
    assert "Traceback" not in served.stderr


def test_sighup_discovers_a_newly_listed_plugins_directory(tmp_path: Path):
    write(tmp_path / "plugins" / "header_stamp.py", stamp_plugin("v1"))
    path = tmp_path / "plugins.yaml"
    write(path, "plugins:\n  custom-provider: {}\n")
    served = Served([str(path), "--no-entry-points"])
    try:
        with Traffic(served.url) as traffic:
            mark = served.mark()
            write(
                path,
                "plugin_dirs: [plugins]\nplugins:\n  custom-provider: {}\n  header-stamp: {}\n",
            )
            served.process.send_signal(signal.SIGHUP)
            served.wait_for(r"plugins directory .*plugins: header-stamp", after=mark)
            served.wait_for(r"started\s+header-stamp", after=mark)
            httpx.get(served.url + "/health", timeout=10)
        assert traffic.failures == []
        assert httpx.get(served.url + "/v1/models").headers["x-stamp"] == "v1"
    finally:
        assert served.stop() == 0
