"""Which of this machine's network interfaces the other nodes of a cluster can reach.

A batch cluster's scheduler runs here (the login or head node) and its workers on compute
nodes, so it must listen on an address those nodes can reach: never loopback, and not every
interface at once (0.0.0.0). Without ``backend.interface`` the choice is, in order: the address
this machine's hostname resolves to (what the nodes' own lookups of it give), else the
interface of the route the kernel takes out of this machine; loopback only when nothing else
has an address. Workers find their own address from their route to the scheduler (Dask's way).
"""
from __future__ import annotations

import ipaddress
import socket
from dataclasses import dataclass

from hpcml.errors import SpecError


@dataclass(frozen=True)
class Choice:
    interface: str
    address: str
    found_from: str  # how it was chosen, for the log and for error messages

    def describe(self) -> str:
        return f"{self.interface} ({self.address}, {self.found_from})"


def ipv4_addresses() -> dict[str, str]:
    """IPv4 address -> interface name, for every interface that has one."""
    import psutil  # a dependency of distributed

    return {a.address: name for name, addrs in psutil.net_if_addrs().items() for a in addrs
            if a.family == socket.AF_INET}


def hostname_address() -> tuple[str, str | None]:
    name = socket.gethostname()
    try:
        return name, socket.gethostbyname(name)
    except OSError:
        return name, None


def route_address(target: str = "8.8.8.8") -> str | None:
    """The source address the kernel picks for the default route out of this machine, as Dask's
    ``get_ip`` finds it (a UDP connect sends nothing); None where there is no such route."""
    try:
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
            sock.connect((target, 9))
            return sock.getsockname()[0]
    except OSError:
        return None


def _usable(address: str | None, known: dict[str, str]) -> bool:
    return address is not None and address in known and not ipaddress.ip_address(address).is_loopback


def reaching_interface() -> Choice:
    """The interface other nodes reach this machine on (see the module's docstring)."""
    known = ipv4_addresses()
    name, address = hostname_address()
    if _usable(address, known):
        return Choice(known[address], address, f"the address of hostname {name}")
    address = route_address()
    if _usable(address, known):
        return Choice(known[address], address, "the route out of this machine")
    return Choice("lo", "127.0.0.1", f"no other interface has an address (hostname {name} is {address or '?'}): "
                                     "only this machine's workers can connect")


def named_interface(interface: str, found_from: str = "backend.interface") -> Choice:
    """The IPv4 address of a named interface; bad input if it has none here."""
    known = ipv4_addresses()
    for address, name in known.items():
        if name == interface:
            return Choice(interface, address, found_from)
    have = ", ".join(sorted(set(known.values()))) or "none"
    raise SpecError.one("backend.interface", interface, f"no IPv4 address on this machine (interfaces: {have})")
