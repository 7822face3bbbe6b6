"""``%%helix plugin`` and ``%%helix config`` cells, ``%helix autoreload``: run as a user would."""

from __future__ import annotations

import re
import textwrap

import pytest

import helixlab as hx

from _ipython import ip_fixture, plain, run  # noqa: F401  (the `ip` fixture)


def cell(source: str, **versions: str) -> str:
    """A ``%%helix plugin`` cell: a store and an api (depending on it), with chosen versions."""
    return "%%helix plugin\n" + plugins(source, **versions)


def plugins(source: str = "", store: str = "1.0", api: str = "1.0", start: str = "") -> str:
    return textwrap.dedent(
        f"""\
        import helixlab as hx

        def greeting():
            return "hello"

        class Store(hx.Plugin):
            name = "store"
            version = "{store}"
            def start(self, ctx):
                {start or "pass"}

        class Api(hx.Plugin):
            name = "api"
            version = "{api}"
            dependencies = ("store",)
            def init(self, ctx, config):
                self.store = ctx.get("store")
        {source}"""
    )


def plain_text(text: str) -> str:
    """What the terminal shows, without its colours."""
    return re.sub(r"\x1b\[[0-9;]*m", "", text)


def ok(ip, source: str):
    ran = run(ip, source)
    assert ran.error is None, ran.shown
    return ran


@pytest.fixture
def kernel(ip):
    ok(ip, cell(""))
    return ip.user_ns["helix"]


def serving(kernel: hx.Kernel) -> dict[str, str]:
    return {name: kernel.get(name).version for name in ("store", "api")}


# -- %%helix plugin -------------------------------------------------------------------


def test_first_run_registers_and_loads_every_plugin_of_the_cell(ip):
    ran = ok(ip, cell(""))
    assert "loaded store 1.0 (new)\nloaded api 1.0 (new)" in ran.stdout
    kernel = ip.user_ns["helix"]
    assert kernel.graph.load_order() == ["store", "api"]
    assert kernel.get("api").store is kernel.get("store")
    assert ip.user_ns["greeting"]() == "hello"  # helpers land in the namespace too


def test_a_cell_plugin_can_depend_on_a_plugin_the_kernel_already_knows(ip):
    ok(ip, "import helixlab as hx\nclass Base(hx.Plugin):\n    name = 'base'")
    ok(ip, "helix.register(Base); helix.load_all()")
    ran = ok(
        ip,
        "%%helix plugin\nclass Top(hx.Plugin):\n    name = 'top'\n    dependencies = ('base',)",
    )
    assert "loaded top 0.1.0 (new)" in ran.stdout
    assert ip.user_ns["helix"].state("top") == hx.PluginState.ACTIVE


def test_rerunning_an_unchanged_cell_changes_nothing(ip, kernel):
    before = kernel.get("store")
    ran = ok(ip, cell(""))
    assert "no changes: the running versions stay" in ran.stdout
    assert kernel.get("store") is before
    assert kernel.reload_count("store") == 0


def test_a_changed_plugin_reloads_with_its_dependents_in_order(ip, kernel):
    ran = ok(ip, cell("", store="1.1"))
    assert ran.displayed == [] and ran.stdout.splitlines()[-3:] == [
        "reloaded store: 2 plugin(s), dependencies first",
        "  1. store 1.0 -> 1.1",
        "  2. api 1.0",
    ]
    assert serving(kernel) == {"store": "1.1", "api": "1.0"}
    assert kernel.get("api").store is kernel.get("store")  # bound to the new store
    assert kernel.reload_count("api") == 1
    assert kernel.last_cascade == ("store", "api")


def test_the_same_code_declaring_another_version_reloads_what_it_declares(ip):
    """The cell's code is the same on each run, but what it declares is computed when it runs:
    what runs is what the class says (the browser test's dashboard cell counts its runs)."""
    counted = (
        "%%helix plugin\nimport helixlab as hx\nruns = globals().get('runs', 0) + 1\n"
        "class Store(hx.Plugin):\n    name = 'store'\n    version = f'1.{runs}'\n"
    )
    ok(ip, counted)
    ran = ok(ip, counted)
    assert "reloaded store" in ran.stdout and "1.1 -> 1.2" in ran.stdout
    assert ip.user_ns["helix"].get("store").version == "1.2"


