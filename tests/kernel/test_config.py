"""Tests for helixlab.kernel._config: parsing plugins.yaml, validation, durations, secrets."""

from __future__ import annotations

import contextlib
import math
import re
from datetime import timedelta
from pathlib import Path

import pydantic
import pytest
import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from pydantic import AliasChoices, Field, SecretStr

import helixlab as hx
from helixlab.errors import ConfigError
from helixlab.kernel._config import PluginSpec, parse_config
from helixlab.kernel._plugin import Duration, PluginConfig, parse_duration
from helixlab.kernel._registry import validate_config
from helixlab.kernel._secrets import SecretBook, is_secret_key, mask, redact, secret_values

from conftest import SEED


def problems_of(text, **kwargs):
    """(line, plugin, path) of every problem parse_config reports."""
    with pytest.raises(ConfigError) as info:
        parse_config(text, **kwargs)
    return [(p.line, p.plugin, p.path) for p in info.value.problems], info.value


# -- the seed format ---------------------------------------------------------------


def test_seed_yaml_parses_to_specs():
    doc = parse_config(SEED)

    assert list(doc.plugins) == ["custom-provider", "rate-limiter", "custom-logger"]
    provider = doc.plugins["custom-provider"]
    assert (provider.enabled, provider.priority, provider.line) == (True, 10, 3)
    assert provider.config == {
        "api_url": "https://api.custom.ai",
        "timeout": "30s",
        "retry_count": 3,
    }
    assert provider.lines == {("api_url",): 7, ("timeout",): 8, ("retry_count",): 9}
    assert doc.plugins["rate-limiter"].priority is None
    assert doc.plugins["custom-logger"].depends_on == ("rate-limiter",)
    assert doc.gateway == {}
    assert doc.source == "<config>"


def test_file_path_is_the_source_of_specs_and_errors(tmp_path: Path):
    path = tmp_path / "plugins.yaml"
    path.write_text(SEED)
    assert parse_config(path).plugins["rate-limiter"].source == str(path)
    assert parse_config(str(path)).source == str(path)

    path.write_text("plugins:\n  a:\n    enabeld: true\n")
    _, err = problems_of(path)
    assert f"{path}:3: a: enabeld: unknown key" in str(err)


def test_missing_file_is_a_config_error(tmp_path: Path):
    _, err = problems_of(tmp_path / "nope.yaml")
    assert str(err).startswith(f"Invalid configuration: {tmp_path / 'nope.yaml'}: cannot read")
    _, err = problems_of(str(tmp_path / "nope.yaml"))
    assert "cannot read the configuration file" in str(err)


def test_empty_entry_and_null_sections_mean_defaults():
    doc = parse_config("plugins:\n  a:\n  b:\n    config:\n    depends_on:\ngateway:\n")
    assert doc.plugins["a"] == PluginSpec("a", line=2)
    assert doc.plugins["b"].config == {} and doc.plugins["b"].depends_on == ()


def test_gateway_is_passed_through_raw_with_lines():
    doc = parse_config("plugins: {}\ngateway:\n  port: 8080\n  cors: [a, b]\n")
    assert doc.gateway == {"port": 8080, "cors": ["a", "b"]}
    assert doc.gateway_lines[("port",)] == 3


def test_version_specifiers_in_depends_on_are_kept():
    doc = parse_config('plugins:\n  a:\n    depends_on: [b, "custom-logger>=1.0"]\n')
    assert doc.plugins["a"].depends_on == ("b", "custom-logger>=1.0")


def test_mapping_input_is_accepted_and_checked():
    doc = parse_config({"plugins": {"a": {"priority": 2, "config": {"x": [1]}}}})
    assert doc.plugins["a"].priority == 2 and doc.plugins["a"].config == {"x": [1]}

    found, _ = problems_of({"plugins": {"a": {"enabled": "no"}}, "extra": 1})
    assert found == [(None, "a", "enabled"), (None, None, "extra")]


