"""A deterministic OpenAI-compatible upstream on loopback: the default LLM for labs and tests.

No network beyond 127.0.0.1 and no API key needed; scripted replies, streaming, tool calls,
latency and fault injection make a gateway's behaviour observable and repeatable.

>>> from helixlab.mockllm import start
>>> with start() as server:
...     import httpx
...     httpx.get(server.url.removesuffix("/v1") + "/health").json()
{'status': 'ok'}
"""

from ._app import CREATED, MockLLM
from ._replies import count_tokens
from ._server import MockServer, start

__all__ = ["CREATED", "MockLLM", "MockServer", "count_tokens", "start"]
