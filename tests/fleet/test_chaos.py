"""Jepsen-style chaos against a fleet: seeded random schedules of proposals and faults on
3 real workers and a real redis-server, with the fleet's invariants checked after every
schedule.

Each schedule proposes a change (a ``configure`` of the ``flaky`` plugin with a fresh
``mark``, sometimes refused by one worker slot, sometimes slow to start; or a reload)
and, at a random moment inside it, injects a fault: SIGSTOP/SIGCONT of a worker, kill -9
of a worker, a restart of redis-server, or a pause of every worker's Redis connection
(through the small TCP proxy below, which they reach Redis by). Then the faults end and
the checker asserts, within the convergence bound:

1. no two live workers serve different content under one generation id (each live
   worker's generation and digest are the committed ones, and the ``flaky`` config it
   answers ``GET /v1/plugins`` with is the committed generation's);
2. no content that was not committed (a change a worker refused, or one aborted by a
   fault) is ever served, by any worker, at any time (a sampler runs throughout);
3. within the bound every live worker serves the last committed generation;
4. clients (chat requests on fresh connections, throughout) see no failed request except
   one in flight while a worker was killed.

The fleet is ``helixlab serve CONFIG --workers 3 --redis URL`` as a user runs it; a kill
-9 of that supervisor (its workers stop with it) is followed by a new one on the same
port, whose workers must join on the committed generation. ``HELIX_CHAOS_SEED`` replays
a run (the schedule is a function of it, faults and timings included);
``HELIX_CHAOS_SCHEDULES`` sets how many (``make chaos``: 200). Not covered: a Redis that
loses acknowledged writes (a failover; see docs/architecture.md).
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import random
import signal
import socket
import subprocess
import sys
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

import httpx
import hypothesis  # noqa: F401  (imported now: its pytest plugin's late import raced threads)
import pytest
import yaml

from helixlab.errors import FleetError
from helixlab.fleet import Keys, PrivateRedis, propose
from helixlab.fleet import _redis as fleet_redis
from helixlab.fleet._cli import fleet_status
from helixlab.fleet._redis import client
from helixlab.kernel import Change

from _fleet_support import CHAT, FLAKY
from _waiting import wait_until

SCHEDULES = int(os.environ.get("HELIX_CHAOS_SCHEDULES") or 4)
SEED = int(os.environ.get("HELIX_CHAOS_SEED") or random.SystemRandom().randrange(10**6))
BOUND = 60.0  # seconds within which every live worker serves the committed generation
WORKERS = 3

pytestmark = [
    pytest.mark.skipif(fleet_redis.redis_binary() is None, reason="no redis-server"),
    pytest.mark.timeout(120 + SCHEDULES * 150),
]

CONFIG = """\
plugins:
  custom-provider:
    config: {}
  flaky:
    config: {mark: m0}
