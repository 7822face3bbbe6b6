"""Behind a reverse proxy: the client's real address, from proxies the gateway trusts only.

Behind a proxy every request comes from the proxy's address, so everything keyed on the
client's address (the rate limiter's per-address buckets) would treat all clients as one.
A proxy says who its client was in ``X-Forwarded-For`` (or RFC 7239 ``Forwarded: for=``),
but any client can send those headers too. So, as uvicorn's ``forwarded_allow_ips``: only
when the connection comes from an address in ``forwarded_allow_ips`` (IPs or CIDR networks;
``*`` any — only when nothing but the proxy can reach the gateway) is the header read, and
then from the right: each trusted proxy appends the address it received from, so the
first address from the right that is not a trusted proxy is the client. Entries to its
left are whatever the client wrote and are never used. Off by default (an empty list).

Only the header the proxy writes is read (``forwarded_header``: ``x-forwarded-for``, the
default, or ``forwarded``); the other is ignored, since a client could have written it.
The real address replaces ``scope["client"]`` before any plugin runs.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Iterable
from typing import Any

__all__ = ["ProxyHeaders", "check_allow", "forwarded_for"]

Network = ipaddress.IPv4Network | ipaddress.IPv6Network


def check_allow(entries: Iterable[str]) -> tuple[str, ...]:
    """The entries of ``forwarded_allow_ips`` (a list, or one comma-separated string), each
    checked: ``*``, an IP address or a CIDR network; ValueError naming a bad one."""
    if isinstance(entries, str):
        entries = entries.split(",")
    found = []
    for entry in entries:
        entry = str(entry).strip()
        if not entry:
            continue
        if entry != "*":
            try:
                ipaddress.ip_network(entry, strict=False)
            except ValueError:
                raise ValueError(
                    f"{entry!r} in forwarded_allow_ips is not an IP address, a CIDR network "
                    f"(10.0.0.0/8) or '*'"
                ) from None
        found.append(entry)
    return tuple(found)


def forwarded_for(value: str) -> list[str]:
    """The ``for=`` addresses of a ``Forwarded`` header, in order (ports and quotes off)."""
    found = []
    for element in value.split(","):
        for pair in element.split(";"):
            key, _, item = pair.strip().partition("=")
            if key.strip().lower() == "for" and item:
                found.append(_host(item.strip().strip('"')))
    return found


def _host(item: str) -> str:
    """``[2001:db8::1]:4711`` -> ``2001:db8::1``; ``192.0.2.1:80`` -> ``192.0.2.1``."""
    if item.startswith("["):
        return item[1:].partition("]")[0]
    if item.count(":") == 1:  # IPv4 with a port; a bare IPv6 has several colons
        return item.partition(":")[0]
    return item


class ProxyHeaders:
    """Rewrites ``scope["client"]`` for requests that come through a trusted proxy."""

    def __init__(self, allow: Iterable[str], header: str = "x-forwarded-for"):
        entries = check_allow(allow)
        self.any = "*" in entries
        self.networks: tuple[Network, ...] = tuple(
            ipaddress.ip_network(e, strict=False) for e in entries if e != "*"
        )
        self.header = header.lower().encode("latin-1")
        self.enabled = bool(entries)

    def trusted(self, host: str) -> bool:
        if self.any:
            return True
        try:
            address = ipaddress.ip_address(host)
        except ValueError:
            return False
        return any(address in network for network in self.networks)

    def client(self, peer: str, value: str) -> str:
        """The client behind ``peer`` (a trusted proxy) given its header's ``value``."""
        if self.header == b"forwarded":
            entries = forwarded_for(value)
        else:
            entries = [_host(part.strip()) for part in value.split(",") if part.strip()]
        host = peer
        for entry in reversed(entries):
            host = entry
            if not self.trusted(entry):
                return entry  # the first address from the right that no proxy of ours is
        return host  # every entry is a trusted proxy: the leftmost one is the client

    def apply(self, scope: Any) -> None:
        """Replace ``scope["client"]`` by the real client when the peer is a trusted proxy."""
        if not self.enabled:
            return
        peer = scope.get("client")
        if not peer or not self.trusted(str(peer[0])):
            return
        values = [v.decode("latin-1") for k, v in scope.get("headers", ()) if k == self.header]
        if values:  # several header lines are one list, in order
            scope["client"] = (self.client(str(peer[0]), ",".join(values)), 0)
