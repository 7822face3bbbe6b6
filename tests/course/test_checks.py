"""The lab self-checks of labs 1 and 4, driven through a real Kernel and a namespace dict.

Each lab is exercised twice: with plugins written like the lab's solution (every check
passes) and with plugins written like its starter code (the right checks fail, each with a
hint that says what is missing and where to look). A few learner mistakes that the
starter does not make are checked too: the checks probe behaviour, so they must catch them.
"""

from __future__ import annotations

import json
from typing import Literal

import pytest
from pydantic import field_validator

import helixlab as hx
from helixlab.checks import run_check

LEVELS = ("debug", "info", "warning", "error")


@pytest.fixture
def helix(make_kernel) -> hx.Kernel:
    return make_kernel(timeouts=hx.Timeouts())  # a learner's kernel: the default timeouts


def results(report) -> dict[str, tuple[bool, str]]:
    return {r.description: (r.passed, r.hint) for r in report.results}


def failing(report) -> dict[str, str]:
    return {r.description: r.hint for r in report.results if not r.passed}


# -- lab 1 ----------------------------------------------------------------------------


class SolutionLoggerConfig(hx.PluginConfig):
    level: str = "info"
    format: Literal["text", "json"] = "text"

    @field_validator("level")
    @classmethod
    def known_level(cls, value: str) -> str:
        if value not in LEVELS:
            raise ValueError(f"must be one of {', '.join(LEVELS)}")
        return value


class SolutionLogger(hx.Plugin):
    name = "my-logger"
    version = "1.0.0"
    config_model = SolutionLoggerConfig

    def init(self, ctx, config):
        self.config = config
        self.lines: list[str] = []

    def log(self, level: str, message: str) -> None:
        if LEVELS.index(level) < LEVELS.index(self.config.level):
            return
        if self.config.format == "json":
            self.lines.append(json.dumps({"level": level, "message": message}))
        else:
            self.lines.append(f"{level.upper()} {message}")

    def health_check(self, ctx):
        if self.lines is None:
            return "not initialized"


class StarterLoggerConfig(hx.PluginConfig):
    pass  # the gap: no fields


class StarterLogger(hx.Plugin):
    name = "my-logger"
    version = "1.0.0"
    config_model = StarterLoggerConfig

    def init(self, ctx, config):
        self.config = config
        self.lines: list[str] = []

    def log(self, level: str, message: str) -> None:
        pass  # the gap

    def health_check(self, ctx):
        if self.lines is None:
            return "not initialized"


LAB1 = [
    "my-logger is registered and active in helix",
    "its config accepts level: warning and format: json",
    "a bad level is refused by helix.configure(...) with ConfigError; the old config stays",
    "with the default config, debug is dropped and info, warning and error are recorded",
    "format json records one parseable JSON object per message, with level and message",
    "my-logger is healthy",
]


def loaded(kernel: hx.Kernel, *classes: type[hx.Plugin]) -> hx.Kernel:
    for cls in classes:
        kernel.register(cls)
    kernel.load_all()
    return kernel


def test_lab1_solution_passes_every_check(helix):
    loaded(helix, SolutionLogger)
    report = run_check("lab1", helix, {"helix": helix, "MyLogger": SolutionLogger})
    assert [r.description for r in report.results] == LAB1
    assert report.passed, str(report)
    assert run_check("lab1", helix, {}, strict=True).passed


def test_lab1_checks_leave_the_notebook_plugin_alone(helix):
    loaded(helix, SolutionLogger)
    before = helix.get("my-logger")
    run_check("lab1", helix, {})
    assert helix.get("my-logger") is before
    assert helix.reload_count("my-logger") == 0
    assert before.lines == []


def test_lab1_starter_shows_the_gaps_with_hints(helix):
    loaded(helix, StarterLogger)
    report = run_check("lab1", helix, {})
    assert not report.passed
    got = results(report)
    assert got[LAB1[0]] == (True, "")
    assert got[LAB1[5]] == (True, "")
    hints = failing(report)
    assert set(hints) == set(LAB1[1:5])
    assert hints[LAB1[1]] == (
        "MyLoggerConfig has no `level` and `format` yet: declare them, with defaults (step 2)."
    )
    assert hints[LAB1[2]] == (
        "MyLoggerConfig has no `level` yet: declare the field, with its default (step 2)."
    )
    assert hints[LAB1[3]] == hints[LAB1[1]]
    assert hints[LAB1[4]] == hints[LAB1[1]]
    text = str(report)
    assert text.startswith("lab1: a logging plugin with validated configuration — 2/6 checks")
    assert "✗ its config accepts level: warning and format: json\n    hint: " in text


