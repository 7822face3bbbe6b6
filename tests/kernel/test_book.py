"""Tests for helixlab.kernel._book: every transition sets the record and emits one event,
a plugin's text masked once."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

import helixlab as hx
from helixlab.errors import PluginError
from helixlab.kernel._book import Book
from helixlab.kernel._events import EventLog
from helixlab.kernel._lifecycle import Live
from helixlab.kernel._secrets import SecretBook

SECRET = "sk-live-0123456789abcdef"
S = hx.PluginState


class Counting(SecretBook):
    """A SecretBook that counts how often a text is masked."""

    def __init__(self) -> None:
        super().__init__()
        self.masked: list[str] = []

    def mask_text(self, text: str) -> str:
        self.masked.append(text)
        return super().mask_text(text)


def book() -> tuple[Book, EventLog, Counting]:
    events, secrets = EventLog(), Counting()
    secrets.learn([SECRET])
    b = Book(events, secrets)
    b.registered("p", "plugin from code")
    return b, events, secrets


def live(name: str = "p", version: str = "2.0") -> Live:
    return Live(hx.Plugin(), hx.Context(name, version, {}, {}), {})


def failure(phase: str = "start") -> PluginError:
    return PluginError("p", phase, cause=RuntimeError(f"upstream refused key {SECRET}"))


#: transition -> (the state it leaves, the event kind it emits); None: the state is unchanged
TRANSITIONS = {
    "registered": (S.REGISTERED, "registered", lambda b: b.registered("p", "plugin from code")),
    "initialized": (S.INITIALIZED, "initialized", lambda b: b.initialized("p")),
    "started": (S.ACTIVE, "started", lambda b: b.started("p")),
    "stopping": (S.STOPPING, "stopping", lambda b: b.stopping(live())),
    "stopped": (S.STOPPED, "stopped", lambda b: b.stopped(live())),
    "failed": (S.FAILED, "failed", lambda b: b.failed("p", failure())),
    "stop_failed": (None, "failed", lambda b: b.stop_failed(live(), failure("stop"))),
    "abandoned": (None, "stopped", lambda b: b.abandoned(live())),
    "reloaded": (S.ACTIVE, "reloaded", lambda b: b.reloaded("p", "1.0", "2.0")),
    "forgotten": (S.REGISTERED, "unregistered", lambda b: b.forgotten("p")),
}


@given(st.lists(st.sampled_from(sorted(TRANSITIONS)), min_size=1, max_size=12))
def test_every_transition_sets_the_state_and_emits_exactly_one_event(steps):
    b, events, _ = book()
    for step in steps:
        before, seen = b.state("p"), len(events.events())
        state, kind, transition = TRANSITIONS[step]
        transition(b)
        new = events.events()[seen:]
        assert [e.kind for e in new] == [kind] and new[0].plugin == "p"
        assert b.state("p") == (before if state is None else state)
        if step == "forgotten":
            assert "p" not in b.records
            b.registered("p", "again")


def test_a_failure_is_masked_once_and_kept_masked_in_the_record_and_the_event():
    b, events, secrets = book()
    secrets.masked.clear()
    b.failed("p", failure())
    assert len(secrets.masked) == 1  # once, for the record and the event alike
    event = events.events()[-1]
    assert SECRET not in event.error and "***" in event.error
    assert b.records["p"].error == "start: " + event.error.removeprefix("start: ")
    assert event.detail == "in start" and b.state("p") == S.FAILED


def test_the_kernels_own_words_are_not_masked_and_reloads_are_counted():
    b, events, secrets = book()
    secrets.masked.clear()
    b.reloaded("p", "1.0", "2.0")
    b.reloaded("p", "2.0", "2.0")
    b.started("p")
    assert secrets.masked == []  # versions and kinds: nothing a plugin said
    assert [e.detail for e in events.events()[-3:-1]] == ["1.0 -> 2.0", "2.0 (new instance)"]
    assert b.records["p"].reloads == 2


def test_health_changes_are_events_only_when_healthy_flips():
    b, events, _ = book()
    seen = len(events.events())
    for healthy in (True, True, False, False, True):
        b.checked("p", hx.HealthStatus("p", healthy, "" if healthy else "down"))
    kinds = [(e.kind, e.detail) for e in events.events()[seen:]]
    assert kinds == [
        ("health_changed", "healthy"),
        ("health_changed", "unhealthy"),
        ("health_changed", "healthy"),
    ]


@pytest.mark.parametrize("text", [SECRET, f"Bearer {SECRET}"])
def test_what_another_layer_emits_is_masked(text):
    b, events, _ = book()
    b.emit("file_error", "p", detail=f"bad.py: {text}", error=text)
    event = events.events()[-1]
    assert SECRET not in event.detail and SECRET not in (event.error or "")


def test_a_public_operation_masks_its_result_or_error_once(kernel, make_plugin, monkeypatch):
    kernel.register(make_plugin("p"))
    kernel.load_all()
    masked: list[object] = []
    real = kernel._book.secrets.mask
    monkeypatch.setattr(kernel._book.secrets, "mask", lambda obj: masked.append(obj) or real(obj))
    assert kernel.reload("p").ok
    assert [type(m).__name__ for m in masked] == ["ReloadReport"]  # sync twin over async
    masked.clear()

    async def start(self, ctx):
        raise RuntimeError(f"refused {SECRET}")

    with pytest.raises(hx.ReloadError) as caught:
        kernel.reload(make_plugin("p", start=start))
    assert [type(m).__name__ for m in masked] == ["ReloadError"]
    assert SECRET not in str(caught.value) and SECRET not in caught.value.report.error
