"""Live instances, leases and draining (helixlab/kernel/_live.py), through the kernel:
work holding a lease finishes on the instances it began with; old instances are stopped
once the leases on them are released, or at the drain deadline; builders and verifiers
see each new live set before it serves."""

from __future__ import annotations

import asyncio
import threading

import pytest

import helixlab as hx
from helixlab.errors import ReloadError

from _waiting import wait_until


def test_a_lease_keeps_the_instances_it_began_with_across_a_reload(kernel, make_plugin, journal):
    kernel.register(make_plugin("a"))
    kernel.load_all()
    with kernel.lease() as lease:
        old = lease.get("a")
        done = threading.Thread(target=kernel.reload, args=(make_plugin("a", version="2.0"),))
        done.start()
        wait_until(lambda: kernel.get("a") is not old, 10, "the new instance serving")
        assert lease.get("a") is old and lease.instances["a"] is old
        assert journal.phases("stop") == []  # the old instance still held
    done.join(10)
    assert not done.is_alive() and journal.phases("stop") == ["a"]
    assert kernel.get("a").version == "2.0"


def test_the_reload_ends_when_the_old_leases_are_released_not_the_new_ones(
    make_kernel, make_plugin, journal
):
    kernel = make_kernel(timeouts={"drain": 30})
    kernel.register(make_plugin("a"))
    kernel.load_all()
    first = kernel.lease()
    reload = threading.Thread(target=kernel.reload, args=(make_plugin("a", version="2"),))
    reload.start()
    wait_until(lambda: kernel.get("a").version, 10, "version 2 serving", holds="2".__eq__)
    second = kernel.lease()  # on the new instances: the reload does not wait for it
    assert second.get("a").version == "2" and journal.phases("stop") == []
    first.release()
    first.release()  # a second release changes nothing
    reload.join(10)
    assert not reload.is_alive()
    assert [(p, v) for p, _, v in journal if p == "stop"] == [("stop", "1.0.0")]
    second.release()


def test_a_lease_never_released_is_abandoned_at_the_drain_deadline_and_its_task_cancelled(
    make_kernel, make_plugin
):
    kernel = make_kernel(timeouts={"drain": 0.2})
    kernel.register(make_plugin("a"))
    kernel.load_all()
    cancelled = threading.Event()

    async def request() -> None:  # a gateway request: its lease bound to its task
        lease = kernel.lease().bind()
        try:
            await asyncio.sleep(60)
        except asyncio.CancelledError:
            cancelled.set()
            raise
        finally:
            lease.release()

    held = kernel.lease()
    future = asyncio.run_coroutine_threadsafe(request(), _loop_of(kernel))
    report = kernel.reload("a")
    assert report.ok and report.stopped == ["a"]
    assert held.abandoned and cancelled.wait(5)
    assert future.cancelled() or isinstance(future.exception(5), asyncio.CancelledError)
    held.release()


def _loop_of(kernel: hx.Kernel) -> asyncio.AbstractEventLoop:
    async def running() -> asyncio.AbstractEventLoop:
        return asyncio.get_running_loop()

    return kernel.run(running())


def test_an_async_lease_is_released_when_its_block_ends(kernel, make_plugin, journal):
    kernel.register(make_plugin("a"))
    kernel.load_all()

    async def work() -> str:
        async with kernel.lease() as lease:
            return lease.get("a").version

    assert asyncio.run(work()) == "1.0.0"
    assert kernel.reload("a").ok and journal.phases("stop") == ["a"]  # nothing to wait for


def test_a_builder_derives_extras_from_every_new_live_set(kernel, make_plugin):
    kernel.register(make_plugin("a"))
    kernel.load_all()
    kernel.add_builder(
        "versions", lambda instances, graph: {n: p.version for n, p in instances.items()}
    )
    with kernel.lease() as lease:
        assert lease.extras["versions"] == {"a": "1.0.0"}
    kernel.reload(make_plugin("a", version="2.0"))
    with kernel.lease() as lease:
        assert lease.extras["versions"] == {"a": "2.0"}


def test_a_builder_or_a_verifier_that_raises_refuses_the_new_set(kernel, make_plugin):
    kernel.register(make_plugin("a"))
    kernel.load_all()
    refuse = {"build": False, "verify": False}

    def build(instances, graph):
        if refuse["build"]:
            raise RuntimeError("cannot build the chain")
        return sorted(instances)

    async def verify(generation, changed):
        if refuse["verify"]:
            raise RuntimeError(f"canary refused {sorted(changed)}")

    kernel.add_builder("chain", build)
    kernel.add_verifier("canary", verify)
    old = kernel.get("a")
    for step in ("build", "verify"):
        refuse[step] = True
        with pytest.raises(ReloadError):
            kernel.reload(make_plugin("a", version="2.0"))
        with kernel.lease() as lease:
            assert kernel.get("a") is old and lease.extras["chain"] == ["a"]
        refuse[step] = False
    assert kernel.reload(make_plugin("a", version="3.0")).ok
    assert kernel.get("a").version == "3.0"
