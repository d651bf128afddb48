"""The CNI result: one internal shape (the 1.x one), encoded to any spec version only at print time.

Pure data and functions. ``encode`` renders a Result in the config's cniVersion (0.1.0/0.2.0 ``ip4``/``ip6``,
0.3.x/0.4.0 ``ips[].version``, 1.x without it); ``decode`` reads a result of any supported version, as
printed by a delegated IPAM plugin or passed in as ``prevResult``.

Value types are NamedTuples (``cni_ignite.Record``: the class syntax of ``typing.NamedTuple`` at
``collections.namedtuple``'s cost) rather than frozen dataclasses: both are immutable and typed, but on a
plugin's start-up path ``dataclasses`` costs 7 ms to import (it pulls ``inspect``) plus ~0.5 ms per class
(measured in benchmarks/IMPORTS.md).
"""

from __future__ import annotations

from ipaddress import IPv4Address, IPv4Interface, IPv4Network, IPv6Address, IPv6Interface, IPv6Network

from . import ipparse
from .errors import DecodingFailure, IncompatibleVersion
from .version import SUPPORTED, at_least

TYPE_CHECKING = False  # not typing.TYPE_CHECKING: no typing import on a plugin's path (cni_ignite/__init__.py)
if TYPE_CHECKING:
    from typing import NamedTuple as Record
    from typing import TypeAlias
else:
    from . import Record

IPAddress: TypeAlias = IPv4Address | IPv6Address
IPInterface: TypeAlias = IPv4Interface | IPv6Interface
IPNetwork: TypeAlias = IPv4Network | IPv6Network


class Interface(Record):
    name: str
    mac: str = ""
    sandbox: str = ""
    mtu: int = 0
    socket_path: str = ""
    pci_id: str = ""


class IPConfig(Record):
    address: IPInterface
    gateway: IPAddress | None = None
    interface: int | None = None


class Route(Record):
    dst: IPNetwork
    gw: IPAddress | None = None
    mtu: int = 0
    advmss: int = 0
    priority: int = 0
    table: int | None = None
    scope: int | None = None


class DNS(Record):
    nameservers: tuple[str, ...] = ()
    domain: str = ""
    search: tuple[str, ...] = ()
    options: tuple[str, ...] = ()

    def is_empty(self) -> bool:
        return not (self.nameservers or self.domain or self.search or self.options)


class Result(Record):
    interfaces: tuple[Interface, ...] = ()
    ips: tuple[IPConfig, ...] = ()
    routes: tuple[Route, ...] = ()
    dns: DNS = DNS()

    def with_interfaces(self, interfaces: tuple[Interface, ...], ip_interface: int | None) -> Result:
        """This result with `interfaces` and every IP pointing at interface index `ip_interface`."""
        ips = tuple(ip._replace(interface=ip_interface) for ip in self.ips)
        return self._replace(interfaces=interfaces, ips=ips)


# ---------------------------------------------------------------------------------------------- encode

def encode(result: Result, version: str) -> dict[str, object]:
    if not at_least(version, "0.3.0"):
        return _encode_020(result, version)
    out: dict[str, object] = {"cniVersion": version}
    if result.interfaces:
        out["interfaces"] = [_encode_iface(i, version) for i in result.interfaces]
    if result.ips:
        out["ips"] = [_encode_ip(ip, version) for ip in result.ips]
    if result.routes:
        out["routes"] = [_encode_route(r, version) for r in result.routes]
    out["dns"] = _encode_dns(result.dns)
    return out


def _encode_iface(iface: Interface, version: str) -> dict[str, object]:
    out: dict[str, object] = {"name": iface.name}
    if iface.mac:
        out["mac"] = iface.mac
    if iface.sandbox:
        out["sandbox"] = iface.sandbox
    if at_least(version, "1.1.0"):
        if iface.mtu:
            out["mtu"] = iface.mtu
        if iface.socket_path:
            out["socketPath"] = iface.socket_path
        if iface.pci_id:
            out["pciID"] = iface.pci_id
    return out


def _encode_ip(ip: IPConfig, version: str) -> dict[str, object]:
    out: dict[str, object] = {}
    if not at_least(version, "1.0.0"):
        out["version"] = str(ip.address.version)
    if ip.interface is not None:
        out["interface"] = ip.interface
    out["address"] = str(ip.address)
    if ip.gateway is not None:
        out["gateway"] = str(ip.gateway)
    return out


def _encode_route(route: Route, version: str) -> dict[str, object]:
    out: dict[str, object] = {"dst": str(route.dst)}
    if route.gw is not None:
        out["gw"] = str(route.gw)
    if at_least(version, "1.1.0"):
        for key, value in (("mtu", route.mtu), ("advmss", route.advmss), ("priority", route.priority)):
            if value:
                out[key] = value
        if route.table is not None:
            out["table"] = route.table
        if route.scope is not None:
            out["scope"] = route.scope
    return out


def _encode_dns(dns: DNS) -> dict[str, object]:
    out: dict[str, object] = {}
    if dns.nameservers:
        out["nameservers"] = list(dns.nameservers)
    if dns.domain:
        out["domain"] = dns.domain
    if dns.search:
        out["search"] = list(dns.search)
    if dns.options:
        out["options"] = list(dns.options)
    return out


