"""``%load_ext helixlab`` and every ``%helix`` subcommand, in a headless IPython shell."""

from __future__ import annotations

import logging
import textwrap
from pathlib import Path

import httpx
import pytest
from IPython.core.error import UsageError

import helixlab as hx
from helixlab.checks import LABS, Missing, lab
from helixlab.notebook import session_of
from helixlab.widgets import Dashboard

from _ipython import completions, ip_fixture, plain, run  # noqa: F401  (the `ip` fixture)

PAIR = """
%%helix plugin
import helixlab as hx

class Store(hx.Plugin):
    name = "store"
    version = "1.0"

class Api(hx.Plugin):
    name = "api"
    version = "1.0"
    dependencies = ("store",)
"""


@pytest.fixture
def pair(ip):
    ran = run(ip, PAIR.lstrip())
    assert ran.error is None, ran.shown
    return ip.user_ns["helix"]


def usage_error(ip, line: str) -> str:
    ran = run(ip, line)
    assert isinstance(ran.error, UsageError), ran.shown
    return str(ran.error)


def kernel_error(ip, source: str) -> tuple[BaseException, str]:
    """A cell that fails in the kernel: a real HelixError, shown without helixlab's frames."""
    ran = run(ip, source)
    assert isinstance(ran.error, hx.HelixError), ran.shown
    assert "helixlab/" not in ran.stdout, ran.stdout  # helixlab's frames are hidden
    return ran.error, ran.last_line


# -- loading and unloading the extension ---------------------------------------------


def test_load_ext_gives_one_kernel_bound_to_helix_and_says_what_to_try(ip):
    run(ip, "%unload_ext helixlab")
    ran = run(ip, "%load_ext helixlab")
    assert ran.error is None
    lines = ran.stdout.splitlines()
    assert len(lines) == 1
    assert "`helix`" in lines[0] and "%helix help" in lines[0] and "%%helix plugin" in lines[0]
    kernel = ip.user_ns["helix"]
    assert isinstance(kernel, hx.Kernel)
    assert session_of(ip).kernel is kernel
    assert "helix" in ip.magics_manager.magics["line"]
    assert "helix" in ip.magics_manager.magics["cell"]

    again = run(ip, "%load_ext helixlab")  # loading twice keeps the one kernel
    assert ip.user_ns["helix"] is kernel
    assert "helixlab ready" not in again.stdout


def test_load_ext_masks_the_log_records_a_plain_kernel_does_not(ip):
    before = logging.getLogRecordFactory()
    run(ip, "%unload_ext helixlab")
    logging.setLogRecordFactory(logging.LogRecord)
    try:
        hx.Kernel().close()  # a library's object: no process-wide side effect
        assert logging.getLogRecordFactory() is logging.LogRecord
        assert run(ip, "%load_ext helixlab").error is None
        assert logging.getLogRecordFactory() is not logging.LogRecord
        record = logging.getLogger("tests").makeRecord(
            "tests", logging.WARNING, __file__, 1, "key %s", ("Bearer sk-live-Zq8282",), None
        )
        assert record.getMessage() == "key Bearer ***"
    finally:
        logging.setLogRecordFactory(before)


def test_unload_ext_stops_the_plugins_and_the_magics(ip):
    ip.user_ns["stops"] = []
    ran = run(
        ip,
        textwrap.dedent(
            """\
            %%helix plugin
            import helixlab as hx
            class Tidy(hx.Plugin):
                name = "tidy"
                def stop(self, ctx):
                    stops.append(self.name)
            """
        ),
    )
    assert ran.error is None, ran.shown
    kernel = ip.user_ns["helix"]

    assert run(ip, "%unload_ext helixlab").error is None
    assert ip.user_ns["stops"] == ["tidy"]
    assert "helix" not in ip.user_ns
    assert "closed" in repr(kernel)
    gone = run(ip, "%helix list")
    assert isinstance(gone.error, UsageError) and "not found" in str(gone.error)

    run(ip, "%load_ext helixlab")  # a fresh, empty kernel; completion follows it
    assert ip.user_ns["helix"] is not kernel
    assert ip.user_ns["helix"].names == []
    assert "tidy" not in completions(ip, "%helix reload ")


# -- help and usage ----------------------------------------------------------------------


def test_question_mark_shows_the_usage_and_every_command(ip):
    ran = run(ip, "%helix?")
    assert "usage: %helix [-h] COMMAND ..." in ran.stdout
    for command in ("list", "graph", "reload", "configure", "dashboard", "check", "reset"):
        assert f"\n    {command}" in ran.stdout
    assert "%%helix plugin" in ran.stdout and "%%helix config" in ran.stdout


