"""The supervisor of ``helixlab serve CONFIG --workers N``: one port, N worker processes.

It binds the listening socket once and hands it to every worker (inherited file
descriptor: the kernel spreads connections over the processes accepting on it), starts
a private redis-server when no ``--redis`` is given, restarts a worker that dies (first
removing its heartbeat, so a reload in progress aborts at once instead of waiting for the
TTL), and proposes a fleet reload when the config file or a plugin file is saved
(``_watch``). Stopping stops the workers (each drains its requests), then the private
Redis.

What it leaves behind is cleaned by whoever outlives it: a dead worker's temporary
directory (its copy of the plugin sources) by the supervisor, and after a supervisor's
``kill -9`` its workers, its private redis-server, its temporary directories and its
state file by its watchdog (``_watchdog``). The Redis URL reaches workers through their
environment, never their command line (see ``_private``).
"""

from __future__ import annotations

import json
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from pathlib import Path
from typing import Any

from .._extras import needs, require
from .._net import bind_tcp, http_url
from ..errors import FleetError, describe
from ..kernel import Change
from ._metrics import serve_metrics
from ._private import REDIS_VARIABLE, public_url, redis_failure, state_file, write_private
from ._redis import Keys, PrivateRedis, client, connected, run_sync
from ._watch import SaveWatcher
from ._watchdog import Watchdog

__all__ = ["Supervisor", "state_file"]


def _say(text: str, log: Any = None) -> None:
    print(f"helixlab: {public_url(text)}", file=log or sys.stderr, flush=True)


class _Slot:
    def __init__(self, index: int):
        self.index = index
        self.worker_id = ""
        self.process: subprocess.Popen | None = None
        self.ready = threading.Event()
        self.failures = 0
        self.started = 0.0
        self.failed_start: int | None = None


