"""No secret on any surface, as a property: hypothesis puts random secret values (some with
surrounding whitespace) into random secret-named settings of every built-in plugin and of a
plugin that quotes its configuration in every error, drives failures on every path (start,
health, reload, a refused configure with a *new* secret, an upstream that quotes the
gateway's ``Authorization`` header, a key server URL with credentials that cannot be
reached) and greps every surface: HTTP bodies and headers, events, reports, errors' str and
repr (with their causes), log output (tracebacks included), specs, info rows and the
``_repr_html_`` of reports, events and the kernel."""

from __future__ import annotations

import logging
import string
from collections.abc import Iterator
from typing import Any
from urllib.parse import quote

import httpx
import pydantic
import pytest
from hypothesis import HealthCheck, Phase, given, settings
from hypothesis import strategies as st
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route

import helixlab as hx
from helixlab.kernel import mask_log_records
from helixlab.plugins import CATALOG

from test_plugins_asgi import serving

#: secret-named settings, as a user would write them (the broader rule)
SECRET_NAMES = [
    "api_key",
    "tokens",
    "api_tokens",
    "access_tokens",
    "passphrase",
    "signing_key",
    "private_key",
    "credentials",
    "client_secret",
    "db_password",
    "auth_token",
]
ALPHABET = string.ascii_letters + string.digits + "-_.~+/"


@st.composite
def secret(draw: Any, min_size: int = 10) -> str:
    core = draw(st.text(ALPHABET, min_size=min_size, max_size=min_size + 20))
    padding = draw(st.sampled_from(["", "", "\n", " ", "\t", "  \n"]))
    return f"Zq{core}{padding}"  # Zq: never a word the gateway itself writes


class LeakyConfig(hx.PluginConfig):
    model_config = pydantic.ConfigDict(extra="allow")
    material: pydantic.SecretStr | None = None  # secret by type, not by name
    fail_start: bool = False


class Leaky(hx.Plugin):
    """Quotes its whole configuration wherever it can: logs, start, health."""

    name = "leaky"
    config_model = LeakyConfig

    def _everything(self) -> str:
        values = self.config.model_dump()
        if self.config.material is not None:
            values["material"] = self.config.material.get_secret_value()
        return repr(values)

    def init(self, ctx: hx.Context, config: LeakyConfig) -> None:
        self.config = config
        ctx.logger.info("leaky configured with %s", self._everything())

    def start(self, ctx: hx.Context) -> None:
        if self.config.fail_start:
            raise ConnectionError(f"cannot log in with {self._everything()}")

    def health_check(self, ctx: hx.Context) -> None:
        try:
            raise PermissionError(f"refused: {self._everything()}")
        except PermissionError:
            ctx.logger.exception("leaky health failed")
            raise


class LeakyAtStart(Leaky):
    """Fails its first start, quoting its configuration."""

    name = "leaky-start"


def quoting_upstream() -> Starlette:
    """An upstream that refuses every key, quoting the Authorization header it received."""

    async def refuse(request: Request) -> JSONResponse:
        key = request.headers.get("authorization", "")
        message = f"upstream refused key {key}"
        return JSONResponse({"error": {"message": message, "type": "auth", "code": "bad"}}, 401)

    return Starlette(
        routes=[
            Route("/v1/chat/completions", refuse, methods=["POST"]),
            Route("/v1/models", refuse, methods=["GET"]),
        ]
    )


@pytest.fixture(scope="module")
def upstream() -> Iterator[str]:
    with serving(quoting_upstream()) as url:
        yield url + "/v1"


class Capture(logging.Handler):
    def __init__(self) -> None:
        super().__init__(logging.DEBUG)
        self.setFormatter(logging.Formatter("%(name)s %(message)s"))
        self.lines: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.lines.append(self.format(record))


def _dump(obj: Any) -> str:
    """Every way an object shows itself: str, repr, HTML, and an error's cause chain."""
    parts = [str(obj), repr(obj)]
    html = getattr(obj, "_repr_html_", None)
    if callable(html):
        parts.append(html())
    if isinstance(obj, BaseException):
        for name in ("report", "cause", "__cause__", "__context__"):
            inner = getattr(obj, name, None)
            if inner is not None and inner is not obj:
                parts.append(_dump(inner))
    return "\n".join(parts)


SURFACE_PLUGINS = sorted(CATALOG)