def test_anchors_and_merge_keys_work():
    text = """\
plugins:
  a: &base
    enabled: false
    priority: 3
    config: {shared: &s [1, 2]}
  b:
    <<: *base
    priority: 5
    config: {again: *s}
"""
    b = parse_config(text).plugins["b"]
    assert (b.enabled, b.priority, b.config) == (False, 5, {"again": [1, 2]})


# -- problems: all of them, located --------------------------------------------------


def test_three_mistakes_give_three_located_problems():
    text = """\
plugins:
  rate-limiter:
    enabled: maybe
    config:
      requests_per_minute: ${RPM}
  custom-logger:
    depends_on: rate-limiter
"""
    found, err = problems_of(text, source="configs/plugins.yaml", env={})
    assert found == [
        (3, "rate-limiter", "enabled"),
        (5, "rate-limiter", "config.requests_per_minute"),
        (7, "custom-logger", "depends_on"),
    ]
    assert "3 problems in configs/plugins.yaml" in str(err)
    assert "configs/plugins.yaml:5: rate-limiter: config.requests_per_minute:" in str(err)


@pytest.mark.parametrize(
    ("text", "line", "needle"),
    [
        ("plugins:\n  a:\n    enabled: true\n   priority: 1\n", 4, "invalid YAML"),
        ("plugins:\n  a:\n\tenabled: true\n", 3, "spaces, not tabs"),
        ("plugins:\n  a: [1, 2\n", 2, "invalid YAML"),  # where the bracket opens
        ("plugins:\n  a: b: c\n", 2, "mapping values are not allowed"),
        ("plugins: {}\n---\nplugins: {}\n", 2, "single document"),
        ("plugins:\n  a: \x07\n", 2, "not allowed"),
    ],
)
def test_malformed_yaml_reports_its_line(text, line, needle):
    found, err = problems_of(text)
    assert found[0][0] == line
    assert needle in str(err)


def test_unknown_keys_name_the_valid_choices():
    found, err = problems_of("plugin:\n  a: {}\n")
    assert found == [(1, None, "plugin"), (1, None, "")]
    expected = "unknown key 'plugin' (did you mean 'plugins'?); valid keys are: fleet, gateway, "
    assert expected + "plugin_dirs, plugins" in str(err)

    _, err = problems_of("plugins:\n  a:\n    depends: [b]\n")
    assert "valid keys are: config, depends_on, enabled, priority, required, verify" in str(err)
    assert "did you mean 'depends_on'" in str(err)


@pytest.mark.parametrize(
    ("text", "path", "needle"),
    [
        ("plugins:\n  a:\n    enabled: 'yes please'\n", "enabled", "true or false"),
        ("plugins:\n  a:\n    priority: high\n", "priority", "must be an integer"),
        ("plugins:\n  a:\n    priority: true\n", "priority", "not true"),
        ("plugins:\n  a:\n    depends_on: b\n", "depends_on", "must be a list"),
        ("plugins:\n  a:\n    depends_on: [1]\n", "depends_on.0", "not the number 1"),
        ("plugins:\n  a:\n    depends_on: ['b >= >=']\n", "depends_on.0", "invalid dependency"),
        ("plugins:\n  a:\n    config: [1, 2]\n", "config", "must be a mapping"),
        ("plugins:\n  a: 3\n", "", "must be a mapping"),
    ],
)
def test_wrong_types_are_reported_at_their_key(text, path, needle):
    found, err = problems_of(text)
    assert found == [(3 if path else 2, "a", path)]
    assert needle in str(err)


@pytest.mark.parametrize(
    ("text", "needle"),
    [
        ("", "empty"),
        ("- a\n", "must be a mapping with a 'plugins' key"),
        ("gateway: {}\n", "'plugins' mapping is missing"),
        ("plugins: [a]\n", "mapping of plugin name"),
        ("plugins:\n  '': {}\n", "non-empty strings"),
    ],
)
def test_document_shape_problems(text, needle):
    _, err = problems_of(text)
    assert needle in str(err)