def test_only_a_changed_dependent_reloads_alone(ip, kernel):
    ran = ok(ip, cell("", api="2.0"))
    assert "reloaded api: 1 plugin(s), dependencies first\n  1. api 1.0 -> 2.0" in ran.stdout
    assert kernel.reload_count("store") == 0


def test_a_helper_no_plugin_uses_is_no_change_of_the_cells_plugins(ip, kernel):
    ran = ok(ip, cell("").replace('return "hello"', 'return "hi"'))
    assert "no changes: the running versions stay" in ran.stdout
    assert kernel.reload_count("store") == 0 and ip.user_ns["greeting"]() == "hi"


# -- what a plugin reaches: helper classes, functions, decorators, constants --------------

BUCKETS = """\
%%helix plugin
import helixlab as hx

RATE = {rate}


def refill(tokens):
    return min(tokens + RATE, {cap})


def traced(method):
    def wrapper(self, *args):
        return method(self, *args){trace}
    return wrapper


class TokenBucket:
    def __init__(self):
        self.tokens = 0

    def take(self):
        self.tokens = refill(self.tokens)
        return self.tokens{take}


class Limiter(hx.Plugin):
    name = "limiter"

    @traced
    def start(self, ctx):
        self.bucket = TokenBucket()


class Banner(hx.Plugin):
    name = "banner"
    dependencies = ("limiter",)

    def text(self):
        return "{banner}"
"""


def limiter(rate=1, cap=10, trace="", take="", banner="hi") -> str:
    return BUCKETS.format(rate=rate, cap=cap, trace=trace, take=take, banner=banner)


@pytest.fixture
def limiting(ip):
    ok(ip, limiter())
    return ip.user_ns["helix"]


def test_a_changed_helper_class_reloads_the_plugin_that_uses_it_and_names_it(ip, limiting):
    ran = ok(ip, limiter(take=" * 100"))
    assert ran.stdout.splitlines()[-4:] == [
        "TokenBucket changed: reloading limiter",
        "reloaded limiter: 2 plugin(s), dependencies first",
        "  1. limiter 0.1.0",
        "  2. banner 0.1.0",
    ]
    assert limiting.get("limiter").bucket.take() == 100  # the new helper class runs


@pytest.mark.parametrize(
    ("edit", "changed"),
    [
        ({"rate": 2}, "RATE"),  # a constant a helper function of a helper class reads
        ({"cap": 5}, "refill"),  # a helper function of the helper class
        ({"trace": " or None"}, "traced"),  # the decorator of a method
    ],
)
def test_code_the_plugin_reaches_transitively_reloads_it(ip, limiting, edit, changed):
    ran = ok(ip, limiter(**edit))
    assert f"{changed} changed: reloading limiter" in ran.stdout
    assert [limiting.reload_count(n) for n in ("limiter", "banner")] == [1, 1]


def test_only_the_plugin_whose_code_changed_reloads(ip, limiting):
    ran = ok(ip, limiter(banner="hello"))
    assert "Banner changed: reloading banner\nreloaded banner: 1 plugin(s)" in ran.stdout
    assert [limiting.reload_count(n) for n in ("limiter", "banner")] == [0, 1]
    assert limiting.get("banner").text() == "hello"


def test_comments_blank_lines_and_unused_code_are_no_change(ip, limiting):
    edited = limiter().replace("RATE = 1\n", "# the rate\nRATE = 1  # per call\n\n\n")
    ran = ok(ip, edited + "\n\ndef unused():\n    return 1\n")
    assert "no changes: the running versions stay" in ran.stdout
    assert limiting.reload_count("limiter") == 0


def test_a_value_from_another_cell_is_part_of_the_plugin_that_uses_it(ip):
    ok(ip, "LIMIT = 3")
    source = "%%helix plugin\nclass Cap(hx.Plugin):\n    name = 'cap'\n    limit = LIMIT\n"
    ok(ip, "import helixlab as hx")
    ok(ip, source)
    kernel = ip.user_ns["helix"]
    assert "no changes" in ok(ip, source).stdout
    ok(ip, "LIMIT = 4")
    ran = ok(ip, source)
    assert "LIMIT changed: reloading cap" in ran.stdout
    assert kernel.get("cap").limit == 4
    ok(ip, "helix_kernel_repr_changes = helix")  # objects with state count by their type only
    assert "no changes" in ok(ip, source).stdout


