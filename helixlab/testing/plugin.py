"""helixlab's pytest plugin (registered as the ``pytest11`` entry point ``helixlab``).

Installed with helixlab, so any project's tests get these fixtures without a conftest:

- ``make_helix_kernel``: makes kernels, ``make_helix_kernel(timeouts={"start": 1})`` (a
  :class:`~helixlab.Timeouts` or a dict of overrides of its defaults; ``config``: applied as
  by ``Kernel.from_config``; other keywords go to ``Kernel``), each closed after the test
  (plugins stopped, servers and watchers too), whatever the test did;
- ``helix_kernel``: ``make_helix_kernel()``; override it in a conftest to give ``gateway``
  a kernel of your own (other timeouts, a config);
- ``gateway``: ``helix_kernel`` served on loopback, a :class:`ServedGateway` with an
  httpx client (``gateway.http``) and an openai client (``gateway.openai``);
- ``mock_llm``: the embedded upstream on loopback (:mod:`helixlab.mockllm`), with its
  fault knobs: ``script``, ``fail_next``, ``drop_next``, ``set_latency``, ``requests``.

A project's own fixture of the same name wins over these.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator, Mapping
from typing import TYPE_CHECKING, Any

import pytest

if TYPE_CHECKING:
    from ..kernel import Kernel, Timeouts
    from ..mockllm import MockServer
    from ._gateway import ServedGateway


@pytest.fixture
def make_helix_kernel() -> Iterator[Callable[..., Kernel]]:
    """``make_helix_kernel(config=None, *, timeouts=None, **kwargs)``: kernels for one test.

    ``timeouts``: a ``Timeouts``, or a dict of overrides of the default ones. Every kernel
    made is closed after the test, the last made first.
    """
    from ..kernel import Kernel, Timeouts

    closing = contextlib.ExitStack()

    def make(
        config: Any = None,
        *,
        timeouts: Timeouts | Mapping[str, float] | None = None,
        **kwargs: Any,
    ) -> Kernel:
        if not isinstance(timeouts, Timeouts):
            timeouts = Timeouts(**(timeouts or {}))
        if config is None:
            kernel = Kernel(timeouts=timeouts, **kwargs)
        else:
            kernel = Kernel.from_config(config, timeouts=timeouts, **kwargs)
        closing.callback(kernel.close)
        return kernel

    with closing:
        yield make


@pytest.fixture
def helix_kernel(make_helix_kernel: Callable[..., Kernel]) -> Kernel:
    """A kernel for one test (the default timeouts), closed afterwards."""
    return make_helix_kernel()


@pytest.fixture
def gateway(helix_kernel: Kernel) -> Iterator[ServedGateway]:
    """``helix_kernel`` served on a free loopback port, with httpx and openai clients."""
    from ._gateway import ServedGateway

    with ServedGateway(helix_kernel) as served:
        yield served


@pytest.fixture
def mock_llm() -> Iterator[MockServer]:
    """The embedded upstream on a free loopback port (``url`` ends in ``/v1``)."""
    from ..mockllm import start

    with start() as server:
        yield server
