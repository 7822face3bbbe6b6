"""The cases issue 11 found, one test each: one masking step at every boundary, knowing the
secrets of the configuration being applied, list and nested values, values with surrounding
whitespace, the broader name rule, SecretStr fields and the explicit ``secret: true``."""

from __future__ import annotations

import logging
from typing import Any

import httpx
import pydantic
import pytest

import helixlab as hx
from helixlab.kernel._config import parse_config
from helixlab.kernel._secrets import is_secret_key, redact, secret_values

from _gateway_support import provider_plugin
from test_plugins_asgi import echo_app, serving


@pytest.mark.parametrize(
    "key",
    ["tokens", "api_tokens", "access_tokens", "passphrase", "signing_key", "private_key",
     "credentials", "refresh_token", "session_cookie", "AWS_SECRET_ACCESS_KEY", "apiTokens",
     "admin_key"],
)  # fmt: skip
def test_the_broader_name_rule(key: str) -> None:
    assert is_secret_key(key)


@pytest.mark.parametrize(
    "key",
    ["max_tokens", "max_completion_tokens", "prompt_tokens", "total_tokens", "tokens_per_minute",
     "tokenizer", "database_url", "url", "keyboard", "monkey"],
)  # fmt: skip
def test_counting_tokens_is_not_holding_one(key: str) -> None:
    assert not is_secret_key(key)


def test_credentials_in_urls_show_without_their_password() -> None:
    config = {
        "database_url": "postgres://app:pw-Zq81/x@db:5432/app",
        "hook": "https://h/x?token=tk-9911",
    }
    shown = redact(config)
    assert shown["database_url"] == "postgres://app:***@db:5432/app"
    assert "tk-9911" not in shown["hook"] and "https://h/x?token=" in shown["hook"]
    assert {"pw-Zq81/x", "tk-9911"} <= secret_values(config)


def test_secret_str_fields_and_the_explicit_marker_are_secret_whatever_their_name() -> None:
    class Model(pydantic.BaseModel):
        material: pydantic.SecretStr
        plain: str = "x"

    doc = parse_config(
        "plugins:\n  p:\n    config:\n      material: mat-Zq1234\n"
        "      webhook: {value: https://hooks.example/T0/B0/Zq5678, secret: true}\n"
    )
    spec = doc.plugins["p"]
    assert spec.config["webhook"] == "https://hooks.example/T0/B0/Zq5678"  # unwrapped
    assert spec.secrets == {("webhook",)}
    found = secret_values(spec.config, model=Model, marked=spec.secrets)
    assert found == {"mat-Zq1234", "https://hooks.example/T0/B0/Zq5678"}
    assert redact(spec.config, model=Model, marked=spec.secrets) == {
        "material": "***",
        "webhook": "***",
    }
    assert "Zq5678" not in repr(spec)


def test_whitespace_lists_and_nested_values_are_masked_in_free_text() -> None:
    from helixlab.kernel._secrets import SecretBook, mask

    book = SecretBook()
    book.learn(secret_values({"api_keys": ["sk-live-Zq0001\n", {"inner": " sk-live-Zq0002 "}]}))
    text = "upstream refused key sk-live-Zq0001 (and 'sk-live-Zq0001\\n'), then sk-live-Zq0002"
    assert mask(text, book) == "upstream refused key *** (and '***'), then ***"


class Keyed(hx.Plugin):
    """Quotes its keys in its health detail and in its start error."""

    name = "keyed"
    config_model = dict

    def init(self, ctx: hx.Context, config: Any) -> None:
        self.config = config

    def start(self, ctx: hx.Context) -> None:
        if self.config.get("fail"):
            raise ConnectionError(f"login refused for {self.config}")

    def health_check(self, ctx: hx.Context) -> str:
        return f"upstream refused key {self.config.get('api_keys')}"


def test_a_list_of_keys_never_shows_in_health_or_its_event(kernel: hx.Kernel) -> None:
    kernel.register(Keyed)
    kernel.register(provider_plugin())
    kernel.configure("keyed", {"api_keys": ["sk-live-Zq4242", "sk-live-Zq4343"]})
    kernel.load_all()
    with kernel.serve(health_detail="public") as server:
        body = httpx.get(server.url + "/health").text
    events = "\n".join(map(repr, kernel.events()))
    assert "upstream refused key" in body
    for text in (body, events, str(kernel.health())):
        assert "sk-live-Zq" not in text