def test_a_helper_from_the_learners_own_module_edited_and_reloaded_reloads(
    ip, tmp_path, monkeypatch
):
    """`from mylib import shout`: the statement's text never changes, but what it binds
    does once the learner edits mylib.py and reloads it; re-running the plugin cell then
    reloads the plugin, naming the helper, and the new instance runs the new code."""
    module = tmp_path / "mylib_issue22.py"
    module.write_text("def shout(text):\n    return text.upper()\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    source = textwrap.dedent(
        """\
        %%helix plugin
        import helixlab as hx
        from mylib_issue22 import shout

        class Loud(hx.Plugin):
            name = "loud"
            def start(self, ctx):
                self.greeting = shout("hi")
        """
    )
    ok(ip, source)
    kernel = ip.user_ns["helix"]
    assert kernel.get("loud").greeting == "HI"
    assert "no changes" in ok(ip, source).stdout  # nothing was edited

    module.write_text("def shout(text):\n    return text.upper() + '!'\n")
    assert "no changes" in ok(ip, source).stdout  # Python still runs the module it imported
    ok(ip, "import importlib, mylib_issue22\nimportlib.reload(mylib_issue22)")
    ran = ok(ip, source)
    assert "shout changed: reloading loud" in ran.stdout
    assert kernel.get("loud").greeting == "HI!"


def test_a_failed_edit_undone_is_no_change(ip, limiting):
    failed = run(ip, limiter(take=" + 1").replace("TokenBucket()", "TokenBucket(); 1 / 0"))
    assert isinstance(failed.error, hx.ReloadError)
    ran = ok(ip, limiter())
    assert "no changes: the running versions stay" in ran.stdout
    assert limiting.get("limiter").bucket.take() == 1


def test_a_new_version_that_fails_to_start_is_rolled_back_and_the_old_keeps_serving(ip, kernel):
    old = kernel.get("store")
    ran = run(ip, cell("", store="1.1", start="raise RuntimeError('port in use')"))
    assert isinstance(ran.error, hx.ReloadError)
    assert ran.displayed == [
        "reload of store rolled back: store failed in start\n"
        "  error: RuntimeError: port in use\n"
        "  1. store 1.0 -> 1.1\n"
        "  2. api 1.0\n"
        "  the old versions keep serving"
    ]
    assert ran.last_line == (
        "ReloadError: Reload of store rolled back: plugin 'store' failed in start: "
        "RuntimeError: port in use. The old versions keep serving."
    )
    assert "helixlab/" not in ran.stdout
    assert kernel.get("store") is old
    assert serving(kernel) == {"store": "1.0", "api": "1.0"}
    assert kernel.state("store") == hx.PluginState.ACTIVE

    fixed = ok(ip, cell("", store="1.2"))  # the next good version goes in as usual
    assert "  1. store 1.0 -> 1.2" in fixed.stdout


@pytest.mark.parametrize(
    "failure",
    [
        "raise RuntimeError('port in use')",
        "1 / 0  # at definition",
        "raise KeyboardInterrupt  # the interrupt button, as the cell runs",
    ],
    ids=["start-fails", "cell-raises", "cell-interrupted"],
)
def test_a_failed_rerun_leaves_the_old_instances_their_own_helpers(ip, failure):
    """A re-run that does not run must not change what the running version calls: the
    helper it redefined is the old one again (names it only added stay, to inspect)."""
    source = textwrap.dedent(
        """\
        %%helix plugin
        import helixlab as hx

        def shout(text):
            return text.upper()

        class Loud(hx.Plugin):
            name = "loud"
            def say(self, text):
                return shout(text)
        """
    )
    ok(ip, source)
    loud = ip.user_ns["helix"].get("loud")
    edited = source.replace("text.upper()", "text + '!'") + "\ndef added():\n    return 1\n"
    if failure.startswith("raise"):
        edited = edited.replace(
            "    def say(self, text):",
            f"    def start(self, ctx):\n        {failure}\n    def say(self, text):",
        )
    else:
        edited += failure + "\n"
    ran = run(ip, edited)
    assert ran.error is not None
    assert ip.user_ns["helix"].get("loud") is loud
    assert loud.say("hi") == "HI"  # not "hi!": the refused cell's helper is not what runs
    assert ip.user_ns["shout"]("hi") == "HI"
    assert "added" in ip.user_ns


