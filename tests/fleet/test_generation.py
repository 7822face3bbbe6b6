"""A generation's change travels as the kernel's Change; what Redis gives back is checked
key by key before anything else is trusted (no Redis needed: the hash is the wire form)."""

from __future__ import annotations

import json

import pytest

from helixlab.errors import FleetError
from helixlab.fleet import Generation
from helixlab.fleet._wire import change_to_wire
from helixlab.kernel import Change

KEY = b"k" * 32
CONFIG = "plugins:\n  flaky: {}\n"


def stored(change: Change | None, wire: str | None = None) -> dict[str, str]:
    """Generation 2 as Redis holds it; ``wire``: its change field as someone wrote it."""
    gen = Generation(2, CONFIG, "plugins.yaml", change=change, parent=1).signed(KEY, "f")
    return {**gen.to_hash(), **({"change": wire} if wire is not None else {})}


@pytest.mark.parametrize(
    "change",
    [
        None,
        Change.reload("flaky"),
        Change.configure("flaky", {"prompt": "Hi ${name}!", "n": [1, 2.5, None]}),
        Change.apply_config(CONFIG, source="plugins.yaml"),
        Change.define_file("/srv/plugins", "/srv/plugins/x/plugin.py", source="/srv/x.py"),
    ],
)
def test_a_generation_reads_back_the_change_it_was_stored_with_signature_and_all(change):
    gen = Generation.from_hash(stored(change), 2)
    gen.check(KEY, "f")  # the signature covers the change's wire form: it survives the trip
    expected = change_to_wire(change) if change else None
    assert (change_to_wire(gen.change) if gen.change else None) == expected


@pytest.mark.parametrize(
    ("wire", "said"),
    [
        ("{not json", "Expecting property name"),
        ('["reload"]', "must be a JSON object"),
        ('{"kind": "exec", "code": "import os"}', "Unknown change kind 'exec'"),
        ('{"kind": "define", "classes": ["X"]}', "Unknown change kind 'define'"),
        ('{"kind": "reload", "targets": [], "cascade": true}', "'targets' must be a list"),
        ('{"kind": "reload", "targets": ["a"], "shell": "rm"}', "unknown key(s) ['shell']"),
        ('{"kind": "configure", "plugin": "flaky", "values": [1]}', "'values' must be"),
        ('{"kind": "define_file", "path": "../../etc/x.py"}', "relative path inside"),
        ('{"kind": "define_file", "path": "/etc/x.py"}', "relative path inside"),
        ('{"kind": "apply_config", "document": "other: 1"}', "config is not the one"),
    ],
)
def test_a_malformed_change_in_redis_is_refused_in_phase_verify(wire, said):
    with pytest.raises(FleetError) as refused:
        Generation.from_hash(stored(Change.reload("flaky"), wire), 2)
    assert refused.value.phase == "verify"
    assert "Refusing fleet generation 2: its change is malformed" in str(refused.value)
    assert said in str(refused.value)


def test_a_configure_generation_describes_its_values_and_stores_them_as_json():
    gen = Generation.from_hash(stored(Change.configure("flaky", {"burst_size": 5})), 2)
    assert gen.describe() == "configure flaky burst_size=5"
    assert json.loads(gen.to_hash()["change"]) == {
        "kind": "configure",
        "plugin": "flaky",
        "values": {"burst_size": 5},
    }


def test_a_configure_generation_refused_does_not_show_its_secret_values():
    """The text of a refused generation goes to the worker's stderr and its heartbeat
    (last_error, read by `helixlab fleet status`): a key it configures shows as ***."""
    change = Change.configure("up", {"api_key": "hunter2-secret", "burst_size": 5})
    gen = Generation.from_hash(stored(change), 2)
    assert "hunter2-secret" not in gen.describe() and "burst_size=5" in gen.describe()
    with pytest.raises(FleetError) as refused:
        gen.check(b"x" * 32, "f")
    assert "hunter2-secret" not in str(refused.value)


def test_a_workers_line_on_stderr_is_masked(capsys):
    from helixlab.fleet import _worker
    from helixlab.kernel import SecretBook

    book = SecretBook(["hunter2-secret"])  # as a worker's kernel knows its configuration's
    _worker._say("generation 3 failed here while catching up: bad key hunter2-secret")
    assert "hunter2-secret" not in capsys.readouterr().err
    del book


def test_a_workers_heartbeat_carries_its_last_error_masked(monkeypatch):
    """What `helixlab fleet status` shows of a worker comes from its heartbeat, in Redis."""
    import argparse
    import shutil

    from helixlab.fleet import _worker
    from helixlab.kernel import SecretBook

    monkeypatch.setenv("HELIXLAB_FLEET_KEY", "k" * 32)
    args = argparse.Namespace(fleet="f", redis="redis://127.0.0.1:1/0", slot=0)
    worker = _worker.Worker(args)  # redis-py connects on first use: none here
    try:
        book = SecretBook(["hunter2-secret"])
        worker.last_error = "generation 3 failed here while catching up: key hunter2-secret"
        assert "hunter2-secret" not in worker.info()["last_error"]
        del book
    finally:
        shutil.rmtree(worker.plugins)