def test_duplicate_keys_are_problems():
    text = "plugins:\n  a:\n    config:\n      x: 1\n      x: 2\n  a: {}\n"
    found, err = problems_of(text)
    assert found == [(5, "a", "config.x"), (6, None, "plugins.a")]
    assert "first at line 4" in str(err)


def test_unsafe_tags_and_recursive_aliases_are_problems_not_crashes():
    text = "plugins:\n  a:\n    config:\n      x: !!python/object/apply:os.system [ls]\n"
    _, err = problems_of(text + "      y: !!python/name:os.system ''\n")
    assert "4: a: config.x: unsupported tag '!!python/object/apply:os.system'" in str(err)
    assert "5: a: config.y: unsupported tag '!!python/name:os.system'" in str(err)
    found, _ = problems_of("plugins:\n  a:\n    config: &c {x: *c}\n")
    assert found == [(3, "a", "config.x")]


def test_line_offset_shifts_every_line():
    doc = parse_config(SEED, line_offset=10)
    assert doc.plugins["custom-provider"].line == 13
    assert doc.plugins["custom-provider"].lines[("timeout",)] == 18

    found, _ = problems_of("plugins:\n  a:\n    enabled: 3\n", line_offset=1)
    assert found == [(4, "a", "enabled")]
    found, _ = problems_of("plugins:\n\ta: {}\n", line_offset=1)
    assert found[0][0] == 3


# -- environment variables -----------------------------------------------------------


def test_env_vars_and_defaults_are_substituted():
    text = """\
plugins:
  p:
    enabled: ${P_ENABLED:-true}
    priority: ${P_PRIORITY}
    config:
      api_url: "https://${HOST}/v1"
      region: ${REGION:-eu-west-1}
      empty: ${EMPTY:-fallback}
      literal: $${HOST}
"""
    env = {"HOST": "api.example.com", "P_PRIORITY": "7", "P_ENABLED": "", "EMPTY": ""}
    spec = parse_config(text, env=env).plugins["p"]
    assert spec.enabled is True and spec.priority == 7
    assert spec.config == {
        "api_url": "https://api.example.com/v1",
        "region": "eu-west-1",
        "empty": "fallback",
        "literal": "${HOST}",
    }


def test_substituted_config_values_stay_strings():
    spec = parse_config("plugins:\n  p:\n    config:\n      n: ${N}\n", env={"N": "5"})
    assert spec.plugins["p"].config == {"n": "5"}


def test_os_environ_is_the_default_env(monkeypatch):
    monkeypatch.setenv("HELIX_TEST_URL", "http://x")
    doc = parse_config("plugins:\n  p:\n    config: {u: '${HELIX_TEST_URL}'}\n")
    assert doc.plugins["p"].config["u"] == "http://x"


def test_missing_env_vars_are_reported_with_their_lines():
    text = "plugins:\n  p:\n    config:\n      a: ${A}\n      b: x-${B}\ngateway:\n  k: ${C}\n"
    found, err = problems_of(text, env={})
    assert found == [(4, "p", "config.a"), (5, "p", "config.b"), (7, None, "gateway.k")]
    assert "environment variable 'A' is not set and has no default" in str(err)


# -- durations -----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("value", "seconds"),
    [
        ("30s", 30.0),
        ("500ms", 0.5),
        ("2m", 120.0),
        ("1h", 3600.0),
        ("1.5s", 1.5),
        ("1m30s", 90.0),
        ("1h 2m", 3720.0),
        ("45", 45.0),
        (30, 30.0),
        (0.25, 0.25),
        (timedelta(minutes=1), 60.0),
    ],
)
def test_parse_duration(value, seconds):
    assert parse_duration(value) == seconds


@pytest.mark.parametrize("value", ["30x", "s", "", "-5s", -1, True, None, "1m30", [1], math.nan])
def test_parse_duration_rejects_nonsense_clearly(value):
    with pytest.raises(ValueError, match=r"invalid duration.*'30s', '500ms'"):
        parse_duration(value)


