"""helixlab's pytest plugin (registered as the ``pytest11`` entry point ``helixlab``).

Installed with helixlab, so any project's tests get these fixtures without a conftest:

- ``helix_kernel``: a fresh :class:`~helixlab.Kernel`, closed after the test (plugins
  stopped, servers and watchers too), whatever the test did;
- ``gateway``: ``helix_kernel`` served on loopback, a :class:`ServedGateway` with an
  httpx client (``gateway.http``) and an openai client (``gateway.openai``);
- ``mock_llm``: the embedded upstream on loopback (:mod:`helixlab.mockllm`), with its
  fault knobs: ``script``, ``fail_next``, ``drop_next``, ``set_latency``, ``requests``.

A project's own fixture of the same name wins over these.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import TYPE_CHECKING

import pytest

if TYPE_CHECKING:
    from ..kernel import Kernel
    from ..mockllm import MockServer
    from ._gateway import ServedGateway


@pytest.fixture
def helix_kernel() -> Iterator[Kernel]:
    """A kernel for one test, closed afterwards."""
    from ..kernel import Kernel

    kernel = Kernel()
    try:
        yield kernel
    finally:
        kernel.close()


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
