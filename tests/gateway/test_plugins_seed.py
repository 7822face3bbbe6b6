"""The built-in plugins together: the course's configs/plugins.yaml as written, every
built-in with an empty config, and secrets kept out of every display, event and log."""

from __future__ import annotations

import logging

import pytest

import helixlab as hx
from helixlab.plugins import CATALOG

from conftest import SEED


def test_the_course_yaml_loads_as_written(kernel, capsys):
    kernel.apply_config(SEED)
    assert kernel.load_all().order == ["custom-provider", "rate-limiter", "custom-logger"]
    provider = kernel.get("custom-provider")
    assert provider.config.timeout == 30 and provider.config.retry_count == 3
    assert provider.base_url == "https://api.custom.ai"
    limiter = kernel.get("rate-limiter")
    assert (limiter.store.requests_per_minute, limiter.store.capacity) == (100, 20)
    logger = kernel.get("custom-logger")
    assert (logger.config.log_level, logger.config.format) == ("debug", "json")
    assert '"message": "Custom logger plugin started"' in capsys.readouterr().out
    # custom-logger depends on rate-limiter there: reloading the limiter cascades to it
    assert kernel.reload("rate-limiter").order == ["rate-limiter", "custom-logger"]


def test_every_builtin_loads_with_an_empty_config(kernel):
    kernel.apply_config({"plugins": {name: {} for name in CATALOG}})
    report = kernel.load_all()
    assert sorted(report.order) == sorted(CATALOG) and not report.failed
    kinds = {row.name: row.kind for row in kernel.info()}
    assert kinds == {
        "builtin-tools": "tool",
        "custom-auth": "middleware",
        "custom-logger": "plugin",
        "custom-provider": "provider",
        "rate-limiter": "middleware",
        "request-logger": "middleware",
    }
    health = kernel.health()
    assert health["custom-auth"].healthy is False  # no key: it says so, and refuses all
    assert all(status.healthy for name, status in health.items() if name != "custom-auth")


def test_secrets_never_appear_in_displays_events_or_logs(kernel, caplog):
    api_key, secret = "sk-provider-secret-1234", "auth-secret-value-that-is-32-bytes!!"
    caplog.set_level(logging.DEBUG)
    kernel.apply_config(
        {
            "plugins": {
                "custom-logger": {"config": {"output": "memory", "log_level": "debug"}},
                "custom-provider": {"config": {"api_key": api_key, "retry_backoff": 0}},
                "custom-auth": {"config": {"secret": secret}},
                "request-logger": {"config": {"log_headers": ["authorization"]}},
            }
        }
    )
    kernel.load_all()
    kernel.health()
    kernel.reload("custom-logger")
    kernel.configure("custom-auth", {"allowed_roles": ["admin"]})
    with pytest.raises(hx.ConfigError) as refused:
        kernel.configure("custom-provider", {"api_key": api_key, "retry_count": -1})
    rows = {row.name: row.config for row in kernel.info()}
    assert rows["custom-provider"]["api_key"] == "***" and rows["custom-auth"]["secret"] == "***"
    shown = "\n".join(
        [
            repr(rows),
            repr(kernel.info()),
            repr(kernel.events()),
            "\n".join(kernel.get("custom-logger").lines),
            caplog.text,
            str(refused.value),
            repr(kernel.get("custom-provider").config),
            repr(kernel.get("custom-auth").config),
        ]
    )
    assert api_key not in shown and secret not in shown