# -- validate_config -----------------------------------------------------------------


class Provider(PluginConfig):
    api_url: str
    timeout: Duration = 30
    retry_count: int = 3


class Loose(pydantic.BaseModel):  # pydantic's default: extra keys silently ignored
    burst_size: int = 10
    window: int = Field(1, validation_alias=AliasChoices("window", "window_s"))


class Server(pydantic.BaseModel):
    host: str
    port: int = 80


class Nested(pydantic.BaseModel):
    servers: list[Server] = []
    primary: Server | None = None


def spec_of(text: str, name: str = "p") -> PluginSpec:
    return parse_config(text).plugins[name]


def test_validate_config_returns_the_model_with_durations_parsed():
    spec = parse_config(SEED).plugins["custom-provider"]
    config = validate_config(spec, Provider)
    assert config == Provider(api_url="https://api.custom.ai", timeout=30.0, retry_count=3)


def test_config_model_dict_takes_any_keys_and_returns_a_copy():
    spec = parse_config(SEED).plugins["rate-limiter"]
    config = validate_config(spec, dict)
    assert config == spec.config and config is not spec.config


def test_a_plugin_without_a_config_model_refuses_every_key_at_its_line():
    spec = spec_of("plugins:\n  counter:\n    config:\n      sise: 3\n", "counter")
    with pytest.raises(ConfigError) as info:
        validate_config(spec, None)
    [problem] = info.value.problems
    assert (problem.line, problem.plugin, problem.path) == (4, "counter", "config.sise")
    assert problem.message == (
        "unknown key 'sise': counter has no config_model, so it takes no config; give it a "
        "config model with this field (or `config_model = dict` to take any keys)."
    )
    assert validate_config(spec_of("plugins:\n  counter: {}\n", "counter"), None) == {}


def test_an_empty_config_model_says_it_has_no_fields_yet():
    class Empty(pydantic.BaseModel):
        pass

    spec = spec_of("plugins:\n  my-logger:\n    config:\n      level: info\n", "my-logger")
    with pytest.raises(ConfigError) as info:
        validate_config(spec, Empty)
    assert info.value.problems[0].message == (
        "unknown key 'level': the config model has no fields yet, so it takes no keys."
    )


@pytest.mark.parametrize(
    ("text", "line", "message"),
    [
        (
            "plugins:\n  cc:\n    config:\n      size: 3\n  nocfg\n    enabled: true\n",
            5,
            "could not find expected ':' after 'nocfg'; a key ends with a colon.",
        ),
        (
            "plugins:\n  cc:\n    config\n      size: 3\n",
            3,
            "'config' has no ':' after it, so the next line was read as part of it; a key "
            "ends with a colon.",
        ),
        ("plugins:\n  a:\n    x: 1\n   y: 1\n", 4, "check this line's indentation"),
    ],
)
def test_a_yaml_mistake_is_reported_at_the_line_to_fix(text, line, message):
    _, error = problems_of(text)
    assert error.problems[0].line == line
    assert message in error.problems[0].message


def test_a_config_cell_counts_yaml_lines_as_cell_lines():
    with pytest.raises(ConfigError) as info:
        parse_config("plugins:\n  a:\n    x: 1\n   y: 1\n", source="cell [3]", line_offset=1)
    assert str(info.value).startswith("Invalid configuration: cell [3]:5: invalid YAML")
    assert "(while parsing a block mapping started at line 3)" in str(info.value)


def test_validate_config_wrong_type_points_at_its_key():
    spec = spec_of("plugins:\n  p:\n    config:\n      api_url: x\n      retry_count: lots\n")
    with pytest.raises(ConfigError) as info:
        validate_config(spec, Provider)
    [problem] = info.value.problems
    assert (problem.line, problem.plugin, problem.path) == (5, "p", "config.retry_count")
    assert "valid integer" in problem.message and "'lots'" in problem.message


