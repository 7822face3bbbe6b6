"""The kernel's loop on asyncio or uvloop, the gateway on h11 or httptools (issue 23).

The interrupt and fault guarantees themselves run on both loops in test_interrupts,
test_fault_matrix and test_faults (their ``kernel`` fixtures are parametrised); here: how
the loop and the HTTP parser are chosen and reported, the synchronous API called from a
thread that runs a loop of its own, ``close()`` refused on the kernel's loop, a hung plain
method that never keeps the process from exiting, and the gateway serving JSON and
streams on each of the four combinations, through the API and ``helixlab serve``.
"""

from __future__ import annotations

import asyncio
import json
import subprocess
import sys
import textwrap
import threading

import httpx
import pytest
import uvloop

import helixlab as hx
from helixlab._net import http_parser
from helixlab.kernel import loop_factory

LOOPS = ["asyncio", "uvloop"]
CHAT = {"model": "mock-small", "messages": [{"role": "user", "content": "hi"}]}
PROVIDER = {"plugins": {"custom-provider": {"config": {}}}}  # its embedded upstream


def test_the_loop_is_the_kind_asked_for_and_auto_is_uvloop_when_installed():
    for kind, cls in (("asyncio", asyncio.BaseEventLoop), ("uvloop", uvloop.Loop)):
        with hx.Kernel(loop=kind) as kernel:
            assert isinstance(kernel._thread.loop, cls) and kernel.loop_kind == kind
    with hx.Kernel() as kernel:
        assert kernel.loop_kind == "asyncio"  # in a notebook: the standard loop
    with hx.Kernel(loop="auto") as kernel:
        assert kernel.loop_kind == "uvloop"
    with pytest.raises(ValueError, match=r"loop='trio': choose one of auto, asyncio, uvloop"):
        hx.Kernel(loop="trio")


def test_without_uvloop_auto_falls_back_and_uvloop_is_refused_clearly(monkeypatch):
    monkeypatch.setitem(sys.modules, "uvloop", None)  # `import uvloop` raises ImportError
    assert loop_factory("auto") is asyncio.new_event_loop
    with hx.Kernel(loop="auto") as kernel:
        assert kernel.loop_kind == "asyncio"
    with pytest.raises(hx.HelixError, match="needs the uvloop package"):
        hx.Kernel(loop="uvloop")


def test_the_http_parser_is_the_one_asked_for(monkeypatch):
    assert [http_parser(k) for k in ("auto", "h11", "httptools")] == [
        "httptools",
        "h11",
        "httptools",
    ]
    with pytest.raises(ValueError, match="http='h2': choose one of auto, h11, httptools"):
        http_parser("h2")
    monkeypatch.setitem(sys.modules, "httptools", None)
    assert http_parser("auto") == "h11"
    with pytest.raises(ValueError, match="needs the httptools package"):
        http_parser("httptools")


@pytest.mark.parametrize("caller", LOOPS)
@pytest.mark.parametrize("loop", LOOPS)
def test_the_sync_api_works_from_a_thread_running_its_own_loop(make_plugin, journal, loop, caller):
    """A Jupyter cell runs inside a loop: the kernel's own loop is what makes that work."""

    async def cell(kernel: hx.Kernel) -> str:
        kernel.register(make_plugin("a"))
        kernel.load_all()  # synchronous, inside a running loop of the other (or same) kind
        report = kernel.reload("a")
        again = await kernel.areload("a")
        return f"{report.ok} {again.ok} {kernel.reload_count('a')}"

    with hx.Kernel(loop=loop) as kernel, asyncio.Runner(loop_factory=loop_factory(caller)) as run:
        assert run.run(cell(kernel)) == "True True 2"
    assert journal.phases("start") == ["a", "a", "a"]


@pytest.mark.parametrize("loop", LOOPS)
def test_close_on_the_kernels_own_loop_is_refused(make_plugin, loop):
    refused: list[BaseException] = []

    async def start(self, ctx):
        try:
            kernel.close()
        except hx.HelixError as exc:
            refused.append(exc)

    with hx.Kernel(loop=loop) as kernel:
        kernel.register(make_plugin("a", start=start))
        assert kernel.load_all().ok
        assert kernel.state("a") == hx.PluginState.ACTIVE
    assert len(refused) == 1 and "close the kernel from the code that created it" in str(refused[0])