def test_a_failing_dependent_rolls_back_the_whole_cascade(ip, kernel):
    broken = cell("", store="1.1").replace(
        'self.store = ctx.get("store")', "raise ValueError('no store')"
    )
    ran = run(ip, broken)
    assert isinstance(ran.error, hx.ReloadError)
    assert "api failed in init" in ran.displayed[0]
    assert ran.last_line.endswith("ValueError: no store. The old versions keep serving.")
    assert serving(kernel) == {"store": "1.0", "api": "1.0"}


def test_a_syntax_error_changes_nothing_and_points_at_the_cell_line(ip, kernel):
    before = kernel.plugin_class("store")
    ran = run(ip, cell("", store="1.1") + "    def broken(self:\n")
    assert isinstance(ran.error, SyntaxError)
    line = cell("", store="1.1").count("\n") + 1  # counted from `%%helix plugin`, line 1
    assert ran.last_line == (
        "SyntaxError: '(' was never closed; nothing was changed, the running versions keep serving"
    )
    # as IPython shows an ordinary cell's syntax error: the cell's own line, with a caret
    assert f"Cell In[{ran.result.execution_count}], line {line}\n" in plain_text(ran.stdout)
    assert "    def broken(self:\n" in ran.stdout
    assert "helixlab/" not in ran.stdout
    assert kernel.plugin_class("store") is before
    assert serving(kernel) == {"store": "1.0", "api": "1.0"}


def test_an_exception_in_the_cell_leaves_the_old_versions_serving(ip, kernel):
    ran = run(ip, cell("raise KeyError('oops')", store="1.1"))
    assert isinstance(ran.error, KeyError)
    assert ran.last_line == "KeyError: 'oops'"
    assert serving(kernel) == {"store": "1.0", "api": "1.0"}
    assert kernel.reload_count("store") == 0


def test_a_new_plugin_that_fails_to_start_is_a_real_error(ip, kernel):
    ran = run(
        ip,
        "%%helix plugin\nclass Bad(hx.Plugin):\n    name = 'bad'\n"
        "    def start(self, ctx):\n        raise OSError('no disk')",
    )
    assert isinstance(ran.error, hx.ReloadError)
    assert ran.last_line == (
        "ReloadError: Plugin 'bad' 0.1.0 was registered but failed in start: OSError: no disk"
    )
    assert kernel.state("bad") == hx.PluginState.FAILED
    assert serving(kernel) == {"store": "1.0", "api": "1.0"}


def test_a_raise_in_start_shows_the_learners_frame_and_the_message_only(ip, kernel):
    source = (
        "%%helix plugin\nclass Boom(hx.Plugin):\n    name = 'boom'\n\n"
        "    def start(self, ctx):\n        raise OSError('no disk')\n"
    )
    ran = run(ip, source)
    shown = plain_text(ran.stdout)
    # the frame of the raise, at its cell line (`%%helix plugin` is line 1), with its text
    assert f"Cell In[{ran.result.execution_count}], line 6, in " in shown
    assert "----> 6         raise OSError('no disk')" in shown
    assert ran.last_line == (
        "ReloadError: Plugin 'boom' 0.1.0 was registered but failed in start: OSError: no disk"
    )
    assert "run_cell_magic" not in shown  # the cell is not echoed as one long string
    assert "helixlab/" not in shown and "The above exception" not in shown


def test_a_refused_config_cell_shows_the_message_alone(ip):
    ran = run(ip, "%%helix config\nplugins:\n  nocfg\n    enabled: true\n")
    assert plain_text(ran.stdout).strip() == (
        f"ConfigError: Invalid configuration: cell [{ran.result.execution_count}]:3: invalid "
        "YAML at column 8: 'nocfg' has no ':' after it, so the next line was read as part of "
        "it; a key ends with a colon."
    )


def test_a_cycle_in_the_cell_is_refused(ip, kernel):
    ran = run(
        ip,
        cell("", store="1.1").replace(
            'name = "store"', 'name = "store"\n    dependencies = ("api",)'
        ),
    )
    assert isinstance(ran.error, hx.ReloadError)
    assert "Dependency cycle detected: " in ran.last_line
    assert "The running versions are unchanged." in ran.last_line
    assert serving(kernel) == {"store": "1.0", "api": "1.0"}


def test_renaming_a_plugin_in_its_cell_is_refused(ip):
    ok_ran = run(ip, cell(""), cell_id="cell-1")
    assert ok_ran.error is None, ok_ran.shown
    ran = run(ip, cell("").replace('name = "api"', 'name = "api2"'), cell_id="cell-1")
    assert isinstance(ran.error, hx.ReloadError)
    assert "no longer defines 'api'" in ran.last_line
    assert "renaming or removing a plugin is not a reload" in ran.last_line
    assert ip.user_ns["helix"].names == ["store", "api"]