def test_validate_config_lists_every_error_and_missing_field_uses_entry_line():
    spec = spec_of("plugins:\n  p:\n    config:\n      timeout: forever\n      colour: red\n")
    with pytest.raises(ConfigError) as info:
        validate_config(spec, Provider)
    found = sorted((p.line, p.path) for p in info.value.problems)
    assert found == [(2, "config.api_url"), (4, "config.timeout"), (5, "config.colour")]
    assert "unknown key 'colour'" in str(info.value)
    assert "valid keys are: api_url, retry_count, timeout" in str(info.value)


def test_unknown_key_on_a_model_without_extra_forbid_is_an_error():
    spec = spec_of("plugins:\n  p:\n    config:\n      burst_sise: 5\n      window_s: 2\n")
    with pytest.raises(ConfigError) as info:
        validate_config(spec, Loose)
    [problem] = info.value.problems
    assert (problem.line, problem.path) == (4, "config.burst_sise")
    assert "did you mean 'burst_size'" in problem.message
    assert "burst_size, window, window_s" in problem.message

    spec = spec_of("plugins:\n  p:\n    config: {window_s: 2}\n")
    assert validate_config(spec, Loose).window == 2


def test_nested_models_report_deep_paths_and_lines():
    text = """\
plugins:
  p:
    config:
      servers:
        - host: a
        - port: x
          hots: b
"""
    with pytest.raises(ConfigError) as info:
        validate_config(spec_of(text), Nested)
    found = sorted((p.line, p.path) for p in info.value.problems)
    assert found == [
        (6, "config.servers.1.host"),
        (6, "config.servers.1.port"),
        (7, "config.servers.1.hots"),
    ]


def test_validation_errors_do_not_show_secret_inputs():
    class Secretive(pydantic.BaseModel):
        api_key: int

    spec = spec_of("plugins:\n  p:\n    config:\n      api_key: sk-verysecret\n")
    with pytest.raises(ConfigError) as info:
        validate_config(spec, Secretive)
    assert "sk-verysecret" not in str(info.value)
    assert info.value.problems[0].line == 4


# -- secrets -------------------------------------------------------------------------


@pytest.mark.parametrize(
    "key",
    ["api_key", "API-KEY", "apiKey", "jwt_secret", "access_token", "accessToken", "password",
     "db_passwd", "Authorization", "private_key", "credentials", "client_secret"],
)  # fmt: skip
def test_secret_keys(key):
    assert is_secret_key(key)


@pytest.mark.parametrize("key", ["max_tokens", "tokenizer", "url", "timeout", "key", "author"])
def test_ordinary_keys_are_not_secret(key):
    assert not is_secret_key(key)


def test_redact_nested_structures_without_mutating_them():
    value = {
        "api_url": "https://x",
        "API-KEY": "sk-123456",
        "headers": [{"Authorization": "Bearer abc123"}, ("token", {"token": "t0k3n"})],
        "password": None,
        "nested": {"jwt_secret": {"deep": "s3cr3t"}},
    }
    before = repr(value)
    out = redact(value)
    assert out == {
        "api_url": "https://x",
        "API-KEY": "***",
        "headers": [{"Authorization": "***"}, ("token", {"token": "***"})],
        "password": None,
        "nested": {"jwt_secret": "***"},
    }
    assert repr(value) == before
    for secret in ("sk-123456", "abc123", "t0k3n", "s3cr3t"):
        assert secret not in repr(out)


def test_redact_pydantic_models_and_secret_types():
    class Inner(pydantic.BaseModel):
        key: SecretStr
        name: str = "n"

    class Outer(pydantic.BaseModel):
        access_token: str
        inner: Inner

    model = Outer(access_token="tok-9999", inner=Inner(key=SecretStr("hunter22")))
    out = redact(model)
    assert out == {"access_token": "***", "inner": {"key": "***", "name": "n"}}
    assert "tok-9999" not in repr(out) and "hunter22" not in repr(out)
    assert model.access_token == "tok-9999"
    assert redact([SecretStr("abcd")]) == ["***"]