@pytest.mark.parametrize("loop", LOOPS)
def test_a_hung_plain_method_never_keeps_the_process_from_exiting(loop):
    script = textwrap.dedent(
        f"""
        import threading, helixlab as hx
        class Hang(hx.Plugin):
            name = "hang"
            def start(self, ctx):
                threading.Event().wait()  # never returns
        kernel = hx.Kernel(loop={loop!r}, timeouts=hx.Timeouts(start=0.3))
        kernel.register(Hang)
        report = kernel.load_all()
        print(kernel.loop_kind, type(report.failed["hang"]).__name__, flush=True)
        """
    )
    done = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, timeout=60
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.split() == [loop, "PluginTimeoutError"]


@pytest.mark.parametrize("http", ["h11", "httptools"])
@pytest.mark.parametrize("loop", LOOPS)
def test_the_gateway_serves_json_and_streams_on_each_loop_and_parser(loop, http):
    with hx.Kernel.from_config(PROVIDER, loop=loop) as kernel:
        assert kernel.load_all().ok
        with kernel.serve(http=http) as server:
            assert (kernel.loop_kind, server.http) == (loop, http)
            with httpx.Client(base_url=server.openai_base_url, timeout=20) as client:
                answer = client.post("/chat/completions", json=CHAT)
                assert answer.json()["choices"][0]["message"]["content"] == "Echo: hi"
                with client.stream(
                    "POST", "/chat/completions", json={**CHAT, "stream": True}
                ) as stream:
                    events = [line for line in stream.iter_lines() if line.startswith("data: ")]
            assert events[-1] == "data: [DONE]"
            text = "".join(
                chunk["choices"][0]["delta"].get("content") or ""
                for chunk in (json.loads(e[6:]) for e in events[:-1])
                if chunk["choices"]
            )
            assert text == "Echo: hi"
    with hx.Kernel() as kernel, pytest.raises(ValueError, match="http='spdy'"):
        kernel.serve(http="spdy")


def cli(*args: str, code: str = "") -> subprocess.Popen:
    """``helixlab ARGS`` in a subprocess (after ``code``, e.g. hiding a package)."""
    run = f"{code}\nimport sys; from helixlab.__main__ import main; sys.exit(main({list(args)!r}))"
    return subprocess.Popen(
        [sys.executable, "-c", run], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
    )


@pytest.mark.parametrize(
    ("flags", "runs"),
    [
        ((), "uvloop + httptools"),  # the default: the fast path, when installed
        (("--loop", "asyncio", "--http", "h11"), "asyncio + h11"),
        (("--loop", "uvloop", "--http", "h11"), "uvloop + h11"),
    ],
)
def test_helixlab_serve_runs_and_says_the_loop_and_parser(tmp_path, flags, runs):
    config = tmp_path / "plugins.yaml"
    config.write_text("plugins:\n  custom-provider: {}\n")
    process = cli("serve", str(config), "--port", "0", *flags)
    try:
        url = process.stdout.readline().strip()
        chat = httpx.post(url + "/v1/chat/completions", json=CHAT, timeout=20)
        assert chat.json()["choices"][0]["message"]["content"] == "Echo: hi"
        process.terminate()
        _, err = process.communicate(timeout=30)
    finally:
        if process.poll() is None:
            process.kill()
    assert process.returncode == 0, err
    assert f"(OpenAI base URL {url}/v1) on {runs}\n" in err


def test_helixlab_serve_refuses_uvloop_when_it_is_not_installed(tmp_path):
    config = tmp_path / "plugins.yaml"
    config.write_text("plugins:\n  custom-provider: {}\n")
    hide = "import sys; sys.modules['uvloop'] = None"
    process = cli("serve", str(config), "--port", "0", "--loop", "uvloop", code=hide)
    out, err = process.communicate(timeout=60)
    assert process.returncode == 1
    assert "loop='uvloop' needs the uvloop package" in err
    assert "Traceback" not in err and out == "" and "started" not in err


def test_requests_on_uvloop_are_all_answered_across_reloads():
    """A reload on uvloop drains as on asyncio: every request in flight is answered."""
    with hx.Kernel.from_config(PROVIDER, loop="uvloop") as kernel:
        assert kernel.load_all().ok
        with kernel.serve(http="httptools") as server:
            stop, answered = threading.Event(), threading.Event()
            answers: list[int] = []

            def traffic() -> None:
                with httpx.Client(base_url=server.openai_base_url, timeout=20) as client:
                    while not stop.is_set():
                        answers.append(client.post("/chat/completions", json=CHAT).status_code)
                        answered.set()

            worker = threading.Thread(target=traffic)
            worker.start()
            try:
                for _ in range(3):  # each reload with requests flowing before and after it
                    answered.clear()
                    assert answered.wait(20)
                    assert kernel.reload("custom-provider").ok
                answered.clear()
                assert answered.wait(20)
            finally:
                stop.set()
                worker.join(30)
    assert len(answers) >= 4 and set(answers) == {200}