def test_a_cell_without_plugin_classes_says_what_a_plugin_cell_is(ip):
    ran = run(ip, "%%helix plugin\nx = 1")
    assert isinstance(ran.error, hx.RegistryError)
    assert ran.last_line.startswith("RegistryError: cell [")
    assert "defines no Plugin subclass with a `name`" in ran.last_line


def test_plugin_prints_show_in_the_cell_that_caused_them(ip):
    ok(ip, "import helixlab as hx")
    ran = ok(
        ip,
        "%%helix plugin\nclass Loud(hx.Plugin):\n    name = 'loud'\n"
        "    async def start(self, ctx):\n        print('loud is up')",
    )
    assert "loud is up" in ran.stdout


# -- %%helix config -----------------------------------------------------------------------

LIMITER = """\
%%helix plugin
import pydantic

class LimitConfig(pydantic.BaseModel):
    rate: int = 1
    burst: int = 1

class Limiter(hx.Plugin):
    name = "limiter"
    config_model = LimitConfig
    def init(self, ctx, config):
        self.config = config
"""


def test_a_config_cell_configures_and_reloads_a_running_plugin(ip):
    ok(ip, "import helixlab as hx")
    ok(ip, LIMITER)
    ran = ok(ip, "%%helix config\nplugins:\n  limiter:\n    config:\n      rate: 10\n")
    assert "reloaded limiter: 1 plugin(s)" in ran.stdout
    assert ip.user_ns["helix"].get("limiter").config.rate == 10


def test_a_config_cell_before_the_plugin_exists_reports_what_it_configured(ip):
    ran = ok(ip, "%%helix config\nplugins:\n  custom-logger:\n    priority: 5\n")
    assert "configured: custom-logger" in ran.stdout


def test_config_cell_errors_match_a_files_with_lines_counted_from_the_cell(ip, tmp_path):
    ok(ip, "import helixlab as hx")
    ok(ip, LIMITER)
    yaml_text = "plugins:\n  limiter:\n    config:\n      rate: fast\n      burst: -x\n"
    path = tmp_path / "plugins.yaml"
    path.write_text(yaml_text)
    with pytest.raises(hx.ConfigError) as from_file:
        ip.user_ns["helix"].apply_config(path)

    ran = run(ip, "%%helix config\n" + yaml_text)
    assert isinstance(ran.error, hx.ConfigError)
    assert "helixlab/" not in ran.stdout
    label = f"cell [{ran.result.execution_count}]"
    file_problems = [(p.line, p.plugin, p.path, p.message) for p in from_file.value.problems]
    cell_problems = [(p.line, p.plugin, p.path, p.message) for p in ran.error.problems]
    assert len(cell_problems) == 2
    assert cell_problems == [(line + 1, *rest) for line, *rest in file_problems]
    assert all(p.source == label for p in ran.error.problems)
    assert f"{label}:5: limiter: config.rate:" in str(ran.error)
    assert ip.user_ns["helix"].get("limiter").config.rate == 1  # nothing changed


def test_bad_yaml_in_a_config_cell_is_a_config_error(ip):
    ran = run(ip, "%%helix config\nplugins:\n  a: [1,\n")
    assert isinstance(ran.error, hx.ConfigError)
    assert ran.last_line.startswith("ConfigError: Invalid configuration: cell [")
    assert "invalid YAML" in ran.last_line


# -- %helix autoreload -----------------------------------------------------------------


def test_autoreload_on_reloads_a_plugin_redefined_in_an_ordinary_cell(ip):
    ok(ip, "%helix autoreload on")
    ok(ip, plugins())
    kernel = ip.user_ns["helix"]
    ok(ip, "helix.register(Store); helix.register(Api); helix.load_all()")

    ran = ok(ip, plugins(store="1.1"))
    assert ran.stdout.splitlines()[-3:] == [
        "reloaded store, api: 2 plugin(s), dependencies first",
        "  1. store 1.0 -> 1.1",
        "  2. api 1.0",
    ] or ran.stdout.splitlines()[-3:] == [
        "reloaded store: 2 plugin(s), dependencies first",
        "  1. store 1.0 -> 1.1",
        "  2. api 1.0",
    ]
    assert serving(kernel) == {"store": "1.1", "api": "1.0"}


