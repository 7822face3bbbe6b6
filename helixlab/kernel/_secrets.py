"""Secrets: which settings hold one, and the one masking step every way out passes through.

A setting is secret **by name** (it contains secret, password, passwd, passphrase,
authorization, credential, cookie, or api/private/signing/access/session/encryption/master/admin
``_key``, or ends in ``token(s)`` not counting them as ``max_tokens`` does), **by type**
(``SecretStr``/``SecretBytes`` in the ``config_model``, nested too), **explicitly**
(``{value: ..., secret: true}``) or **in a URL** (its password, secret-named query values).
One walk gives a configuration's display copy (:func:`redact`) and its secret values.
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import logging
import re
import threading
import weakref
from collections.abc import Callable, Iterable, Iterator, Mapping
from typing import Any, get_args
from urllib.parse import parse_qsl, quote, unquote, urlsplit

import pydantic

__all__ = [
    "IDENTIFIERS",
    "MASK",
    "SecretBook",
    "field_aliases",
    "is_secret_key",
    "mask",
    "mask_log_records",
    "redact",
    "secret_values",
    "split_marked",
    "unwrap_marked",
]

MASK = "***"
MIN_LENGTH = 4  # shorter values are not masked in free text
#: field metadata: only identifiers here (names, versions), masking passes it by
IDENTIFIERS = {"helix_no_secrets": True}

# compact forms (separators removed) that make a name secret wherever they occur in it
_SECRET_PARTS = re.compile(
    "secret|password|passwd|passphrase|authorization|credential|cookie|apikey|privatekey|"
    "signingkey|accesskey|sessionkey|encryptionkey|masterkey|adminkey"
)
# words before a last ``token(s)`` that mean the setting counts tokens, not holds one
_COUNTING = {
    *("max", "min", "num", "n", "prompt", "completion", "total", "reasoning", "cached"),
    *("output", "input", "context", "reserved", "remaining", "used", "audio", "text"),
    *("image", "stop", "special", "extra", "limit", "per"),
}
_WORDS = re.compile(r"[A-Z]?[a-z0-9]+|[A-Z]+(?![a-z])")
_SECRET_TYPES = (pydantic.SecretStr, pydantic.SecretBytes)
# a URL's userinfo: a user without ':' or '/', a password of anything up to '@' (even '/'
# or a quote: over-masking a path is safe, a password shown is not)
_URL = re.compile(r"\b([a-zA-Z][a-zA-Z0-9+.-]*://)([^\s/@:\"'<>]*):([^@ \t\r\n]+)@")
_BEARER = re.compile(r"(?i)\b(bearer|basic)(\s+)[A-Za-z0-9._~+/-]{8,}=*")
_SK_KEY = re.compile(r"\bsk-[A-Za-z0-9_-]{4,}")
_URL_MASKED = rf"\1\2:{MASK}@"


def is_secret_key(key: Any) -> bool:
    """Whether a setting named ``key`` holds a secret: ``api_tokens`` does, ``max_tokens`` not."""
    if not isinstance(key, str):
        return False
    if _SECRET_PARTS.search(re.sub(r"[^a-z0-9]", "", key.lower())):
        return True
    *before, last = [w.lower() for w in _WORDS.findall(key)] or [""]
    return last in ("token", "tokens") and (not before or before[-1] not in _COUNTING)


def field_aliases(info: Any) -> list[str]:
    """The input keys a pydantic field reads besides its name: its (validation) alias, each of
    its ``AliasChoices``, an ``AliasPath``'s first key."""
    alias = info.validation_alias if info.validation_alias is not None else info.alias
    choices = getattr(alias, "choices", [alias])
    return [k for c in choices if isinstance(k := getattr(c, "path", [c])[0], str)]


def _kinds(model: Any, key: Any) -> list[type]:
    """What the field ``model`` reads from ``key`` may hold (in ``X | None``, ``list[X]``...)."""
    fields = getattr(model, "model_fields", {}) if isinstance(model, type) else {}
    field = fields.get(key)  # by name, else by alias
    field = field or next((f for f in fields.values() if key in (f.alias, *field_aliases(f))), None)
    annotations, kinds = [field.annotation] if field else [], []
    for annotation in annotations:  # grows as it goes: X | list[Y] -> X, list[Y], Y
        annotations += get_args(annotation)
        kinds += [annotation] if isinstance(annotation, type) else []
    return kinds


def unwrap_marked(value: Any) -> tuple[Any, bool]:
    """``({value: x, secret: true})`` -> ``(x, True)``; anything else -> ``(value, False)``."""
    if isinstance(value, Mapping) and set(value) == {"value", "secret"} and value["secret"] is True:
        return value["value"], True
    return value, False