@pytest.mark.parametrize("line", ["%helix help", "%helix"])
def test_help_lists_the_commands(ip, line):
    ran = run(ip, line)
    assert ran.error is None
    assert "usage: %helix [-h] COMMAND ..." in ran.stdout
    assert "hot reload a plugin with its dependents" in ran.stdout


def test_subcommand_help_shows_its_own_usage_and_does_not_fail(ip):
    ran = run(ip, "%helix reload --help")
    assert ran.error is None
    assert "usage: %helix reload [-h] [--no-cascade] [--dry-run] NAME" in ran.stdout
    assert "--dry-run" in ran.stdout and "show the cascade, touch nothing" in ran.stdout


@pytest.mark.parametrize(
    ("line", "expected"),
    [
        ("%helix frobnicate", "invalid choice: 'frobnicate'"),
        ("%helix reload", "the following arguments are required: NAME"),
        ("%helix reload store extra", "%helix reload: unrecognized arguments: extra"),
        ("%helix reload store --bogus", "usage: %helix reload [-h]"),
        ("%helix graph --format png", "invalid choice: 'png'"),
        ("%helix events -n many", "invalid int value: 'many'"),
        ("%helix autoreload maybe", "invalid choice: 'maybe'"),
        ("%helix reload 'store", "%helix: No closing quotation"),
        ("%helix reload nosuch", "no plugin named 'nosuch'. (known: store, api)"),
        ("%helix reload stor", "no plugin named 'stor'. Did you mean 'store'? (known: store, api)"),
        ("%helix relaod store", "invalid choice: 'relaod'. Did you mean 'reload'?"),
        ("%helix load stroe", "nor a file. Did you mean 'store'?"),
        ("%helix check lab-1", "no lab named 'lab-1'. Did you mean 'lab1'?"),
        ("%helix configure store timeout", "expected KEY=VALUE, got 'timeout'"),
        ("%helix load nosuch.yaml", "'nosuch.yaml' is neither a registered plugin"),
        ("%helix discover /no/such/dir", "'/no/such/dir' is not a directory"),
        ("%helix watch /no/such/dir", "'/no/such/dir' is not a directory"),
        ("%helix check lab-nosuch", "no lab named 'lab-nosuch'"),
        ("%%helix plugins\nx = 1", "unknown cell kind 'plugins'"),
    ],
)
def test_bad_syntax_is_a_usage_error_and_changes_nothing(ip, pair, line, expected):
    before = [str(i) for i in pair.info()]
    assert expected in usage_error(ip, line)
    assert [str(i) for i in pair.info()] == before


# -- the subcommands ----------------------------------------------------------------------


def test_list_shows_one_row_per_plugin(ip, pair):
    table = ip.run_line_magic("helix", "list")
    assert plain(ip, table).splitlines() == [
        "plugin  kind    version  state   health   depends on  reloads",
        "------  ------  -------  ------  -------  ----------  -------",
        "store   plugin  1.0      active  unknown  -           0",
        "api     plugin  1.0      active  unknown  store       0",
    ]
    assert "<table" in table._repr_html_() and "api" in table._repr_html_()


def test_status_is_list_by_the_name_the_command_line_uses(ip, pair):
    # `helixlab status` is the server's table; a learner who types it here gets the same
    assert plain(ip, ip.run_line_magic("helix", "status")) == plain(
        ip, ip.run_line_magic("helix", "list")
    )


def test_list_order_and_graph_on_an_empty_kernel_say_so(ip):
    assert plain(ip, ip.run_line_magic("helix", "list")) == "no plugins registered"
    assert plain(ip, ip.run_line_magic("helix", "order")) == "no plugins registered"
    graph = ip.run_line_magic("helix", "graph --format text")
    assert plain(ip, graph) == "no plugins registered"


def test_order_is_the_load_order(ip, pair):
    assert plain(ip, ip.run_line_magic("helix", "order")) == "store -> api"


def test_graph_formats(ip, pair):
    svg = ip.run_line_magic("helix", "graph")
    data, _ = ip.display_formatter.format(svg)
    assert data["image/svg+xml"].lstrip().startswith(("<?xml", "<svg", "<!--"))
    assert "<svg" in data["image/svg+xml"]
    assert "store" in data["text/plain"] and "<- store" in data["text/plain"]
    # JupyterLab shows text/html over an image: none next to the drawing, or it hides it
    assert sorted(data) == ["image/svg+xml", "text/plain"]

    text = plain(ip, ip.run_line_magic("helix", "graph --format text"))
    assert text.index("store") < text.index("api")  # load order
    assert "[active]" in text

    dot = plain(ip, ip.run_line_magic("helix", "graph --format dot"))
    assert dot.startswith("digraph helixlab {")
    assert '"store" -> "api"' in dot  # from dependency to dependent