"""


class Proxy:
    """A TCP proxy to Redis on its own event loop; ``pause(s)`` holds every byte for s."""

    def __init__(self, upstream: int):
        self.upstream = upstream
        self.loop = asyncio.new_event_loop()
        self._ready = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()
        self._ready.wait(10)

    def _run(self) -> None:
        asyncio.set_event_loop(self.loop)
        self.flowing = asyncio.Event()
        self.flowing.set()
        self.server = self.loop.run_until_complete(
            asyncio.start_server(self._handle, "127.0.0.1", 0)
        )
        self.port = self.server.sockets[0].getsockname()[1]
        self._ready.set()
        self.loop.run_forever()

    async def _handle(self, reader, writer) -> None:
        try:
            up_reader, up_writer = await asyncio.open_connection("127.0.0.1", self.upstream)
        except OSError:
            writer.close()
            return

        async def pipe(src, dst) -> None:
            try:
                while data := await src.read(65536):
                    await self.flowing.wait()
                    dst.write(data)
                    await dst.drain()
            except Exception:
                pass
            finally:
                dst.close()

        await asyncio.gather(pipe(reader, up_writer), pipe(up_reader, writer))

    def pause(self, seconds: float) -> None:
        self.loop.call_soon_threadsafe(self.flowing.clear)
        time.sleep(seconds)  # the fault's own length, part of the schedule
        self.loop.call_soon_threadsafe(self.flowing.set)

    def close(self) -> None:
        self.loop.call_soon_threadsafe(self.flowing.set)
        self.loop.call_soon_threadsafe(self.server.close)
        self.loop.call_soon_threadsafe(self.loop.stop)
        self._thread.join(5)


@dataclass
class History:
    """What happened, with times: proposals (mark -> generation id), kills, observations."""

    marks: dict[str, int | None] = field(default_factory=lambda: {"m0": None})
    kills: list[tuple[float, float]] = field(default_factory=list)  # (from, to)
    failures: list[tuple[float, float, str]] = field(default_factory=list)
    served: list[tuple[float, str, str]] = field(default_factory=list)  # (t, worker, mark)
    requests: int = 0


class Clients:
    """Chat requests and plugin listings on fresh connections, until stopped."""

    def __init__(self, url: str, history: History):
        self.url, self.history = url, history
        self.stop = threading.Event()
        self.threads = [
            threading.Thread(target=self._chat, daemon=True),
            threading.Thread(target=self._sample, daemon=True),
        ]
        for t in self.threads:
            t.start()

    def _chat(self) -> None:
        while not self.stop.is_set():
            start = time.monotonic()
            try:
                with httpx.Client(timeout=60) as c:
                    r = c.post(self.url + "/v1/chat/completions", json=CHAT)
                assert r.status_code == 200, f"{r.status_code} {r.text[:200]}"
                self.history.requests += 1
            except Exception as exc:
                self.history.failures.append((start, time.monotonic(), repr(exc)))

    def _sample(self) -> None:
        while not self.stop.is_set():
            start = time.monotonic()
            try:
                with httpx.Client(timeout=60) as c:
                    r = c.get(self.url + "/v1/plugins")
                rows = {row["name"]: row for row in r.json()["data"]}
                mark = rows["flaky"]["config"].get("mark")
                self.history.served.append((time.monotonic(), r.headers["x-helixlab-worker"], mark))
            except Exception as exc:
                self.history.failures.append((start, time.monotonic(), repr(exc)))
            self.stop.wait(0.05)

    def close(self) -> None:
        self.stop.set()
        for t in self.threads:
            t.join(90)


def _status(url: str) -> dict:
    async def read():
        r = client(url)
        try:
            return await fleet_status(r, Keys("helixlab"))
        finally:
            await r.aclose()

    return asyncio.run(read())


def _committed_mark(r) -> tuple[int, str]:
    keys = Keys("helixlab")
    number = int(r.get(keys.committed))
    config = yaml.safe_load(r.hget(keys.generation(number), "config"))
    return number, config["plugins"]["flaky"]["config"].get("mark")


class Chaos:
    def __init__(self, tmp: Path, seed: int):
        self.seed, self.rng = seed, random.Random(seed)
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            port = s.getsockname()[1]
        self.redis = PrivateRedis(tmp / "redis", port=port)
        self.direct = f"redis://127.0.0.1:{port}"
        self.proxy = Proxy(port)
        plugins = tmp / "plugins"
        plugins.mkdir()
        (plugins / "flaky.py").write_text(FLAKY)
        (tmp / "plugins.yaml").write_text(CONFIG)
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            self.port = s.getsockname()[1]
        self.url = f"http://127.0.0.1:{self.port}"
        self.command = [
            sys.executable, "-m", "helixlab", "serve", str(tmp / "plugins.yaml"),
            "--workers", str(WORKERS), "--port", str(self.port),
            "--redis", f"redis://127.0.0.1:{self.proxy.port}", "--plugins", str(plugins),
        ]  # fmt: skip
        self.log_path = tmp / "serve.log"
        self.log = open(self.log_path, "a")  # noqa: SIM115
        self.supervisor: subprocess.Popen | None = None
        self.start_supervisor()
        self.history = History()
        self.clients = Clients(self.url, self.history)
        self.n = 0

    def start_supervisor(self, patience: float = 120.0) -> None:
        """``helixlab serve --workers 3``; retried while the old workers still hold the
        port (they stop once they see their supervisor gone) or Redis restarts."""
        deadline = time.monotonic() + patience
        while True:
            process = subprocess.Popen(
                self.command, stdout=subprocess.PIPE, stderr=self.log, text=True
            )
            url = process.stdout.readline().strip()  # printed once every worker serves
            if url:
                self.supervisor = process
                return
            process.wait(30)
            assert time.monotonic() < deadline, f"serve did not start (see {self.log_path})"
            time.sleep(0.5)  # the port is still held by the old workers

    def worker_pids(self) -> list[int]:
        workers = sorted(_status(self.direct)["workers"], key=lambda w: w["slot"])
        return [w["pid"] for w in workers]

    def say(self, text: str) -> None:
        print(f"chaos seed {self.seed}: {text}", file=sys.stderr, flush=True)

    # -- one schedule ----------------------------------------------------------------------

    def schedule(self, index: int) -> None:
        rng = self.rng
        self.n += 1
        mark = f"m{self.n}"
        if rng.random() < 0.2:
            action = Change.reload("flaky")
            mark = None
        else:
            values = {
                "mark": mark,
                "fail_slot": rng.randrange(WORKERS) if rng.random() < 0.3 else -1,
                "delay": rng.choice([0, 0, 0.2, 1.0, 2.0]),
            }
            action = Change.configure("flaky", values)
        fault = rng.choice(
            ["sigstop", "sigstop", "kill", "redis", "pause", "pause", "none", "kill-supervisor"]
            if rng.random() < 0.9
            else ["kill-supervisor"]
        )
        at = rng.uniform(0, 1.2)  # into the proposal: often inside prepare
        length = rng.uniform(0.3, 6.0)
        victim = rng.randrange(WORKERS)
        self.say(f"schedule {index}: {action} with {fault} at {at:.2f}s for {length:.2f}s")
        outcome: dict = {}

        def proposer() -> None:
            async def go():
                r = client(self.direct)
                try:
                    return await propose(r, Keys("helixlab"), action, timeout=8)
                finally:
                    await r.aclose()

            try:
                report = asyncio.run(go())
                outcome.update(gen=report.generation, outcome=report.outcome)
            except FleetError as exc:
                report = exc.report
                outcome.update(gen=report.generation if report else None, error=str(exc))
            except Exception as exc:  # Redis restarting under the proposer
                outcome.update(gen=None, error=repr(exc))

        thread = threading.Thread(target=proposer)
        thread.start()
        time.sleep(at)  # the schedule's own timing
        self.inject(fault, victim, length)
        thread.join(120)
        assert not thread.is_alive(), "the proposer hung"
        if mark is not None:
            self.history.marks[mark] = outcome.get("gen")
        self.say(f"schedule {index}: proposal {outcome}")
        self.check(index)

    def inject(self, fault: str, victim: int, length: float) -> None:
        pids = self.worker_pids() if fault in ("sigstop", "kill") else [0]
        pid = pids[victim % len(pids)] if pids else 0
        # a victim may exit by itself between being listed and being signalled (a worker
        # whose lease lapsed restarts to rejoin, by design): then there is nothing to signal
        if fault == "sigstop" and pid:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGSTOP)
                time.sleep(length)
                os.kill(pid, signal.SIGCONT)
        elif fault == "kill" and pid:
            now = time.monotonic()
            self.history.kills.append((now, now))
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
        elif fault == "kill-supervisor":
            start = time.monotonic()
            self.supervisor.kill()  # its workers stop by themselves: none is left
            self.supervisor.wait(10)
            self.start_supervisor()
            self.history.kills.append((start, time.monotonic()))
        elif fault == "redis":
            self.redis.stop()
            time.sleep(min(length, 3.0))
            self.redis.start()
        elif fault == "pause":
            self.proxy.pause(length)

    # -- the invariants ------------------------------------------------------------------

    def check(self, index: int) -> None:
        where = f"chaos seed {self.seed}, schedule {index}"
        r = client(self.direct, asyncio=False)
        try:
            wait_until(  # (3) within the bound, every live worker on the committed generation
                lambda: _status(self.direct),
                BOUND,
                f"{where}: no convergence (see {self.log_path})",
                holds=lambda status: (
                    len(status["workers"]) == WORKERS
                    and all(w["state"] == "serving" for w in status["workers"])
                    and {(w["generation"], w["digest"]) for w in status["workers"]}
                    == {(status["generation"], status["digest"])}
                ),
            )
            number, mark = _committed_mark(r)
            # (1) what each live worker serves is the committed generation's content
            seen: dict[str, str] = {}
            for _ in range(200):
                with httpx.Client(timeout=60) as c:
                    answer = c.get(self.url + "/v1/plugins")
                rows = {row["name"]: row for row in answer.json()["data"]}
                seen[answer.headers["x-helixlab-worker"]] = rows["flaky"]["config"].get("mark")
                if len(seen) == WORKERS:
                    break
            assert set(seen.values()) == {mark}, (
                f"{where}: generation {number} is {mark!r}, workers serve {seen}"
            )
            # (2) nothing that was not committed was ever served
            keys = Keys("helixlab")
            for t, worker, served in list(self.history.served):
                gen = self.history.marks.get(served, -1)
                if served == "m0" or (gen is None and served == mark):
                    continue
                decided = r.get(keys.decision(gen)) if isinstance(gen, int) and gen > 0 else None
                assert decided == "commit" or (gen is None and served == mark), (
                    f"{where}: worker {worker} served {served!r} (proposal {gen}, "
                    f"decision {decided!r}) at {t:.1f}"
                )
            # (4) no failed request but one in flight while a worker was killed
            for start, end, error in self.history.failures:
                killed = any(k0 - 0.5 <= end and start <= k1 + 0.5 for k0, k1 in self.history.kills)
                assert killed, f"{where}: a request failed with no worker killed: {error}"
        finally:
            r.close()

    def close(self) -> None:
        self.clients.close()
        if self.supervisor is not None:
            self.supervisor.send_signal(signal.SIGTERM)
            try:
                self.supervisor.wait(60)
            except subprocess.TimeoutExpired:
                self.supervisor.kill()
                self.supervisor.wait()
            self.supervisor.stdout.close()
        self.log.close()
        self.proxy.close()
        self.redis.close()


def test_chaos(tmp_path, monkeypatch):
    monkeypatch.setenv("HELIXLAB_FLEET_KEY", "chaos-fleet-key-0123456789abcdef")
    chaos = Chaos(tmp_path, SEED)
    chaos.say(f"{SCHEDULES} schedule(s); replay with HELIX_CHAOS_SEED={SEED}")
    started = time.monotonic()
    try:
        for index in range(SCHEDULES):
            chaos.schedule(index)
    finally:
        chaos.close()
    chaos.say(
        f"{SCHEDULES} schedule(s) in {time.monotonic() - started:.0f}s, "
        f"{chaos.history.requests} chat requests, {len(chaos.history.failures)} failed "
        f"(all while a worker was killed), {len(chaos.history.served)} samples"
    )