def split_marked(value: Any, path: tuple = ()) -> tuple[Any, set[tuple]]:
    """``value`` with every ``{value: x, secret: true}`` unwrapped, and the paths unwrapped."""
    value, marked = unwrap_marked(value)
    paths = {path} if marked else set()
    if not isinstance(value, Mapping | list):
        return value, paths
    items = value.items() if isinstance(value, Mapping) else enumerate(value)
    clean = {key: split_marked(item, (*path, key)) for key, item in items}
    paths = paths.union(*(found for _, found in clean.values()))
    out = {key: item for key, (item, _) in clean.items()}
    return (out if isinstance(value, Mapping) else list(out.values())), paths


def _url(text: str, found: set[str]) -> str:
    """A URL without its password and secret query values, which go into ``found``."""
    values = {form for m in _URL.finditer(text) for form in (m.group(3), unquote(m.group(3)))}
    with contextlib.suppress(ValueError):
        values |= {v for k, v in parse_qsl(urlsplit(text.strip()).query) if v and is_secret_key(k)}
    found |= values
    shown = _URL.sub(_URL_MASKED, text)
    for value in (v for v in values if len(v) >= MIN_LENGTH):
        shown = shown.replace(value, MASK)
    return shown


def _walk(
    value: Any, model: Any, marked: frozenset, path: tuple, found: set[str], secret: bool
) -> Any:
    """The one walk over a configuration's shapes: its display copy; its secret values go into
    ``found``. Under a secret setting (``secret``) every string and number counts, one by one."""
    if isinstance(value, _SECRET_TYPES):
        plain = value.get_secret_value()
        found.add(plain.decode("utf-8", "replace") if isinstance(plain, bytes) else plain)
        return MASK
    if isinstance(value, pydantic.BaseModel):
        for key in type(value).model_fields:  # what the dump leaves out or serializes away
            _walk(getattr(value, key, None), None, frozenset(), (), found, secret)
        return _walk(value.model_dump(), type(value), marked, path, found, secret)
    if isinstance(value, Mapping):
        out = {}
        for key, item in value.items():
            kinds, at = _kinds(model, key), (*path, key)
            child = next((t for t in kinds if issubclass(t, pydantic.BaseModel)), None)
            typed = any(issubclass(t, _SECRET_TYPES) for t in kinds)
            hidden = typed or at in marked or is_secret_key(key)
            shown = _walk(item, child, marked, at, found, secret or hidden)
            out[key] = MASK if hidden and item is not None else shown
        return out
    if isinstance(value, list | tuple | set | frozenset):
        kind = list if isinstance(value, list) else tuple if isinstance(value, tuple) else set
        return kind(_walk(item, model, marked, path, found, secret) for item in value)
    if secret and isinstance(value, str | int | float) and not isinstance(value, bool):
        found.add(str(value))
    return _url(value, found) if isinstance(value, str) and "://" in value else value


def redact(value: Any, *, model: Any = None, marked: Iterable[tuple] = ()) -> Any:
    """A copy of ``value`` to display: its secret settings (``marked``: paths written
    ``{value: ..., secret: true}``) become ``***``, URLs lose their passwords."""
    return _walk(value, model, frozenset(marked), (), set(), False)


def secret_values(value: Any, *, model: Any = None, marked: Iterable[tuple] = ()) -> set[str]:
    """Every secret value in ``value`` (what :func:`redact` masks), to mask in free text."""
    found: set[str] = set()
    _walk(value, model, frozenset(marked), (), found, False)
    return {s for s in found if len(s.strip()) >= MIN_LENGTH}


def _variants(value: str) -> Iterator[str]:
    """The forms in which a secret value can appear in text."""
    for plain in {value, value.strip()}:
        yield from (plain, json.dumps(plain)[1:-1], repr(plain)[1:-1], quote(plain, safe=""))


_BOOKS: weakref.WeakSet[SecretBook] = weakref.WeakSet()
_BOOKS_LOCK = threading.RLock()  # a finalizer may log while a book is added