def test_load_all_load_one_and_start(ip):
    run(ip, "import helixlab as hx")
    run(ip, "class A(hx.Plugin):\n    name = 'a'\nclass B(hx.Plugin):\n    name = 'b'")
    run(ip, "helix.register(A); helix.register(B)")
    assert plain(ip, ip.run_line_magic("helix", "load a")) == "loaded 1: a"
    assert plain(ip, ip.run_line_magic("helix", "load")) == "loaded 1: b"
    ip.run_line_magic("helix", "unload b")
    assert plain(ip, ip.run_line_magic("helix", "start b")) == "loaded 1: b"


def test_load_a_config_file_registers_built_ins_and_loads(ip, tmp_path):
    config = tmp_path / "plugins.yaml"
    config.write_text("plugins:\n  custom-logger:\n    enabled: true\n")
    report = ip.run_line_magic("helix", f"load {config}")
    assert "custom-logger" in report.order
    assert ip.user_ns["helix"].state("custom-logger") == hx.PluginState.ACTIVE


def test_load_a_bad_config_file_names_file_line_and_key(ip, tmp_path):
    config = tmp_path / "plugins.yaml"
    config.write_text("plugins:\n  custom-logger:\n    priority: high\n")
    error, last = kernel_error(ip, f"%helix load {config}")
    assert isinstance(error, hx.ConfigError)
    assert last.startswith("ConfigError: Invalid configuration: ")
    assert "plugins.yaml:3: custom-logger: priority:" in last


def test_discover_registers_and_loads_a_plugins_directory(ip, tmp_path):
    (tmp_path / "greeter.py").write_text(
        "import helixlab as hx\n\nclass Greeter(hx.Plugin):\n    name = 'greeter'\n"
    )
    shown = plain(ip, ip.run_line_magic("helix", f"discover {tmp_path} --no-load"))
    assert shown == "registered: greeter"
    assert ip.user_ns["helix"].state("greeter") == hx.PluginState.REGISTERED
    assert plain(ip, ip.run_line_magic("helix", f"discover {tmp_path}")) == "loaded 1: greeter"


def test_reload_cascades_to_dependents(ip, pair):
    report = ip.run_line_magic("helix", "reload store")
    assert plain(ip, report).splitlines() == [
        "reloaded store: 2 plugin(s), dependencies first",
        "  1. store 1.0",
        "  2. api 1.0",
    ]
    assert pair.reload_count("api") == 1


def test_reload_dry_run_touches_nothing_and_no_cascade_reloads_one(ip, pair):
    shown = plain(ip, ip.run_line_magic("helix", "reload store --dry-run"))
    assert shown == "would reload, in order: store -> api"
    assert pair.reload_count("store") == 0
    report = ip.run_line_magic("helix", "reload store --no-cascade")
    assert report.order == ["store"]
    assert (pair.reload_count("store"), pair.reload_count("api")) == (1, 0)


def test_a_failed_reload_is_a_real_error_and_the_old_version_keeps_serving(ip, pair):
    run(ip, "helix.get('store').broken = True")
    ran = run(
        ip,
        "def start(self, ctx):\n    raise RuntimeError('disk full')\n"
        "type(helix.get('store')).start = start",
    )
    assert ran.error is None
    old = pair.get("store")
    error, last = kernel_error(ip, "%helix reload store")
    assert isinstance(error, hx.ReloadError)
    assert last == (
        "ReloadError: Reload of store rolled back: plugin 'store' failed in start: "
        "RuntimeError: disk full. The old versions keep serving."
    )
    assert pair.get("store") is old
    assert pair.state("api") == hx.PluginState.ACTIVE


@pytest.mark.parametrize("command", ["unload", "stop"])
def test_unload_stops_dependents_first(ip, pair, command):
    shown = plain(ip, ip.run_line_magic("helix", f"{command} store"))
    assert shown == "stopped, dependents first: api -> store"
    assert pair.state("api") == hx.PluginState.STOPPED


def test_configure_validates_then_reloads_with_dependents(ip):
    ran = run(
        ip,
        textwrap.dedent(
            """\
            %%helix plugin
            import helixlab as hx
            import pydantic

            class LimitConfig(pydantic.BaseModel):
                rate: int = 1

            class Limiter(hx.Plugin):
                name = "limiter"
                config_model = LimitConfig
                def init(self, ctx, config):
                    self.rate = config.rate

            class Edge(hx.Plugin):
                name = "edge"
                dependencies = ("limiter",)
            """
        ),
    )
    assert ran.error is None, ran.shown
    kernel = ip.user_ns["helix"]
    report = ip.run_line_magic("helix", "configure limiter rate=5")
    assert report.order == ["limiter", "edge"]
    assert kernel.get("limiter").rate == 5

    error, last = kernel_error(ip, "%helix configure limiter rate=lots")
    assert isinstance(error, hx.HelixError)
    assert "rate" in last and "limiter" in last
    assert kernel.get("limiter").rate == 5


