"""The client's address behind trusted proxies (``X-Forwarded-For``), and masking it."""

from __future__ import annotations

import ipaddress
from collections.abc import Sequence

__all__ = ["ClientAddresses", "mask_address"]

Network = ipaddress.IPv4Network | ipaddress.IPv6Network


class ClientAddresses:
    """``X-Forwarded-For`` counts only when the TCP peer is one of our proxies; then the
    client is the rightmost hop that is not (hops left of it could be made up)."""

    def __init__(self, trusted: Sequence[str] = ()) -> None:
        self._trusted: tuple[Network, ...] = tuple(
            ipaddress.ip_network(cidr, strict=False) for cidr in trusted
        )

    def _is_trusted(self, address: str) -> bool:
        try:
            ip = ipaddress.ip_address(address.strip())
        except ValueError:
            return False
        return any(ip in net for net in self._trusted)

    def client(self, peer: str | None, forwarded_for: str | None) -> str:
        peer = peer or "unknown"
        if not self._trusted or not forwarded_for or not self._is_trusted(peer):
            return peer
        hops = [h.strip() for h in forwarded_for.split(",") if h.strip()]
        for hop in reversed(hops):
            if not self._is_trusted(hop):
                try:
                    return str(ipaddress.ip_address(hop))
                except ValueError:
                    return peer  # a garbled header: the proxy is the best we know
        return hops[0] if hops else peer


def mask_address(address: str | None) -> str | None:
    """The address with its last part hidden: 203.0.113.* or 2001:db8:0:0:0:0:0:*."""
    if not address:
        return None
    try:
        ip = ipaddress.ip_address(address)
    except ValueError:
        return None
    if isinstance(ip, ipaddress.IPv4Address):
        return ".".join(str(ip).split(".")[:3]) + ".*"
    return ":".join(ip.exploded.split(":")[:7]) + ":*"