def test_lab1_strict_raises_check_failed_on_the_starter(helix):
    loaded(helix, StarterLogger)
    with pytest.raises(hx.CheckFailed, match="2/6 checks pass"):
        run_check("lab1", helix, {}, strict=True)


def test_lab1_nothing_registered_says_where_to_start(helix):
    report = run_check("lab1", helix, {})
    assert not any(r.passed for r in report.results)
    assert "Run the `%%helix plugin` cell of step 1" in failing(report)[LAB1[0]]


def test_lab1_with_fields_but_no_log_points_at_log(helix):
    class Config(SolutionLoggerConfig):
        pass

    class HalfLogger(StarterLogger):
        config_model = Config

    loaded(helix, HalfLogger)
    hints = failing(run_check("lab1", helix, {}))
    assert set(hints) == {LAB1[3], LAB1[4]}
    assert "with the default config (level info), and none of them was recorded;" in hints[LAB1[3]]
    assert "step 3" in hints[LAB1[3]] and "one(s)" not in hints[LAB1[3]]
    assert "with format json, and no line was recorded." in hints[LAB1[4]]


def test_lab1_unvalidated_level_is_caught(helix):
    class LooseConfig(hx.PluginConfig):
        level: str = "info"
        format: Literal["text", "json"] = "text"

    class Loose(SolutionLogger):
        config_model = LooseConfig

    loaded(helix, Loose)
    hints = failing(run_check("lab1", helix, {}))
    assert list(hints) == [LAB1[2]]
    assert "{'level': 'verbose'}) was accepted" in hints[LAB1[2]]


def test_lab1_hand_made_json_is_caught(helix):
    class Handmade(SolutionLogger):
        def log(self, level, message):
            if LEVELS.index(level) >= LEVELS.index(self.config.level):
                if self.config.format == "json":
                    self.lines.append(f'{{"level": "{level}", "message": "{message}"}}')
                else:
                    self.lines.append(f"{level.upper()} {message}")

    loaded(helix, Handmade)
    hints = failing(run_check("lab1", helix, {}))
    assert list(hints) == [LAB1[4]]
    assert "json.dumps()" in hints[LAB1[4]] or "one line of text" in hints[LAB1[4]]


def test_lab1_failed_plugin_shows_its_error(helix):
    class Broken(SolutionLogger):
        def start(self, ctx):
            raise RuntimeError("no disk")

    loaded(helix, Broken)
    hints = failing(run_check("lab1", helix, {}))
    assert "my-logger is failed (start: RuntimeError: no disk)" in hints[LAB1[0]]
    assert "did not start: " in hints[LAB1[1]]
    assert "unhealthy" in hints[LAB1[5]]


def test_lab1_unhealthy_plugin(helix):
    class Sick(SolutionLogger):
        def health_check(self, ctx):
            return "disk full"

    loaded(helix, Sick)
    hints = failing(run_check("lab1", helix, {}))
    assert hints == {
        LAB1[5]: "my-logger reports my-logger: unhealthy (disk full); look at health_check()."
    }


# -- lab 4 ----------------------------------------------------------------------------


class Store(hx.Plugin):
    name = "counter-store"
    version = "1.0.0"

    def init(self, ctx, config):
        self.counts: dict[str, int] = {}

    def incr(self, page: str) -> int:
        self.counts[page] = self.counts.get(page, 0) + 1
        return self.counts[page]

    def count(self, page: str) -> int:
        return self.counts.get(page, 0)

    def export_state(self):
        return dict(self.counts)

    def import_state(self, state):
        self.counts = dict(state or {})


class Service(hx.Plugin):
    name = "counter-service"
    version = "1.0.0"
    dependencies = ("counter-store>=1.0",)

    def start(self, ctx):
        self.store = ctx.get("counter-store")

    def hit(self, page: str) -> int:
        if self.store is None:
            return 0
        return self.store.incr(page)