def test_a_secret_type_read_through_an_alias_choice_is_secret(kernel):
    class Hushed(PluginConfig):
        token_value: SecretStr | None = Field(None, validation_alias=AliasChoices("tv", "hush"))

    class P(hx.Plugin[Hushed]):
        name = "p"

    assert secret_values({"hush": 98765432}, model=Hushed) == {"98765432"}
    assert redact({"hush": "hunter2-x"}, model=Hushed) == {"hush": "***"}
    kernel.register(P)
    kernel.load_all()
    with pytest.raises(ConfigError) as info:  # SecretStr refuses a number: the error quotes it
        kernel.configure("p", {"hush": 98765432})
    assert "config.hush" in str(info.value) and "98765432" not in str(info.value)


def test_spec_repr_never_shows_secrets():
    spec = spec_of("plugins:\n  p:\n    config:\n      api_key: sk-live-4242\n      url: u\n")
    assert "sk-live-4242" not in repr(spec)
    assert "sk-live-4242" not in repr(parse_config("plugins: {}\ngateway: {secret: sk-live-4242}"))
    gateway = "gateway: {admin_key: hunter2-admin, header: {value: hunter2-mark, secret: true}}"
    shown = repr(parse_config(f"plugins: {{}}\n{gateway}\n"))
    assert "hunter2" not in shown and "'header': '***'" in shown
    assert "'url': 'u'" in repr(spec)


def test_redact_text_replaces_known_secret_values():
    text = "calling with key sk-abcdef and pw hunter2 and id 123"
    known = secret_values({"api_keys": [SecretStr("sk-abcdef"), "hunter2", "123", None]})
    out = mask(text, SecretBook(known))
    assert out == "calling with key *** and pw *** and id 123"
    assert mask("abcd abcdef", SecretBook(["abcd", "abcdef"])) == "*** ***"


# -- properties ----------------------------------------------------------------------

YAMLISH = st.text(alphabet=st.sampled_from(list("ab:- \n\t{}[],#&*!|>'\"%@`$?~<=.01yn")))
SCALARS = st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text()
ANY = st.recursive(
    SCALARS, lambda inner: st.lists(inner) | st.dictionaries(st.text(), inner), max_leaves=20
)


@settings(max_examples=300, suppress_health_check=[HealthCheck.too_slow])
@given(st.text() | YAMLISH)
def test_arbitrary_text_only_ever_raises_config_error(text):
    with contextlib.suppress(ConfigError):
        parse_config(text, env={})


@settings(max_examples=100)
@given(
    st.dictionaries(st.text(), ANY)
    | st.fixed_dictionaries({"plugins": st.dictionaries(st.text(), ANY | st.dictionaries(
        st.sampled_from(["enabled", "priority", "depends_on", "config", "x"]), ANY))})
)  # fmt: skip
def test_arbitrary_mappings_only_ever_raise_config_error(data):
    with contextlib.suppress(ConfigError):
        parse_config(data, env={})


NAMES = st.from_regex(r"[a-z][a-z0-9-]{0,10}[a-z0-9]", fullmatch=True)
NO_ENV = st.text().filter(lambda s: "${" not in s)
CONFIG_VALUES = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | NO_ENV,
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(NO_ENV, inner, max_size=3),
    max_leaves=10,
)
ENTRY = st.fixed_dictionaries(
    {},
    optional={
        "enabled": st.booleans(),
        "priority": st.integers(-100, 100),
        "depends_on": st.lists(NAMES | NAMES.map(lambda n: n + ">=1.0"), max_size=3),
        "config": st.dictionaries(NO_ENV, CONFIG_VALUES, max_size=4),
    },
)