def _encode_020(result: Result, version: str) -> dict[str, object]:
    """0.1.0/0.2.0: first IPv4 and first IPv6 only, routes split by family (lossy, as libcni)."""
    out: dict[str, object] = {"cniVersion": version}
    for key, fam in (("ip4", 4), ("ip6", 6)):
        ip = next((i for i in result.ips if i.address.version == fam), None)
        if ip is None:
            continue
        block: dict[str, object] = {"ip": str(ip.address)}
        if ip.gateway is not None:
            block["gateway"] = str(ip.gateway)
        routes = [_encode_route(r, "0.2.0") for r in result.routes if r.dst.version == fam]
        if routes:
            block["routes"] = routes
        out[key] = block
    if "ip4" not in out and "ip6" not in out:
        raise IncompatibleVersion("cannot convert: no valid IP addresses", f"a {version} result needs an IP")
    out["dns"] = _encode_dns(result.dns)
    return out


# ---------------------------------------------------------------------------------------------- decode

def decode(doc: object) -> Result:
    """A result of any supported version (0.1.0 … 1.1.0) into the internal shape.

    The shape follows the document's ``cniVersion``, as libcni reads it: a 0.1.0/0.2.0 result is read by its
    ``ip4``/``ip6`` keys (an ``ips`` key there is unknown and ignored), a 0.3.0+ one by ``ips`` (``ip4``/``ip6``
    ignored). Without a supported cniVersion (our own callers' fragments) the keys decide."""
    if not isinstance(doc, dict):
        raise DecodingFailure("result is not a JSON object")
    version = doc.get("cniVersion")
    try:
        if isinstance(version, str) and version in SUPPORTED:
            legacy = not at_least(version, "0.3.0")
        else:
            legacy = "ip4" in doc or "ip6" in doc
        if legacy:
            return _decode_020(doc)
        return Result(
            interfaces=tuple(_decode_iface(i) for i in _list(doc, "interfaces")),
            ips=tuple(_decode_ip(i) for i in _list(doc, "ips")),
            routes=tuple(_decode_route(r) for r in _list(doc, "routes")),
            dns=_decode_dns(doc.get("dns")),
        )
    except (ValueError, TypeError, KeyError, AttributeError, OverflowError) as exc:
        raise DecodingFailure("malformed result", str(exc)) from exc


def _list(doc: dict[str, object], key: str) -> list[dict[str, object]]:
    value = doc.get(key) or []
    if not isinstance(value, list) or not all(isinstance(v, dict) for v in value):
        raise TypeError(f"{key} must be a list of objects")
    return value


def _decode_iface(d: dict[str, object]) -> Interface:
    return Interface(name=str(d["name"]), mac=str(d.get("mac") or ""), sandbox=str(d.get("sandbox") or ""),
                     mtu=int(d.get("mtu") or 0),  # type: ignore[call-overload]
                     socket_path=str(d.get("socketPath") or ""), pci_id=str(d.get("pciID") or ""))


def _decode_ip(d: dict[str, object]) -> IPConfig:
    gw = d.get("gateway")
    iface = d.get("interface")
    return IPConfig(address=ipparse.ip_interface(d["address"], "ips[].address"),
                    gateway=_opt_addr(gw, "ips[].gateway"),
                    interface=int(iface) if isinstance(iface, int) else None)


def _decode_route(d: dict[str, object]) -> Route:
    gw = d.get("gw")
    table, scope = d.get("table"), d.get("scope")
    return Route(dst=ipparse.ip_network(d["dst"], "routes[].dst"),
                 gw=_opt_addr(gw, "routes[].gw"),
                 mtu=_int(d.get("mtu")), advmss=_int(d.get("advmss")), priority=_int(d.get("priority")),
                 table=table if isinstance(table, int) else None,
                 scope=scope if isinstance(scope, int) else None)


def _opt_addr(value: object, what: str) -> IPAddress | None:
    """An optional address: missing, null and "" are absent (as Go's empty net.IP); anything else must parse."""
    return None if value is None or value == "" else ipparse.ip_address(value, what)


def _int(value: object) -> int:
    return value if isinstance(value, int) else 0


def _decode_dns(d: object) -> DNS:
    if not isinstance(d, dict):
        return DNS()
    return DNS(nameservers=_strs(d, "nameservers"), domain=str(d.get("domain") or ""),
               search=_strs(d, "search"), options=_strs(d, "options"))


def _strs(d: dict[str, object], key: str) -> tuple[str, ...]:
    value = d.get(key) or []
    if not isinstance(value, list):  # a bare string would otherwise be split into characters
        raise TypeError(f"dns.{key} must be a list of strings")
    return tuple(str(s) for s in value)


def _decode_020(doc: dict[str, object]) -> Result:
    ips: list[IPConfig] = []
    routes: list[Route] = []
    for key in ("ip4", "ip6"):
        block = doc.get(key)
        if not isinstance(block, dict):
            continue
        gw = block.get("gateway")
        ips.append(IPConfig(address=ipparse.ip_interface(block["ip"], f"{key}.ip"),
                            gateway=_opt_addr(gw, f"{key}.gateway")))
        routes.extend(_decode_route(r) for r in _list(block, "routes"))
    return Result(ips=tuple(ips), routes=tuple(routes), dns=_decode_dns(doc.get("dns")))
