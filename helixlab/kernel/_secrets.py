"""Secrets: which settings hold one, and the one masking step every way out passes through.

Which settings are secret (the rule, also in docs/architecture.md):

1. **By name.** The name is split into words (``snake_case``, ``kebab-case``,
   ``camelCase``). It is secret when it contains ``secret``, ``password``, ``passwd``,
   ``passphrase``, ``authorization``, ``credential(s)``, ``cookie``, or a compound
   ``api_key``, ``private_key``, ``signing_key``, ``secret_key``, ``access_key``,
   ``session_key``, ``encryption_key``, ``master_key``; or when its last word is
   ``token`` or ``tokens`` (``token``, ``access_token``, ``api_tokens``, ``tokens``) unless
   the word before counts tokens (``max_tokens``, ``prompt_tokens``, ``total_tokens``...).
2. **By type.** A field of the plugin's ``config_model`` typed ``SecretStr`` or
   ``SecretBytes`` (also inside ``Optional``, lists and nested models).
3. **Explicitly.** In YAML (or a dict), a setting written as ``{value: ..., secret: true}``
   is unwrapped to its ``value`` and treated as secret::

       my-plugin:
         config:
           webhook: {value: "https://hooks.example/T0/B0/XYZ", secret: true}

4. **Credentials in URLs.** Any string that is a URL with a password in its userinfo
   (``database_url: postgres://app:pw@db/app``) shows as ``postgres://app:***@db/app``, and
   the password is a secret value; so are the values of query parameters with secret names
   (``?api_key=...``).

Displays (reprs, ``/v1/plugins``, the dashboard) show ``***`` for secret settings
(:func:`redact`). Free text — errors, reports, events, log lines, ``/health`` — goes
through :func:`mask`, which replaces every known secret *value*: each kernel keeps a
:class:`SecretBook` of the values of its current configuration and of every
configuration it was asked to apply (so a refused configure never quotes its new secret),
with each value's variants (stripped of surrounding whitespace, JSON- and repr-escaped,
URL-quoted); list and nested values count one by one. Values shorter than 4 characters are
not masked in free text (they would mask ordinary words). :func:`mask` also masks what
looks like a credential whatever the configuration: ``Bearer <token>``, ``sk-...`` keys,
a URL's userinfo password.
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import logging
import re
import threading
import types
import typing
import weakref
from collections.abc import Iterable, Mapping
from typing import Any
from urllib.parse import parse_qsl, quote, unquote, urlsplit

import pydantic

__all__ = [
    "MASK",
    "MIN_LENGTH",
    "SecretBook",
    "is_secret_key",
    "mask",
    "mask_log_records",
    "redact",
    "redact_text",
    "secret_fields",
    "secret_values",
    "split_marked",
    "unwrap_marked",
]

MASK = "***"

#: ``dataclasses.field`` metadata of a field that holds only identifiers (plugin names,
#: versions, phases, numbers): nothing from a configuration, so masking passes it by.
#: A report of a cascade of 1,000 plugins holds 5,000 of them.
_NO_SECRETS = "helix_no_secrets"
IDENTIFIERS = {_NO_SECRETS: True}
MIN_LENGTH = 4  # shorter values are not masked in free text

# Compact forms (separators removed) that make a name secret wherever they occur in it.
_SECRET_PARTS = (
    "secret",
    "password",
    "passwd",
    "passphrase",
    "authorization",
    "credential",
    "cookie",
    "apikey",
    "privatekey",
    "signingkey",
    "accesskey",
    "sessionkey",
    "encryptionkey",
    "masterkey",
)
# Words before a last ``token(s)`` that mean the setting counts tokens, not holds one.
_COUNTING = frozenset(
    [
        "max",
        "min",
        "num",
        "n",
        "prompt",
        "completion",
        "total",
        "reasoning",
        "cached",
        "output",
        "input",
        "context",
        "reserved",
        "remaining",
        "used",
        "audio",
        "text",
        "image",
        "stop",
        "special",
        "extra",
        "limit",
        "per",
    ]
)
_WORDS = re.compile(r"[A-Z]?[a-z0-9]+|[A-Z]+(?![a-z])")
_MARK_KEYS = frozenset({"value", "secret"})

# -- which settings are secret -------------------------------------------------------


def is_secret_key(key: Any) -> bool:
    """Whether a setting named ``key`` holds a secret (see the module docstring's rule).

    >>> [is_secret_key(k) for k in ("api_tokens", "database_password", "max_tokens")]
    [True, True, False]
    """
    if not isinstance(key, str):
        return False
    compact = re.sub(r"[^a-z0-9]", "", key.lower())
    if any(part in compact for part in _SECRET_PARTS):
        return True
    words = [w.lower() for w in _WORDS.findall(key)]
    if not words or words[-1] not in ("token", "tokens"):
        return False
    return len(words) == 1 or words[-2] not in _COUNTING


def _unwrap(annotation: Any) -> list[Any]:
    """The types an annotation may hold (``Optional[X]``, ``list[X]``, ``X | Y`` ...)."""
    origin = typing.get_origin(annotation)
    if origin is None:
        return [annotation]
    if origin is typing.Annotated:
        return _unwrap(typing.get_args(annotation)[0])
    found = []
    for arg in typing.get_args(annotation):
        found.extend(_unwrap(arg))
    return found


def _is_secret_type(annotation: Any) -> bool:
    return any(
        isinstance(t, type) and issubclass(t, pydantic.SecretStr | pydantic.SecretBytes)
        for t in _unwrap(annotation)
    )


def _submodel(annotation: Any) -> type[pydantic.BaseModel] | None:
    for t in _unwrap(annotation):
        if isinstance(t, type) and issubclass(t, pydantic.BaseModel):
            return t
    return None


def _field_of(model: Any, key: Any) -> Any:
    """The pydantic field that reads input key ``key`` (by name or alias), or None."""
    if not (isinstance(model, type) and issubclass(model, pydantic.BaseModel)):
        return None
    fields = model.model_fields
    if key in fields:
        return fields[key]
    for field in fields.values():
        if key in (field.alias, field.validation_alias):
            return field
    return None


def secret_fields(model: Any) -> frozenset[str]:
    """The fields of a config model that are secret by type (``SecretStr``/``SecretBytes``)."""
    if not (isinstance(model, type) and issubclass(model, pydantic.BaseModel)):
        return frozenset()
    return frozenset(n for n, f in model.model_fields.items() if _is_secret_type(f.annotation))


def _secret_here(key: Any, model: Any, path: tuple, marked: Iterable[tuple]) -> bool:
    if is_secret_key(key) or path in marked:
        return True
    field = _field_of(model, key)
    return field is not None and _is_secret_type(field.annotation)


def _child_model(model: Any, key: Any) -> Any:
    field = _field_of(model, key)
    return None if field is None else _submodel(field.annotation)


def unwrap_marked(value: Any) -> tuple[Any, bool]:
    """``({value: x, secret: true})`` -> ``(x, True)``; anything else -> ``(value, False)``."""
    if isinstance(value, Mapping) and set(value) == _MARK_KEYS and value["secret"] is True:
        return value["value"], True
    return value, False


def split_marked(value: Any, _path: tuple = ()) -> tuple[Any, set[tuple]]:
    """``value`` with every ``{value: x, secret: true}`` unwrapped, and the paths unwrapped."""
    value, marked = unwrap_marked(value)
    paths = {_path} if marked else set()
    if isinstance(value, Mapping):
        out = {}
        for key, item in value.items():
            out[key], found = split_marked(item, (*_path, key))
            paths |= found
        return out, paths
    if isinstance(value, list):
        items = []
        for i, item in enumerate(value):
            clean, found = split_marked(item, (*_path, i))
            items.append(clean)
            paths |= found
        return items, paths
    return value, paths


# -- URLs with credentials -------------------------------------------------------------

# userinfo: a user without ':' or '/', then a password of anything up to the '@' (people
# write passwords with '/' in them even though a URL would need it escaped)
_URL = re.compile(r"\b([a-zA-Z][a-zA-Z0-9+.-]*://)([^\s/@:\"'<>]*):([^\s@\"'<>]+)@")


def _url_secrets(text: str) -> set[str]:
    """The password of a URL's userinfo, and values of secret-named query parameters."""
    found: set[str] = set()
    if "://" not in text:
        return found
    for match in _URL.finditer(text):
        found.add(match.group(3))
        found.add(unquote(match.group(3)))
    try:
        query = urlsplit(text.strip()).query
    except ValueError:
        return found
    for key, value in parse_qsl(query):
        if is_secret_key(key) and value:
            found.add(value)
    return found


def _redact_url(text: str) -> str:
    masked = _URL.sub(lambda m: f"{m.group(1)}{m.group(2)}:{MASK}@", text)
    for value in _url_secrets(text):
        if len(value) >= MIN_LENGTH:
            masked = masked.replace(value, MASK)
    return masked


# -- display copies --------------------------------------------------------------------


def redact(value: Any, *, model: Any = None, marked: Iterable[tuple] = (), _path=()) -> Any:
    """A copy of ``value`` fit to display: secret settings (by name, by the config model's
    ``SecretStr`` fields, ``marked`` paths) and Secret* values become ``***``, and URLs lose
    their passwords. ``value`` itself is not changed."""
    marked = marked if isinstance(marked, frozenset) else frozenset(marked)
    if isinstance(value, pydantic.SecretStr | pydantic.SecretBytes):
        return MASK
    if isinstance(value, pydantic.BaseModel):
        return redact(value.model_dump(), model=type(value), marked=marked, _path=_path)
    if isinstance(value, Mapping):
        out = {}
        for k, v in value.items():
            path = (*_path, k)
            if v is not None and _secret_here(k, model, path, marked):
                out[k] = MASK
            else:
                out[k] = redact(v, model=_child_model(model, k), marked=marked, _path=path)
        return out
    if isinstance(value, list):
        return [redact(v, model=model, marked=marked, _path=_path) for v in value]
    if isinstance(value, tuple):
        return tuple(redact(v, model=model, marked=marked, _path=_path) for v in value)
    if isinstance(value, str) and "://" in value:
        return _redact_url(value)
    return value


def _leaves(value: Any) -> Iterable[str]:
    """Every string (and SecretStr's value) inside ``value``: a secret list counts item by item."""
    if isinstance(value, pydantic.SecretStr):
        yield value.get_secret_value()
    elif isinstance(value, pydantic.SecretBytes):
        yield value.get_secret_value().decode("utf-8", "replace")
    elif isinstance(value, str):
        yield value
    elif isinstance(value, int | float) and not isinstance(value, bool):
        yield str(value)
    elif isinstance(value, pydantic.BaseModel):
        for key in type(value).model_fields:
            yield from _leaves(getattr(value, key, None))
    elif isinstance(value, Mapping):
        for item in value.values():
            yield from _leaves(item)
    elif isinstance(value, list | tuple | set | frozenset):
        for item in value:
            yield from _leaves(item)


def secret_values(
    value: Any, *, model: Any = None, marked: Iterable[tuple] = (), _path=()
) -> set[str]:
    """Every secret value in ``value`` (what :func:`redact` would mask), to scrub from text."""
    marked = marked if isinstance(marked, frozenset) else frozenset(marked)
    found: set[str] = set()
    if isinstance(value, pydantic.SecretStr | pydantic.SecretBytes):
        found.update(_leaves(value))
    elif isinstance(value, pydantic.BaseModel):
        found |= secret_values(value.model_dump(), model=type(value), marked=marked, _path=_path)
        for key in type(value).model_fields:  # model_dump keeps SecretStr objects as they are
            found |= secret_values(getattr(value, key, None), _path=(*_path, key))
    elif isinstance(value, Mapping):
        for key, item in value.items():
            path = (*_path, key)
            if _secret_here(key, model, path, marked):
                found.update(_leaves(item))
            found |= secret_values(item, model=_child_model(model, key), marked=marked, _path=path)
    elif isinstance(value, list | tuple):
        for item in value:
            found |= secret_values(item, model=model, marked=marked, _path=_path)
    elif isinstance(value, str) and "://" in value:
        found |= _url_secrets(value)
    return {s for s in found if len(s.strip()) >= MIN_LENGTH}


def _variants(secret: str) -> set[str]:
    """The forms in which a secret can appear in text."""
    forms = {secret, secret.strip()}
    for form in list(forms):
        forms.add(json.dumps(form)[1:-1])
        forms.add(repr(form)[1:-1])
        forms.add(quote(form, safe=""))
    return {f for f in forms if len(f) >= MIN_LENGTH}


def _pattern(values: Iterable[str]) -> re.Pattern[str] | None:
    forms: set[str] = set()
    for value in values:
        forms |= _variants(value)
    if not forms:
        return None
    return re.compile("|".join(re.escape(v) for v in sorted(forms, key=len, reverse=True)))


def redact_text(text: str, secrets: Iterable[Any]) -> str:
    """``text`` with every given secret value (4+ characters, any variant) replaced by ***."""
    values = []
    for secret in secrets:
        if isinstance(secret, pydantic.SecretStr):
            secret = secret.get_secret_value()
        if isinstance(secret, str) and len(secret.strip()) >= MIN_LENGTH:
            values.append(secret)
    pattern = _pattern(values)
    return text if pattern is None else pattern.sub(MASK, text)


# -- the masking step ------------------------------------------------------------------

_BOOKS: weakref.WeakSet[SecretBook] = weakref.WeakSet()
_BOOKS_LOCK = threading.Lock()
_BEARER = re.compile(r"(?i)\b(bearer|basic)(\s+)[A-Za-z0-9._~+/-]{8,}=*")
_SK_KEY = re.compile(r"\bsk-[A-Za-z0-9_-]{4,}")


class SecretBook:
    """The secret values one kernel knows: its current configuration and every one it was
    asked to apply. Thread-safe; masking builds one regular expression per change."""

    def __init__(self) -> None:
        self._values: frozenset[str] = frozenset()
        self._pattern: re.Pattern[str] | None = None
        self._lock = threading.Lock()
        with _BOOKS_LOCK:
            _BOOKS.add(self)
        mask_log_records()

    def __len__(self) -> int:
        return len(self._values)

    def __contains__(self, value: object) -> bool:
        return value in self._values

    def learn(self, values: Iterable[str]) -> None:
        """Add secret values (a configuration being applied, or the one now current)."""
        if isinstance(values, frozenset) and values <= self._values:
            return  # the common case (a registry's unchanged secrets): no copy, no rebuild
        new = frozenset(v for v in values if isinstance(v, str) and len(v.strip()) >= MIN_LENGTH)
        if new <= self._values:
            return
        with self._lock:
            self._values = self._values | new
            self._pattern = _pattern(self._values)

    def text(self, text: str) -> str:
        """``text`` with this book's secret values masked."""
        pattern = self._pattern
        return text if pattern is None or not text else pattern.sub(MASK, text)

    def mask(self, obj: Any) -> Any:
        """:func:`mask` with this book's values (and the credential patterns)."""
        return _mask(obj, (self,), set())

    def mask_text(self, text: str) -> str:
        """:meth:`mask` of a string (an event's text: one per plugin and reload step)."""
        return _text(text, (self,))


def _text(text: str, books: Iterable[SecretBook]) -> str:
    if not text:
        return text
    for book in books:
        text = book.text(text)
    # each credential pattern only where its marker is: most text (every event) has none
    if "://" in text:
        text = _URL.sub(lambda m: f"{m.group(1)}{m.group(2)}:{MASK}@", text)
    lowered = text.lower()
    if "bearer" in lowered or "basic" in lowered:
        text = _BEARER.sub(lambda m: f"{m.group(1)}{m.group(2)}{MASK}", text)
    return _SK_KEY.sub(MASK, text) if "sk-" in text else text


def mask(obj: Any, book: SecretBook | None = None) -> Any:
    """``obj`` with every secret masked: the one step every way out passes through.

    Strings come back masked; dicts, lists and tuples as masked copies; reports and other
    dataclasses have their text fields masked (frozen ones are copied); exceptions are
    masked in place (their args, ``cause``, ``report``, ``problems``, the ``__cause__``
    chain) and returned. ``book``: one kernel's secrets; by default every live kernel's.
    """
    if book is not None:
        books: tuple[SecretBook, ...] = (book,)
    else:
        with _BOOKS_LOCK:
            books = tuple(_BOOKS)
    return _mask(obj, books, set())


def _mask(obj: Any, books: tuple[SecretBook, ...], seen: set[int]) -> Any:
    if isinstance(obj, str):
        return _text(obj, books)
    if obj is None or isinstance(obj, int | float | bool | bytes | type):
        return obj
    if isinstance(obj, Mapping):
        return {k: _mask(v, books, seen) for k, v in obj.items()}
    if isinstance(obj, list):
        return [_mask(v, books, seen) for v in obj]
    if isinstance(obj, tuple) and not hasattr(obj, "_fields"):
        return tuple(_mask(v, books, seen) for v in obj)
    if id(obj) in seen:
        return obj
    seen.add(id(obj))
    if isinstance(obj, BaseException):
        _mask_exception(obj, books, seen)
        return obj
    if dataclasses.is_dataclass(obj) and not isinstance(obj, type):
        changes = {}
        for f in dataclasses.fields(obj):
            if f.metadata.get(_NO_SECRETS):
                continue
            value = getattr(obj, f.name)
            masked = _mask(value, books, seen)
            if masked is not value and masked != value:
                changes[f.name] = masked
        if not changes:
            return obj
        params = getattr(type(obj), "__dataclass_params__", None)
        if params is not None and params.frozen:
            try:
                return dataclasses.replace(obj, **changes)
            except (TypeError, ValueError):  # fields replace() cannot set: set them anyway
                for name, value in changes.items():
                    object.__setattr__(obj, name, value)
                return obj
        for name, value in changes.items():
            setattr(obj, name, value)
        return obj
    return obj


def _mask_exception(exc: BaseException, books: tuple[SecretBook, ...], seen: set[int]) -> None:
    with contextlib.suppress(TypeError, AttributeError):
        exc.args = tuple(_mask(a, books, seen) for a in exc.args)
    for name in ("message", "detail", "error", "body", "problems", "report", "cause"):
        value = getattr(exc, name, None)
        if value is None or isinstance(value, types.MethodType | property):
            continue
        masked = _mask(value, books, seen)
        if masked is not value:
            with contextlib.suppress(AttributeError, TypeError):
                setattr(exc, name, masked)
    notes = getattr(exc, "__notes__", None)
    if isinstance(notes, list):
        notes[:] = [_mask(n, books, seen) for n in notes]
    for chained in (exc.__cause__, exc.__context__):
        if chained is not None:
            _mask(chained, books, seen)


# -- log lines -------------------------------------------------------------------------

_factory_lock = threading.Lock()
_factory_installed = False


def _mask_record(record: logging.LogRecord) -> logging.LogRecord:
    """A record with its message (args applied) and its traceback masked."""
    try:
        message = record.getMessage()
    except Exception:  # a broken format string: leave it to logging to report
        return record
    masked = mask(message)
    if masked != message or record.args:
        record.msg, record.args = masked, None
    if record.exc_info and record.exc_info[1] is not None:
        mask(record.exc_info[1])
        record.exc_text = mask(logging.Formatter().formatException(record.exc_info))
    return record


def mask_log_records() -> None:
    """Mask every log record as it is made, whichever library logs it (httpx and httpcore
    at DEBUG quote request headers): installed once per process, by the first kernel."""
    global _factory_installed
    with _factory_lock:
        if _factory_installed:
            return
        previous = logging.getLogRecordFactory()

        def factory(*args: Any, **kwargs: Any) -> logging.LogRecord:
            return _mask_record(previous(*args, **kwargs))

        logging.setLogRecordFactory(factory)
        _factory_installed = True