@settings(max_examples=150, suppress_health_check=[HealthCheck.too_slow])
@given(st.dictionaries(NAMES, ENTRY | st.none(), max_size=4))
def test_valid_documents_round_trip_through_yaml(plugins):
    doc = parse_config(yaml.safe_dump({"plugins": plugins}, sort_keys=False), env={})

    def essence(spec: PluginSpec):
        return spec.name, spec.enabled, spec.priority, spec.depends_on, spec.config

    expected = [
        essence(
            PluginSpec(
                name,
                enabled=(entry or {}).get("enabled", True),
                priority=(entry or {}).get("priority"),
                depends_on=tuple((entry or {}).get("depends_on", ())),
                config=(entry or {}).get("config", {}),
            )
        )
        for name, entry in plugins.items()
    ]
    assert [essence(s) for s in doc.plugins.values()] == expected
    assert all(re.fullmatch(r"[a-z0-9-]+", name) for name in doc.plugins)


# -- every problem of the document at once, a flawed plugin's config included ------------


class _Limits(pydantic.BaseModel):
    requests_per_minute: int = 60
    burst_size: int


@pytest.fixture
def limited_kernel(kernel):
    import helixlab as hx

    class Limiter(hx.Plugin):
        name = "lab-rate-limiter"
        config_model = _Limits

    kernel.register(Limiter)
    return kernel


def test_an_unknown_key_a_bad_value_and_a_missing_field_are_reported_together(limited_kernel):
    text = (
        "plugins:\n"
        "  lab-rate-limiter:\n"
        "    bogus: 1\n"
        "    config:\n"
        "      requests_per_minute: lots\n"
    )
    with pytest.raises(ConfigError) as caught:
        limited_kernel.apply_config(text, source="plugins.yaml")
    found = [(p.line, p.plugin, p.path) for p in caught.value.problems]
    assert found == [
        (2, "lab-rate-limiter", "config.burst_size"),  # missing: at the plugin's entry
        (3, "lab-rate-limiter", "bogus"),
        (5, "lab-rate-limiter", "config.requests_per_minute"),
    ]
    message = str(caught.value)
    assert message.startswith("Invalid configuration: 3 problems in plugins.yaml:")
    assert "plugins.yaml:5: lab-rate-limiter: config.requests_per_minute: " in message
    assert "(got 'lots')" in message and "unknown key 'bogus'" in message


def test_a_value_the_parser_refused_is_not_reported_twice(limited_kernel):
    text = (
        "plugins:\n"
        "  lab-rate-limiter:\n"
        "    config:\n"
        "      requests_per_minute: ${NOT_SET}\n"
        "      burst_size: 3\n"
    )
    with pytest.raises(ConfigError) as caught:
        limited_kernel.apply_config(text, source="plugins.yaml")
    paths = [p.path for p in caught.value.problems]
    assert paths == ["config.requests_per_minute"], caught.value


def test_an_entry_that_is_not_a_mapping_is_one_problem(limited_kernel):
    with pytest.raises(ConfigError) as caught:
        limited_kernel.apply_config("plugins:\n  lab-rate-limiter: [1, 2]\n", source="p.yaml")
    assert len(caught.value.problems) == 1, caught.value


@pytest.mark.parametrize("raised", [RuntimeError("weird"), SystemExit(4)])
def test_a_config_validator_raising_its_own_error_is_a_config_error_the_kernel_goes_on(
    kernel, raised
):
    class Model(pydantic.BaseModel):
        level: int = 1

        @pydantic.field_validator("level")
        @classmethod
        def check(cls, value: int) -> int:
            if value == 2:
                raise raised
            return value

    class P(hx.Plugin):
        name = "validated"
        config_model = Model

        def init(self, ctx, config):
            self.level = config.level

    kernel.register(P)
    kernel.load_all()
    with pytest.raises(
        ConfigError, match=rf"validated: config: its config model raised {type(raised).__name__}"
    ):
        kernel.configure("validated", {"level": 2})
    assert kernel.health()["validated"].healthy  # its loop still serves, the old config too
    assert kernel.get("validated").level == 1