class Api(hx.Plugin):
    name = "counter-api"
    version = "1.0.0"
    dependencies = ("counter-service",)

    def start(self, ctx):
        self.service = ctx.get("counter-service")

    def handle(self, page: str) -> dict:
        return {"page": page, "hits": self.service.hit(page)}


class StarterStore(Store):
    def export_state(self):
        return None  # the gap

    def import_state(self, state):
        pass  # the gap


class StarterService(Service):
    def start(self, ctx):
        self.store = None  # the gap


LAB4 = [
    "counter-store, counter-service and counter-api are active in helix",
    "reloading counter-store cascades to counter-service, then counter-api (report.order)",
    "the counts survive a reload of counter-store (export_state / import_state)",
    "a failing new version rolls back, and the old counter-store keeps its counts",
    "after a reload, counter-service and counter-api use the new counter-store",
]


def test_lab4_solution_passes_every_check(helix):
    loaded(helix, Store, Service, Api)
    report = run_check("lab4", helix, {"helix": helix})
    assert [r.description for r in report.results] == LAB4
    assert report.passed, str(report)
    assert run_check("lab4", helix, {}, strict=True).passed


def test_lab4_checks_leave_the_notebook_plugins_alone(helix):
    loaded(helix, Store, Service, Api)
    helix.get("counter-api").handle("/home")
    store = helix.get("counter-store")
    run_check("lab4", helix, {})
    assert helix.get("counter-store") is store
    assert store.counts == {"/home": 1}
    assert [helix.reload_count(n) for n in ("counter-store", "counter-api")] == [0, 0]


def test_lab4_starter_shows_the_gaps_with_hints(helix):
    loaded(helix, StarterStore, StarterService, Api)
    report = run_check("lab4", helix, {})
    got = results(report)
    assert [got[d][0] for d in LAB4] == [True, True, False, True, False]
    hints = failing(report)
    assert "the new instance counts {'/home': 0, '/about': 0}" in hints[LAB4[2]]
    assert "export_state() must return the counts" in hints[LAB4[2]]
    assert 'ctx.get("counter-store")' in hints[LAB4[4]] and "step 3" in hints[LAB4[4]]
    assert str(report).startswith("lab4: hot reload with dependencies — 3/5 checks pass")
    with pytest.raises(hx.CheckFailed, match="3/5 checks pass"):
        run_check("lab4", helix, {}, strict=True)


def test_lab4_missing_plugins(helix):
    loaded(helix, Store)
    report = run_check("lab4", helix, {})
    assert not any(r.passed for r in report.results)
    assert "'counter-service', 'counter-api'" in failing(report)[LAB4[0]]


def test_lab4_export_that_moves_the_counts_is_caught(helix):
    class Mover(Store):
        def export_state(self):
            counts, self.counts = self.counts, {}
            return counts

    loaded(helix, Mover, Service, Api)
    hints = failing(run_check("lab4", helix, {}))
    assert list(hints) == [LAB4[3]]
    assert "counted 2 visits of /home before the failed reload and 0 after" in hints[LAB4[3]]


def test_lab4_service_bound_to_the_notebook_kernel_is_caught(helix):
    class Global(Service):
        def start(self, ctx):
            self.store = helix.get("counter-store")  # not ctx.get: the live one, not the new

    loaded(helix, Store, Global, Api)
    hints = failing(run_check("lab4", helix, {}))
    assert list(hints) == [LAB4[4]]


def test_lab4_missing_dependency_declaration_breaks_the_cascade(helix):
    class Loose(Api):
        dependencies = ()

        def start(self, ctx):
            self.service = None

        def handle(self, page):
            return {"page": page, "hits": 0}

    loaded(helix, Store, Service, Loose)
    hints = failing(run_check("lab4", helix, {}))
    assert "the reload touched counter-store -> counter-service" in hints[LAB4[1]]
    assert LAB4[4] in hints


def test_lab4_a_stopped_plugin(helix):
    loaded(helix, Store, Service, Api)
    helix.unload("counter-service")
    hints = failing(run_check("lab4", helix, {}))
    assert list(hints) == [LAB4[0]]
    assert "counter-service is stopped; counter-api is stopped" in hints[LAB4[0]]