@settings(
    max_examples=12,
    deadline=None,
    suppress_health_check=list(HealthCheck),
    phases=(Phase.explicit, Phase.reuse, Phase.generate),  # each example serves a gateway
)
@given(
    provider_key=secret(),
    auth_password=secret(),
    limiter_keys=st.lists(secret(), min_size=1, max_size=3),
    leaky_names=st.lists(st.sampled_from(SECRET_NAMES), min_size=2, max_size=4, unique=True),
    leaky_values=st.lists(secret(), min_size=4, max_size=4),
    material=secret(),
    marked=secret(),
    db_password=secret(),
    new_secret=secret(),
    new_provider_key=secret(),
    refused=st.tuples(st.sampled_from(SECRET_NAMES), secret()),
    refused_plugin=st.sampled_from(["custom-logger", "request-logger", "builtin-tools"]),
    start_secret=st.tuples(st.sampled_from(SECRET_NAMES), secret()),
)
def test_no_secret_on_any_surface(
    upstream: str,
    provider_key: str,
    auth_password: str,
    limiter_keys: list[str],
    leaky_names: list[str],
    leaky_values: list[str],
    material: str,
    marked: str,
    db_password: str,
    new_secret: str,
    new_provider_key: str,
    refused: tuple[str, str],
    refused_plugin: str,
    start_secret: tuple[str, str],
) -> None:
    mask_log_records()  # as a serving process does (helixlab serve, %load_ext helixlab)
    capture = Capture()
    root = logging.getLogger()
    root.addHandler(capture)
    old_level = root.level
    root.setLevel(logging.DEBUG)
    shown: list[str] = []
    leaky = {name: value for name, value in zip(leaky_names, leaky_values, strict=False)}
    leaky[leaky_names[-1]] = [leaky_values[-1], {"nested": leaky_values[-2]}]  # list, nested
    leaky.update(
        material=material,
        webhook={"value": f"https://hooks.example/{marked.strip()}", "secret": True},
        database_url=f"postgres://app:{db_password.strip()}@db.internal:5432/app",
    )
    password = quote(auth_password.strip(), safe="")
    jwks = f"http://admin:{password}@127.0.0.1:9/jwks.json"  # nothing listens there
    secrets = [
        provider_key,
        auth_password,
        password,
        *limiter_keys,
        *leaky_values,
        material,
        marked,
    ]
    secrets += [db_password, new_secret, new_provider_key, refused[1], start_secret[1]]
    try:
        kernel = hx.Kernel(timeouts=hx.Timeouts(start=5, health=3, drain=1))
        try:
            kernel.register(Leaky)
            kernel.register(LeakyAtStart)
            kernel.apply_config(
                {
                    "plugins": {
                        "leaky": {"config": leaky},
                        "leaky-start": {
                            "config": {start_secret[0]: start_secret[1], "fail_start": True}
                        },
                        "custom-provider": {
                            "config": {
                                "api_url": upstream,
                                "api_key": provider_key,
                                "retry_count": 0,
                                "models": ["m1"],
                            }
                        },
                        "rate-limiter": {"config": {"api_keys": limiter_keys, "burst_size": 50}},
                        "custom-auth": {
                            "config": {"public_key_url": jwks, "skip_paths": ["/health", "/v1"]}
                        },
                        "custom-logger": {"config": {"output": "memory", "log_level": "debug"}},
                        "request-logger": {"config": {"log_headers": ["authorization"]}},
                        "builtin-tools": {},
                    }
                }
            )
            loaded = kernel.load_all()
            assert "leaky-start" in loaded.failed  # a start failure, quoting its secret
            shown.append(_dump(loaded))
            shown.extend(_dump(error) for error in loaded.failed.values())
            server = kernel.serve(health_detail="public")
            bearer = {"Authorization": f"Bearer {limiter_keys[0].strip()}"}
            chat = {"model": "m1", "messages": [{"role": "user", "content": "hi"}]}
            with httpx.Client(base_url=server.url, timeout=20) as http:
                responses = [
                    http.get("/health"),
                    http.get("/health", headers=bearer),
                    http.get("/v1/plugins", headers=bearer),
                    http.get("/v1/models", headers=bearer),
                    http.post("/v1/chat/completions", json=chat, headers=bearer),
                    http.post(
                        "/v1/chat/completions", json={**chat, "stream": True}, headers=bearer
                    ),
                ]
                # a reload that fails in start, with a new secret in the new configuration
                with pytest.raises(hx.ReloadError) as failed:
                    kernel.configure("leaky", {"password": new_secret, "fail_start": True})
                shown.append(_dump(failed.value))
                # a new provider key (whitespace and all) that the upstream quotes back
                shown.append(
                    _dump(kernel.configure("custom-provider", {"api_key": new_provider_key}))
                )
                # a configure refused by validation, quoting nothing it was given
                with pytest.raises(hx.ConfigError) as refusal:
                    kernel.configure(refused_plugin, {refused[0]: [refused[1]]})
                shown.append(_dump(refusal.value))
                responses += [
                    http.get("/health"),
                    http.post("/v1/chat/completions", json=chat, headers=bearer),
                    http.get("/v1/plugins", headers=bearer),
                ]
            for response in responses:
                shown.append(response.text)
                shown.append("\n".join(f"{k}: {v}" for k, v in response.headers.items()))
            shown.append(_dump(kernel.health()))
            for status in kernel.health().values():
                shown.append(_dump(status))
            for event in kernel.events():
                shown.append(_dump(event))
            shown.append(_dump(kernel.events()))
            for row in kernel.info():
                shown.append(_dump(row))
            shown.extend(repr(kernel.entry(name).spec) for name in kernel.names)
            shown.append(repr(kernel) + kernel._repr_html_())
            shown.extend(map(str, kernel.get("custom-logger")._lines))
            shown.extend(map(str, getattr(kernel.get("request-logger"), "entries", [])))
            server.stop()
        finally:
            kernel.close()
        shown.extend(capture.lines)
    finally:
        root.removeHandler(capture)
        root.setLevel(old_level)
    text = "\n".join(shown)
    assert "***" in text
    leaks = sorted(
        {form for s in secrets for form in {s, s.strip()} if len(form) >= 4 and form in text}
    )
    where = [text[max(0, text.index(f) - 300) : text.index(f) + 60] for f in leaks]
    assert leaks == [], f"secrets shown: {leaks} in {where}"
