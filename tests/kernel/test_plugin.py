"""Tests for helixlab.kernel._plugin: the Plugin base, its kinds, checks and the context."""

from __future__ import annotations

import threading

import pytest

import helixlab as hx
from helixlab.errors import RegistryError, UndeclaredDependencyError


def test_class_attributes_have_defaults_and_a_single_dependency_becomes_a_tuple():
    class Logger(hx.Plugin):
        name = "logger"

    class Limiter(hx.Plugin):
        name = "limiter"
        dependencies = "logger>=1.0"

    assert (Logger.version, Logger.kind, Logger.reload_strategy, Logger.priority) == (
        "0.1.0",
        "plugin",
        "hot",
        0,
    )
    assert Limiter.dependencies == ("logger>=1.0",)
    assert repr(Limiter()) == "<Limiter plugin 'limiter' 0.1.0>"


def test_kinds_say_what_they_are_and_unimplemented_hooks_say_so():
    assert [k.kind for k in (hx.ProviderPlugin, hx.MiddlewarePlugin, hx.ToolPlugin)] == [
        "provider",
        "middleware",
        "tool",
    ]

    class Half(hx.ProviderPlugin):
        name = "half"

    with pytest.raises(NotImplementedError, match=r"Half.get_provider\(\)"):
        Half().get_provider()


def test_states_are_strings_in_lifecycle_order():
    assert [s.value for s in hx.PluginState] == [
        "registered",
        "initialized",
        "active",
        "stopping",
        "stopped",
        "failed",
    ]
    assert hx.PluginState.ACTIVE == "active"


@pytest.mark.parametrize(
    ("attrs", "message"),
    [
        ({"name": ""}, "has no `name`"),
        ({"version": "one"}, "invalid version 'one'"),
        ({"reload_strategy": "swap"}, "choose 'hot' or 'restart'"),
        ({"dependencies": ("logger>>1",)}, "invalid dependency 'logger>>1'"),
    ],
)
def test_bad_plugin_classes_are_refused_with_the_reason(kernel, attrs, message):
    cls = type("Bad", (hx.Plugin,), {"name": "bad", **attrs})
    with pytest.raises(RegistryError, match=message):
        kernel.register(cls)
    assert "bad" not in kernel


def test_a_class_that_is_not_a_plugin_is_refused(kernel):
    with pytest.raises(RegistryError, match="is not a Plugin subclass"):
        kernel.register(dict)


def test_plain_and_async_lifecycle_methods_both_run(kernel):
    calls = []
    loop_thread = []

    class Plain(hx.Plugin):
        name = "plain"

        def init(self, ctx, config):
            calls.append(("plain", "init", threading.current_thread().name))

        def start(self, ctx):
            calls.append(("plain", "start", threading.current_thread().name))

    class Async(hx.Plugin):
        name = "async"

        async def init(self, ctx, config):
            loop_thread.append(threading.current_thread().name)
            calls.append(("async", "init"))

        async def start(self, ctx):
            calls.append(("async", "start"))

    kernel.register(Plain)
    kernel.register(Async)
    assert kernel.load_all() == ["async", "plain"]
    assert [c[:2] for c in calls] == [
        ("async", "init"),
        ("async", "start"),
        ("plain", "init"),
        ("plain", "start"),
    ]
    # a plain method runs off the kernel loop, so a blocking plugin cannot freeze it
    assert calls[2][2] != loop_thread[0]


def test_ctx_get_returns_the_live_dependency_and_refuses_undeclared_ones(kernel, make_plugin):
    got = {}

    def init(self, ctx, config):
        got["logger"] = ctx.get("logger")
        got["deps"] = dict(ctx.dependencies)
        try:
            ctx.get("secret-store")
        except UndeclaredDependencyError as exc:
            got["error"] = exc

    kernel.register(make_plugin("logger"))
    kernel.register(make_plugin("secret-store"))
    kernel.register(make_plugin("limiter", deps=("logger",), init=init))
    kernel.load_all()

    assert got["logger"] is kernel.get("logger")
    assert got["deps"] == {"logger": kernel.get("logger")}
    error = got["error"]
    assert "'limiter' asked for 'secret-store'" in str(error)
    assert "declared: logger" in str(error)
    assert error.plugins == ("limiter", "secret-store")


def test_an_undeclared_lookup_in_init_fails_that_plugin_in_init(kernel, make_plugin):
    def init(self, ctx, config):
        ctx.get("logger")

    kernel.register(make_plugin("logger"))
    kernel.register(make_plugin("sneaky", init=init))
    report = kernel.load_all()
    assert report.order == ["logger"]
    assert report.failed["sneaky"].phase == "init"
    assert isinstance(report.failed["sneaky"].cause, UndeclaredDependencyError)
    assert kernel.state("sneaky") == hx.PluginState.FAILED


def test_context_carries_name_version_and_validated_config(kernel):
    seen = {}

    class Configured(hx.Plugin):
        name = "configured"
        version = "2.1.0"
        config_model = dict

        def init(self, ctx, config):
            seen.update(name=ctx.name, version=ctx.version, config=config, ctx=ctx.config)

    kernel.register(Configured)
    kernel.apply_config({"plugins": {"configured": {"config": {"burst": 3}}}})
    kernel.load_all()
    assert seen == {
        "name": "configured",
        "version": "2.1.0",
        "config": {"burst": 3},
        "ctx": {"burst": 3},
    }