def test_a_failing_configure_never_quotes_its_new_secret(kernel: hx.Kernel, caplog) -> None:
    caplog.set_level(logging.DEBUG)
    kernel.register(Keyed)
    kernel.configure("keyed", {"password": "pw-old-Zq1111"})
    kernel.load_all()
    with pytest.raises(hx.ReloadError) as info:
        kernel.configure("keyed", {"password": "pw-new-Zq2222", "fail": True})
    error = info.value
    shown = [
        str(error),
        repr(error),
        str(error.report),
        repr(error.report),
        error.report._repr_html_(),
        str(error.cause),
        *map(repr, kernel.events()),
        *(e._repr_html_() for e in kernel.events()),
        kernel._repr_html_(),
        caplog.text,
    ]
    assert "rolled back" in str(error)
    assert [e for e in kernel.events() if e.kind == "reload_failed"]
    assert not [s for s in shown if "pw-new-Zq2222" in s or "pw-old-Zq1111" in s]


def test_a_refused_config_never_quotes_the_secret_it_refused(kernel: hx.Kernel) -> None:
    with pytest.raises(hx.ConfigError) as info:
        kernel.apply_config(
            {"plugins": {"custom-auth": {"config": {"secret": "too-short-Zq77", "leeway": "x"}}}}
        )
    assert "too-short-Zq77" not in str(info.value) + repr(info.value)


def test_a_provider_key_httpx_would_refuse_never_reaches_health_errors_or_events(
    kernel: hx.Kernel,
) -> None:
    """A line break inside the key (one the header could not carry: httpx would refuse it,
    quoting it) is a ConfigError that does not quote it; a trailing one is trimmed."""
    with pytest.raises(hx.ConfigError, match="api_key") as refused:
        kernel.apply_config({"plugins": {"custom-provider": {"config": {"api_key": "sk-Zq7\n7"}}}})
    with serving(echo_app()) as upstream:
        kernel.apply_config(
            {
                "plugins": {
                    "custom-provider": {
                        # a trailing newline: trimmed
                        "config": {"api_url": upstream + "/v1", "api_key": "sk-live-Zq9999\n"}
                    }
                }
            }
        )
        kernel.load_all()
        server = kernel.serve(health_detail="public")
        health = httpx.get(server.url + "/health")
        chat = httpx.post(
            server.url + "/v1/chat/completions",
            json={"model": "m", "messages": [{"role": "user", "content": "hi"}]},
        )
        server.stop()
    assert health.status_code == 503 and chat.status_code >= 500  # the echo app is no LLM
    changed = [e for e in kernel.events() if e.kind == "health_changed"]
    assert changed and "answered HTTP 404" in (changed[-1].error or "")
    assert "sk-Zq7" not in str(refused.value) + repr(refused.value)
    for text in (health.text, chat.text, *map(repr, kernel.events())):
        assert "sk-live-Zq9999" not in text and "sk-Zq7" not in text


@pytest.fixture
def logging_as_python_has_it() -> Any:
    """The process's log record factory set back to logging's own, restored afterwards."""
    before = logging.getLogRecordFactory()
    logging.setLogRecordFactory(logging.LogRecord)
    yield
    logging.setLogRecordFactory(before)


def test_a_kernel_leaves_logging_alone_a_serving_gateway_masks_every_record(
    logging_as_python_has_it: None, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO)
    said = logging.getLogger("tests.secrets")
    with hx.Kernel() as kernel:  # a library's object: no process-wide side effect
        kernel.register(Keyed)
        kernel.register(provider_plugin())
        kernel.configure("keyed", {"password": "pw-log-Zq6161"})
        kernel.load_all()
        assert logging.getLogRecordFactory() is logging.LogRecord
        with kernel.serve():  # what serves installs the log hook
            assert logging.getLogRecordFactory() is not logging.LogRecord
            said.warning("logged while serving: %s", "pw-log-Zq6161")
    said_lines = [r.getMessage() for r in caplog.records if r.name == said.name]
    assert said_lines == ["logged while serving: ***"]
    assert "pw-log-Zq6161" not in caplog.text


@pytest.mark.parametrize(
    "words",
    ["refused; header Authorization: Bearer abcdefgh-1234", "key sk-live-Zq7171 refused",
     "GET https://user:pw-Zq7272@up.example/v1 failed", "basic   dXNlcjpwdy1acTczNzM="],
)  # fmt: skip
def test_an_error_body_is_masked_once_by_the_kernels_own_step(words: str) -> None:
    from helixlab.gateway import upstream_error
    from helixlab.kernel import mask

    error = upstream_error(ConnectionError(words), "p")
    sent = error.body["error"]["message"]
    assert sent == mask(f"Provider 'p' failed: ConnectionError: {words}")  # one pattern set
    assert "***" in sent and "Zq7" not in sent and "abcdefgh" not in sent
    assert error.response().body.decode().count("***") == sent.count("***")
