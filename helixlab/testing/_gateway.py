"""A served gateway for tests: a kernel, a loopback server, an httpx and an openai client."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from functools import cached_property
from typing import Any

import httpx

from .._extras import needs
from .._net import shared_ssl_context
from ..kernel import Kernel, LoadReport, Plugin

__all__ = ["ServedGateway"]


class ServedGateway:
    """The ``gateway`` fixture: ``kernel`` served at ``url``, with clients bound to it.

    ``http`` is an ``httpx.Client`` with ``base_url`` set; ``openai`` an ``openai.OpenAI``
    client on ``openai_base_url`` (openai is imported on first use). ``add`` registers
    and loads plugins; ``apply`` a YAML configuration.
    """

    def __init__(self, kernel: Kernel, **options: Any):
        self.kernel = kernel
        self.server = kernel.serve(**options)
        self.url: str = self.server.url
        self.openai_base_url: str = self.server.openai_base_url
        self.http = httpx.Client(base_url=self.url, timeout=30, verify=shared_ssl_context())

    @cached_property
    def openai(self) -> Any:
        with needs("lab", "helix_gateway.openai"):
            import openai

        return openai.OpenAI(base_url=self.openai_base_url, api_key="test", max_retries=0)

    def add(
        self, *plugins: type[Plugin] | Plugin, config: Mapping[str, Mapping] | None = None
    ) -> LoadReport:
        """Register ``plugins`` (``config``: name -> settings), then load everything."""
        for plugin in plugins:
            self.kernel.register(plugin)
        if config:
            self.kernel.apply_config({"plugins": {n: {"config": c} for n, c in config.items()}})
        return self.kernel.load_all()

    def apply(self, yaml_text: str | Mapping) -> LoadReport:
        """Apply a configuration (built-in plugins by name), then load everything."""
        self.kernel.apply_config(yaml_text)
        return self.kernel.load_all()

    def chat(self, content: str, model: str = "mock-small", **body: Any) -> httpx.Response:
        """POST one user message to ``/v1/chat/completions``."""
        payload = {"model": model, "messages": [{"role": "user", "content": content}], **body}
        return self.http.post("/v1/chat/completions", json=payload)

    def models(self) -> Iterable[str]:
        return [m["id"] for m in self.http.get("/v1/models").json()["data"]]

    def close(self) -> None:
        self.http.close()
        if "openai" in self.__dict__:
            self.openai.close()
        self.server.stop()

    def __enter__(self) -> ServedGateway:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"<ServedGateway {self.url}>"