def test_autoreload_after_a_plugin_cell_reloads_only_what_changed(ip, kernel):
    ok(ip, "%helix autoreload on")
    ran = ok(ip, plugins(store="1.1"))
    assert ran.stdout.splitlines()[-3:] == [
        "reloaded store: 2 plugin(s), dependencies first",
        "  1. store 1.0 -> 1.1",
        "  2. api 1.0",
    ]
    unchanged = ok(ip, plugins(store="1.1"))
    assert "reloaded" not in unchanged.stdout
    assert kernel.reload_count("store") == 1


def test_autoreload_keeps_the_cells_last_value_and_its_failures_roll_back(ip, kernel):
    ok(ip, "%helix autoreload on")
    ran = ok(ip, plugins(store="1.1") + "Store.version\n")
    assert "'1.1'" in ran.stdout  # the final expression is still the cell's value
    failed = run(ip, plugins(store="1.2", start="raise RuntimeError('nope')"))
    assert isinstance(failed.error, hx.ReloadError)
    assert "helixlab/" not in failed.stdout
    assert serving(kernel) == {"store": "1.1", "api": "1.0"}


def test_autoreload_off_leaves_redefinitions_alone(ip, kernel):
    ok(ip, "%helix autoreload on")
    shown = plain(ip, ip.run_line_magic("helix", "autoreload off"))
    assert shown == "autoreload off"
    ran = ok(ip, plugins(store="9.9"))
    assert "reloaded" not in ran.stdout
    assert serving(kernel) == {"store": "1.0", "api": "1.0"}


def test_autoreload_ignores_classes_that_are_not_registered_plugins(ip, kernel):
    ok(ip, "%helix autoreload on")
    ran = ok(ip, "class Other(hx.Plugin):\n    name = 'other'\nclass Plain:\n    pass")
    assert ran.stdout == ""
    assert "other" not in kernel


# -- an interrupt during a slow start ----------------------------------------------------


def test_an_interrupt_during_a_slow_start_shows_one_line_and_the_old_versions_serve(ip, kernel):
    import os
    import signal
    import threading

    began, release = threading.Event(), threading.Event()
    ip.user_ns.update(began=began, release=release)
    kernel.timeouts = hx.Timeouts(start=30)

    def press() -> None:
        assert began.wait(30)
        os.kill(os.getpid(), signal.SIGINT)

    presser = threading.Thread(target=press)
    presser.start()
    slow = "began.set()\n                release.wait(30)"  # slow until the test is done
    ran = run(ip, cell("", store="1.1", start=slow))
    presser.join()
    release.set()
    assert isinstance(ran.error, hx.ReloadInterrupted)
    lines = [line for line in plain_text(ran.shown).splitlines() if line.strip()]
    assert lines == [
        "ReloadInterrupted: Reload of store interrupted: rolled back, the old versions keep "
        "serving."
    ]
    assert serving(kernel) == {"store": "1.0", "api": "1.0"}


def test_an_interrupt_after_the_swap_leaves_the_cells_names_to_the_new_versions(ip, kernel):
    """Interrupted while the old version stops (after the swap): the new version serves,
    so the names the cell bound stay (the new instances call them), and it is no refusal."""
    import os
    import signal
    import threading

    began, release = threading.Event(), threading.Event()
    ip.user_ns.update(began=began, release=release)
    kernel.timeouts = hx.Timeouts(stop=30)
    slow_stop = textwrap.dedent(
        """\
        %%helix plugin
        import helixlab as hx

        def word():
            return "{word}"

        class Slow(hx.Plugin):
            name = "slow"
            version = "{version}"
            def stop(self, ctx):
                if "{version}" == "1":
                    began.set()
                    release.wait(30)
        """
    )
    ok(ip, slow_stop.format(word="old", version="1"))

    def press() -> None:
        assert began.wait(30)
        os.kill(os.getpid(), signal.SIGINT)

    presser = threading.Thread(target=press)
    presser.start()
    ran = run(ip, slow_stop.format(word="new", version="2"))
    presser.join()
    release.set()
    assert isinstance(ran.error, hx.ReloadInterrupted) and not ran.error.rolled_back, ran.shown
    assert kernel.get("slow").version == "2"
    assert ip.user_ns["word"]() == "new"  # what the serving version was written against
