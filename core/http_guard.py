"""SSRF guard for outbound requests a flow editor controls (the API node).

A host is resolved first and every address it resolves to is checked: loopback, private,
link-local (cloud metadata at 169.254.169.254), carrier-grade NAT, multicast, reserved and
unspecified addresses are refused, IPv4 hidden in IPv6 (mapped, NAT64) included, unless the
host or the address is on the configured allowlist (`IVR_API_NODE_ALLOWLIST`: host names,
`*.suffix` wildcards, IPs or CIDR networks). The caller then connects to the checked address
itself (not the name again), so DNS rebinding between check and connect cannot slip through.
"""

from __future__ import annotations

import asyncio
import ipaddress
import socket
from collections.abc import Iterable
from dataclasses import dataclass, field

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address
IPNetwork = ipaddress.IPv4Network | ipaddress.IPv6Network

# Names that mean "this machine" or a cloud's metadata service wherever they resolve.
_FORBIDDEN_NAMES = frozenset({
    "localhost", "localhost.localdomain", "ip6-localhost", "ip6-loopback", "metadata",
    "metadata.google.internal", "instance-data", "instance-data.ec2.internal",
})
_FORBIDDEN_SUFFIXES = (".localhost", ".internal", ".local")
_NAT64 = ipaddress.ip_network("64:ff9b::/96")


class ForbiddenHost(Exception):
    """The request may not go there; the message says why (safe to log: no secrets)."""


@dataclass(frozen=True)
class Allowlist:
    hosts: frozenset[str] = frozenset()
    suffixes: tuple[str, ...] = ()  # from "*.corp.example" → ".corp.example"
    networks: tuple[IPNetwork, ...] = field(default_factory=tuple)

    @classmethod
    def parse(cls, entries: Iterable[str]) -> Allowlist:
        hosts: set[str] = set()
        suffixes: list[str] = []
        networks: list[IPNetwork] = []
        for raw in entries:
            entry = raw.strip().lower()
            if not entry:
                continue
            try:
                networks.append(ipaddress.ip_network(entry, strict=False))
                continue
            except ValueError:
                pass
            if entry.startswith("*."):
                suffixes.append(entry[1:])
            else:
                hosts.add(entry.rstrip("."))
        return cls(frozenset(hosts), tuple(suffixes), tuple(networks))

    def allows_host(self, host: str) -> bool:
        name = host.lower().rstrip(".")
        return name in self.hosts or any(name.endswith(s) for s in self.suffixes)

    def allows_address(self, ip: IPAddress) -> bool:
        return any(ip in net for net in self.networks if net.version == ip.version)


def _embedded_v4(ip: IPAddress) -> ipaddress.IPv4Address | None:
    if isinstance(ip, ipaddress.IPv6Address):
        if ip.ipv4_mapped is not None:
            return ip.ipv4_mapped
        if ip in _NAT64:
            return ipaddress.IPv4Address(int(ip) & 0xFFFFFFFF)
        if ip.sixtofour is not None:
            return ip.sixtofour
    return None


def address_problem(ip: IPAddress) -> str | None:
    """Why a request may not go to `ip`, or None if it is a public address."""
    inner = _embedded_v4(ip)
    if inner is not None:
        problem = address_problem(inner)
        return f"{problem} (inside {ip})" if problem else None
    for test, what in (
        (ip.is_loopback, "a loopback address"),
        (ip.is_link_local, "a link-local address (cloud metadata lives there)"),
        (ip.is_unspecified, "an unspecified address"),
        (ip.is_multicast, "a multicast address"),
        (ip.is_reserved, "a reserved address"),
        (ip.is_private, "a private address"),
    ):
        if test:
            return f"{ip} is {what}"
    if not ip.is_global:
        return f"{ip} is not a public address"
    return None


def literal_address(host: str) -> IPAddress | None:
    try:
        return ipaddress.ip_address(host.strip("[]"))
    except ValueError:
        return None


def static_host_problem(host: str, allowlist: Allowlist) -> str | None:
    """What can be said without DNS (at publish time): forbidden names and IP literals."""
    if allowlist.allows_host(host):
        return None
    ip = literal_address(host)
    if ip is not None:
        if allowlist.allows_address(ip):
            return None
        return address_problem(ip)
    name = host.lower().rstrip(".")
    if not name:
        return "the URL has no host"
    if name in _FORBIDDEN_NAMES or name.endswith(_FORBIDDEN_SUFFIXES):
        return f"{name} is a local or metadata host name"
    return None


async def resolve_checked(host: str, port: int, allowlist: Allowlist) -> list[IPAddress]:
    """Every address `host` resolves to, each checked; ForbiddenHost if any is refused.

    One bad address refuses the host: a name that resolves to a public and a private address
    is exactly what a rebinding attack looks like.
    """
    problem = static_host_problem(host, allowlist)
    if problem is not None:
        raise ForbiddenHost(problem)
    ip = literal_address(host)
    if ip is not None:
        return [ip]
    try:
        infos = await asyncio.get_running_loop().getaddrinfo(
            host, port, type=socket.SOCK_STREAM, proto=socket.IPPROTO_TCP
        )
    except (socket.gaierror, UnicodeError) as exc:
        raise ForbiddenHost(f"{host} does not resolve ({exc})") from None
    addresses: list[IPAddress] = []
    for _family, _type, _proto, _canon, sockaddr in infos:
        address = ipaddress.ip_address(str(sockaddr[0]).split("%")[0])
        if address not in addresses:
            addresses.append(address)
    if not addresses:
        raise ForbiddenHost(f"{host} does not resolve")
    if allowlist.allows_host(host):
        return addresses
    for address in addresses:
        if allowlist.allows_address(address):
            continue
        problem = address_problem(address)
        if problem is not None:
            raise ForbiddenHost(f"{host} resolves to {problem}")
    return addresses