class SecretBook:
    """Secret values to mask (4+ characters, also stripped, JSON-, repr-, URL-escaped): a
    kernel's (every configuration it was asked to apply), or a process's (an admin key
    given on the command line). While it lives, :func:`mask` and log records use it too."""

    def __init__(self, values: Iterable[str] = ()) -> None:
        self._values: frozenset[str] = frozenset()
        self._pattern: re.Pattern[str] | None = None
        self._lock = threading.Lock()
        self.learn(values)
        with _BOOKS_LOCK:
            _BOOKS.add(self)

    def learn(self, values: Iterable[str]) -> None:
        """Add secret values (a configuration being applied, or the one now current)."""
        new = {v for v in values if isinstance(v, str) and len(v.strip()) >= MIN_LENGTH}
        with self._lock:
            if not new <= self._values:
                self._values |= new
                forms = {form for value in self._values for form in _variants(value)}
                self._pattern = re.compile("|".join(sorted(map(re.escape, forms), key=len)[::-1]))

    def mask(self, obj: Any) -> Any:
        """:func:`mask` with this book's values."""
        return _mask(obj, (self,), set())

    def mask_text(self, text: str) -> str:
        """:meth:`mask` of a string."""
        return _text(text, (self,))


def _text(text: str, books: Iterable[SecretBook]) -> str:
    for book in books:
        if (pattern := book._pattern) is not None:
            text = pattern.sub(MASK, text)
    # each credential pattern only where its marker is: most text (every event) has none
    if "://" in text:
        text = _URL.sub(_URL_MASKED, text)
    if "bearer" in (lowered := text.lower()) or "basic" in lowered:
        text = _BEARER.sub(rf"\1\2{MASK}", text)
    return _SK_KEY.sub(MASK, text) if "sk-" in text else text


def mask(obj: Any, book: SecretBook | None = None) -> Any:
    """``obj`` with every known secret value (``book``'s, else every live book's) and what
    looks like a credential (``Bearer <token>``, ``sk-...``, a URL's password) as ``***``:
    strings, and copies of dicts, lists, tuples and frozen dataclasses; other dataclasses
    and exceptions (args, notes, report, cause, the chain) are masked in place."""
    with _BOOKS_LOCK:
        books = (book,) if book is not None else tuple(_BOOKS)
    return _mask(obj, books, set())


def _mask(obj: Any, books: tuple[SecretBook, ...], seen: set[int]) -> Any:
    if isinstance(obj, str):
        return _text(obj, books)
    if isinstance(obj, Mapping):
        return {k: _mask(v, books, seen) for k, v in obj.items()}
    if isinstance(obj, list | tuple) and not hasattr(obj, "_fields"):  # not a named tuple
        masked = [_mask(v, books, seen) for v in obj]
        return masked if isinstance(obj, list) else tuple(masked)
    if id(obj) in seen:
        return obj
    seen.add(id(obj))
    if isinstance(obj, BaseException):
        texts = ("args", "__notes__", "message", "detail", "error", "body", "problems")
        for name in (*texts, "report", "cause"):  # and the objects it holds
            if (masked := _mask(value := getattr(obj, name, None), books, seen)) is not value:
                with contextlib.suppress(AttributeError, TypeError):  # a read-only property
                    setattr(obj, name, masked)
        for chained in (obj.__cause__, obj.__context__):
            _mask(chained, books, seen)
        return obj
    if dataclasses.is_dataclass(obj) and not isinstance(obj, type):
        changes = {}
        for f in (f for f in dataclasses.fields(obj) if not f.metadata.get("helix_no_secrets")):
            value = getattr(obj, f.name)
            if (masked := _mask(value, books, seen)) is not value and masked != value:
                changes[f.name] = masked
        if changes and type(obj).__dataclass_params__.frozen:  # type: ignore[attr-defined]
            return dataclasses.replace(obj, **changes)  # a copy: never a write into a frozen one
        for name, value in changes.items():
            setattr(obj, name, value)
    return obj


@dataclasses.dataclass(frozen=True)
class _MaskingFactory:
    """A log record factory: what the one before it makes, message and traceback masked."""

    previous: Callable[..., logging.LogRecord]

    def __call__(self, *args: Any, **kwargs: Any) -> logging.LogRecord:
        record = self.previous(*args, **kwargs)
        try:
            message = record.getMessage()
        except Exception:  # a broken format string: leave it to logging to report
            return record
        if (masked := mask(message)) != message or record.args:
            record.msg, record.args = masked, None
        if record.exc_info and record.exc_info[1] is not None:
            mask(record.exc_info[1])
            record.exc_text = mask(logging.Formatter().formatException(record.exc_info))
        return record


def mask_log_records() -> None:
    """Mask every log record as it is made, whichever library logs it (httpx at DEBUG quotes
    headers). Process-wide: what serves calls it (``helixlab serve``, a fleet worker, a
    gateway's start, ``%load_ext helixlab``), never a kernel. Idempotent."""
    with _BOOKS_LOCK:
        if not isinstance(current := logging.getLogRecordFactory(), _MaskingFactory):
            logging.setLogRecordFactory(_MaskingFactory(current))