class Supervisor:
    """Start with :meth:`start`, stop with :meth:`stop`; ``url`` is the fleet's address."""

    def __init__(
        self,
        config: str,
        workers: int,
        *,
        host: str = "127.0.0.1",
        port: int = 0,
        redis: str | None = None,
        fleet: str = "helixlab",
        rate_limit_policy: str = "open",
        watch: bool = True,
        plugins: str | None = None,
        shared_limits: bool = True,
        log: str | os.PathLike | None = None,
        admin_key: str | None = None,
        verify: bool = False,
        entry_points: bool = True,
        loop: str = "auto",
        http: str = "auto",
    ):
        if workers < 1:
            raise FleetError(f"--workers must be at least 1, not {workers}.")
        self.config = str(Path(config).resolve())
        self.workers, self.fleet, self.keys = workers, fleet, Keys(fleet)
        self.policy, self.watch = rate_limit_policy, watch
        self.plugins = str(Path(plugins).resolve()) if plugins else None
        self.shared_limits = shared_limits
        self.admin_key, self.verify, self.entry_points = admin_key, verify, entry_points
        self.loop, self.http = loop, http  # each worker's loops and HTTP parser (--loop, --http)
        # the workers' stderr: inherited, or appended to a file (a notebook's cells stay clean)
        self.log = open(log, "a", encoding="utf-8") if log else None  # noqa: SIM115
        self.sock = bind_tcp(host, port)
        self.sock.listen(2048)
        self.sock.set_inheritable(True)
        self.host, self.port = host, self.sock.getsockname()[1]
        self.private: PrivateRedis | None = None
        self.redis_url = redis
        # every temporary file of this fleet (metrics, the workers' copies) under one 0700
        # directory, which the watchdog removes should the supervisor be killed
        self.run_dir = Path(tempfile.mkdtemp(prefix="helixlab-fleet-"))
        self.metrics_dir = str(self.run_dir / "metrics")
        # the highest generation each worker served, read by the workers it starts next:
        # a worker never joins below it (the fleet does not go back with a rolled-back Redis)
        self.high_water_dir = self.run_dir / "high-water"
        self.high_water_dir.mkdir(mode=0o700)
        os.mkdir(self.metrics_dir, 0o700)
        self._watchdog: Watchdog | None = None
        self._spawned = 0
        self.metrics: Any = None  # the /metrics listener, if the config gives it a port
        self.slots = [_Slot(i) for i in range(workers)]
        self._stopping = threading.Event()
        self._started = False
        self._lock = threading.Lock()
        self.watching = threading.Event()  # set once saves of the config file are seen
        self._r: Any = None
        # generations are signed: the given key, else one made for this fleet (see _signing)
        from ._signing import KEY_FILE_VARIABLE, KEY_VARIABLE, fleet_key, make_key_file

        self.key_file: Path | None = None
        self._fleet_key = fleet_key()
        if self._fleet_key is None:
            self.key_file = make_key_file(self.run_dir)
            self._fleet_key = self.key_file.read_bytes().strip()
            self._key_env = {KEY_FILE_VARIABLE: str(self.key_file)}
        else:
            names = (KEY_VARIABLE, KEY_FILE_VARIABLE)
            self._key_env = {k: os.environ[k] for k in names if os.environ.get(k)}

    @property
    def url(self) -> str:
        return http_url(self.host, self.port)

    @property
    def _redis(self) -> str:
        """The fleet's Redis URL (given, or the private server's once started)."""
        if self.redis_url is None:
            raise FleetError("The fleet is not started: it has no Redis yet.")
        return self.redis_url

    def start(self, timeout: float = 60.0) -> None:
        """Start Redis (if private) and every worker; return when all of them serve."""
        require("fleet", "the fleet")
        try:
            self._watchdog = Watchdog()  # cleans up after a killed supervisor
            self._tell(f"path {self.run_dir}")
            self._check_config()
            if self.redis_url is None:
                self.private = PrivateRedis()
                self.redis_url = self.private.url
                assert self.private.process is not None
                self._tell(f"redis {self.private.process.pid}")
                self._tell(f"path {self.private.dir}")
                self._tell(f"path {self.private.socket.parent}")
            self._r = client(self.redis_url, asyncio=False)
            try:
                self._r.ping()
            except Exception as exc:
                failure = redis_failure(exc, self.redis_url)
                raise failure or FleetError(
                    f"Redis at {public_url(self.redis_url)} failed: {public_url(str(exc))}"
                ) from None
            from ._redis import check_eviction

            # refuses allkeys-* eviction; its messages name the URL: without the password
            note = check_eviction(self._r, public_url(self.redis_url))
            if note:
                _say(f"{note}; workers re-store the committed generation if it goes", self.log)
            for slot in self.slots:
                self._spawn(slot)
            deadline = time.monotonic() + timeout
            for slot in self.slots:
                if not slot.ready.wait(max(0.0, deadline - time.monotonic())):
                    raise FleetError(
                        f"Worker {slot.index} did not start within {timeout:g}s (see its log)."
                    )
                if slot.failed_start is not None:
                    raise FleetError(
                        f"Worker {slot.index} exited with status {slot.failed_start} while "
                        f"starting; its error is in its log (stderr)."
                    )
            self._started = True
            self.metrics = serve_metrics(self.config, self.metrics_dir)  # None: no listener
            state = state_file(self.fleet)
            write_private(  # 0600 in a 0700 directory: the URL may hold a password
                state,
                json.dumps(
                    {
                        "redis": self.redis_url,
                        "url": self.url,
                        "pid": os.getpid(),
                        "key_file": str(self.key_file) if self.key_file else None,
                    }
                ),
            )
            self._tell(f"state {state} {os.getpid()}")
            if self.watch:
                plugins = Path(self.plugins) if self.plugins else None
                watcher = SaveWatcher(
                    Path(self.config),
                    plugins,
                    self._propose_logged,
                    lambda text: _say(text, self.log),
                    self._stopping,
                    self.watching,
                )
                threading.Thread(target=watcher.run, daemon=True).start()
        except BaseException:
            self.stop()
            raise

    def _check_config(self) -> None:
        """Refuse a configuration the workers would refuse, before starting any (ConfigError)."""
        from ..kernel import Kernel

        with Kernel() as kernel:
            if self.entry_points:
                kernel.discover_entry_points()
            if self.plugins:
                kernel.discover(self.plugins)
            kernel.apply_config(self.config)
            missing = kernel.unregistered()  # what load_all would refuse
            if missing is not None:
                raise missing

    def _tell(self, line: str) -> None:
        if self._watchdog is not None:
            self._watchdog.tell(line)

    # -- workers ---------------------------------------------------------------------------

    def _spawn(self, slot: _Slot) -> None:
        # unique across hosts and containers sharing a hostname: the lock is released by it
        slot.worker_id = f"{socket.gethostname()}-{slot.index}-{uuid.uuid4().hex[:8]}"
        self._spawned += 1
        # its own temporary directory (its copy of the plugin sources, whatever its plugins
        # write to $TMPDIR), removed when it exits however it did
        tmp = self.run_dir / f"w{slot.index}-{self._spawned}"
        tmp.mkdir(mode=0o700)
        env = {
            **os.environ,
            **self._key_env,
            "HELIXLAB_WORKER_ID": slot.worker_id,
            "PROMETHEUS_MULTIPROC_DIR": self.metrics_dir,
            "HELIXLAB_WORKER_SLOT": str(slot.index),  # which of the N a worker is
            REDIS_VARIABLE: self.redis_url or "",  # the environment, not argv (`ps`)
            "TMPDIR": str(tmp),
            "HELIXLAB_FLEET_HIGH_WATER_DIR": str(self.high_water_dir),
        }
        if self.admin_key:
            env["HELIXLAB_ADMIN_KEY"] = self.admin_key  # the environment, not argv (`ps`)
        args = [
            sys.executable, "-m", "helixlab.fleet._worker",
            "--config", self.config, "--fd", str(self.sock.fileno()),
            "--fleet", self.fleet, "--slot", str(slot.index),
            "--rate-limit-policy", self.policy,
        ]  # fmt: skip
        if self.plugins:
            args += ["--plugins", self.plugins]
        if not self.shared_limits:
            args.append("--local-limits")
        if self.verify:
            args.append("--verify")
        if not self.entry_points:
            args.append("--no-entry-points")
        args += ["--loop", self.loop, "--http", self.http]
        slot.ready.clear()
        slot.started = time.monotonic()
        slot.process = process = subprocess.Popen(
            args,
            pass_fds=(self.sock.fileno(),),
            stdout=subprocess.PIPE,
            stderr=self.log,
            text=True,
            env=env,
        )
        self._tell(f"pid {process.pid}")
        threading.Thread(target=self._follow, args=(slot, process, tmp), daemon=True).start()

    def _follow(self, slot: _Slot, process: subprocess.Popen, tmp: Path) -> None:
        """Read the worker's ready line, wait for it to end, and restart it if it died."""
        for line in process.stdout or ():
            if line.startswith("ready "):
                slot.ready.set()
        code = process.wait()
        self._tell(f"exited {process.pid}")
        shutil.rmtree(tmp, ignore_errors=True)  # a SIGKILLed worker cleans nothing itself
        worker_id = slot.worker_id
        self._forget(worker_id, process.pid, code)
        if self._stopping.is_set():
            return
        if not self._started and not slot.ready.is_set():
            slot.failed_start = code  # start() reports it instead of restarting forever
            slot.ready.set()
            return
        _say(f"worker {slot.index} ({worker_id}) exited with {code}; restarting it", self.log)
        quick = time.monotonic() - slot.started < 2.0
        slot.failures = slot.failures + 1 if quick else 0
        if slot.failures:
            # a worker that dies at once would otherwise spin the machine: back off
            self._stopping.wait(min(5.0, 0.25 * 2 ** (slot.failures - 1)))
        with self._lock:
            if not self._stopping.is_set():
                self._spawn(slot)

    def _forget(self, worker_id: str, pid: int, code: int) -> None:
        """A dead worker leaves the quorum now (not after its TTL) and drops its live gauges."""
        try:
            with needs("fleet", "the fleet"):
                from prometheus_client import multiprocess

            multiprocess.mark_process_dead(pid, self.metrics_dir)
        except Exception:
            pass
        try:
            from ._coordinator import UNLOCK

            self._r.delete(self.keys.worker(worker_id))
            message = {"type": "gone", "worker": worker_id, "why": f"exited with {code}"}
            self._r.xadd(self.keys.stream, {"data": json.dumps(message)}, maxlen=2000)
            # it died joining: let the others in (its exact token, never a prefix's)
            self._r.eval(UNLOCK, 1, self.keys.lock, f"worker {worker_id} joining")
        except Exception:
            pass

    def pids(self) -> list[int]:
        return [s.process.pid for s in self.slots if s.process is not None]

    def _propose_logged(self, change: Change, path: Path, **content: Any) -> Exception | None:
        """Propose and log the outcome; the failure, or None once committed."""
        try:
            report = run_sync(lambda: self._propose(change, **content))
        except Exception as exc:
            _say(f"fleet reload from {path} failed: {describe(exc)}", self.log)
            return exc
        _say(f"fleet reload from {path}: {report}", self.log)
        return None

    async def _propose(self, change: Change, **content: Any) -> Any:
        from ._coordinator import propose

        async with connected(self._redis) as r:
            return await propose(r, self.keys, change, key=self._fleet_key, **content)

    # -- the fleet from Python (a notebook cell, a script) -----------------------------------

    def reload(self, name: str) -> Any:
        """Reload ``name`` on every worker as one generation: a FleetReport, or FleetError."""
        return run_sync(lambda: self._propose(Change.reload(name)))

    def configure(self, name: str, **values: Any) -> Any:
        """Merge ``values`` into ``name``'s config on every worker, as one generation."""
        return run_sync(lambda: self._propose(Change.configure(name, values)))

    def status(self) -> dict[str, Any]:
        """The committed generation and every live worker (what ``helixlab fleet status`` shows)."""
        from ._cli import read_status

        return run_sync(lambda: read_status(self._redis, self.keys))

    # -- stopping --------------------------------------------------------------------------

    def stop(self, timeout: float = 20.0) -> None:
        """Stop every worker (SIGTERM: they drain), then the private Redis; idempotent."""
        with self._lock:
            self._stopping.set()
        processes = [s.process for s in self.slots if s.process is not None]
        for process in processes:
            if process.poll() is None:
                process.terminate()
        deadline = time.monotonic() + timeout
        for process in processes:
            try:
                process.wait(max(0.1, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()
        self.sock.close()
        if self.metrics is not None:
            self.metrics.shutdown()
            self.metrics.server_close()
        if self._r is not None:
            self._r.close()
        if self.private is not None:
            self.private.close()
        shutil.rmtree(self.run_dir, ignore_errors=True)
        if self.log is not None:
            self.log.close()
        try:
            state = state_file(self.fleet)
            if state.exists() and json.loads(state.read_text()).get("url") == self.url:
                state.unlink()
        except (OSError, ValueError, FleetError):
            pass
        if self._watchdog is not None:
            self._watchdog.end()

    def __enter__(self) -> Supervisor:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()