def test_health_and_events(ip, pair):
    health = ip.run_line_magic("helix", "health")
    assert plain(ip, health) == "api: healthy\nstore: healthy"
    events = plain(ip, ip.run_line_magic("helix", "events -n 2"))
    assert events.splitlines()[-1].startswith("#")
    assert len(events.splitlines()) == 2
    only_api = plain(ip, ip.run_line_magic("helix", "events --plugin api"))
    assert only_api and all(" api " in line for line in only_api.splitlines())


def test_watch_a_directory_then_off(ip, tmp_path):
    shown = plain(ip, ip.run_line_magic("helix", f"watch {tmp_path}"))
    assert shown.startswith(f"watching {tmp_path}")
    assert session_of(ip).watcher is not None
    assert plain(ip, ip.run_line_magic("helix", "watch off")) == "file watching off"
    assert session_of(ip).watcher is None


def test_serve_then_stop(ip):
    shown = plain(ip, ip.run_line_magic("helix", "serve"))
    url = session_of(ip).server.url
    assert shown == f"gateway serving at {url} (OpenAI base URL: {url}/v1)"
    assert httpx.get(f"{url}/health", timeout=5).status_code in (200, 503)
    assert plain(ip, ip.run_line_magic("helix", "serve stop")) == "gateway stopped"
    assert session_of(ip).server is None


def test_dashboard_is_a_live_widget(ip, pair):
    dashboard = ip.run_line_magic("helix", "dashboard")
    assert isinstance(dashboard, Dashboard)
    assert plain(ip, dashboard) == "Dashboard(helixlab plugins, live)"
    assert list(dashboard._rows) == ["store", "api"]
    dashboard.close()


@pytest.fixture
def practice_lab():
    check = lab("lab-practice", "a practice lab")

    @check("a plugin named 'store' is active")
    def _active(probe):
        if "store" not in probe.kernel or probe.kernel.state("store") != hx.PluginState.ACTIVE:
            raise Missing("define and load a plugin named 'store'")

    @check("`answer` is defined")
    def _answer(probe):
        probe.need("answer", "set `answer = 42` in a cell")

    yield
    LABS.pop("lab-practice")


def test_check_prints_a_mark_and_a_hint_per_check(ip, pair, practice_lab):
    report = ip.run_line_magic("helix", "check lab-practice")
    assert plain(ip, report).splitlines() == [
        "lab-practice: a practice lab — 1/2 checks pass",
        "✓ a plugin named 'store' is active",
        "✗ `answer` is defined",
        "    hint: set `answer = 42` in a cell",
    ]
    error, _ = kernel_error(ip, "%helix check lab-practice --strict")
    assert isinstance(error, hx.CheckFailed)
    run(ip, "answer = 42")
    assert ip.run_line_magic("helix", "check lab-practice --strict").passed


def test_reset_rebinds_helix_to_an_empty_kernel(ip, pair):
    shown = plain(ip, ip.run_line_magic("helix", "reset"))
    assert shown == "kernel reset: no plugins registered"
    assert ip.user_ns["helix"] is not pair and ip.user_ns["helix"].names == []
    assert "closed" in repr(pair)


def test_a_cycle_is_a_real_error_naming_the_path(ip, pair, tmp_path):
    config = "plugins:\n  store:\n    depends_on: [api]\n"
    error, last = kernel_error(ip, f"%%helix config\n{config}")
    assert isinstance(error, hx.HelixError)
    assert "store -> api -> store" in last or "api -> store -> api" in last
    assert pair.state("store") == hx.PluginState.ACTIVE
    assert pair.graph.dependencies("store") == []


# -- tab completion ---------------------------------------------------------------------


def test_completion_of_subcommands_and_plugin_names(ip, pair):
    assert completions(ip, "%helix rel") == ["reload"]
    assert {"list", "dashboard", "autoreload"} <= set(completions(ip, "%helix "))
    assert completions(ip, "%helix reload ") == ["store", "api"]
    assert completions(ip, "%helix unload a") == ["api"]
    assert completions(ip, "%helix events --plugin s") == ["store"]
    assert completions(ip, "%helix graph --format ") == ["--format", "svg", "text", "dot"]
    assert completions(ip, "%helix autoreload o") == ["on", "off"]
    assert completions(ip, "%%helix p") == ["plugin"]


def test_example_paths_are_not_leaked_into_displays(ip, pair):
    for line in ("list", "order", "graph --format text", "health", "events"):
        text = plain(ip, ip.run_line_magic("helix", line))
        assert "0x" not in text and str(Path.cwd()) not in text
