"""host-local-compatible IPAM configuration: parse and canonicalise, pure (no I/O).

Accepted keys under ``ipam``: ``subnet``/``rangeStart``/``rangeEnd``/``gateway`` (a legacy single range,
prepended as range set 0), ``ranges`` (a list of range sets: one address is leased from each set),
``routes``, ``dataDir``, ``resolvConf``. ``runtimeConfig.ipRanges`` is prepended too. Requested
addresses come from ``runtimeConfig.ips``, ``args.cni.ips`` and ``CNI_ARGS IP=`` (merged, as host-local).
With no range at all, addresses come from 10.61.0.0/16.
"""

from __future__ import annotations

from typing import Any, NamedTuple

from .. import ipparse
from ..errors import InvalidConfig
from ..netconf import NetConf, go_get, go_view, list_field, obj_field, str_field
from ..result import IPAddress, IPNetwork, Route
from ..version import at_least

DEFAULT_SUBNET = "10.61.0.0/16"
DEFAULT_DATA_DIR = "/var/lib/cni/networks"


class Range(NamedTuple):
    subnet: IPNetwork
    start: IPAddress
    end: IPAddress
    gateway: IPAddress

    def contains(self, ip: IPAddress) -> bool:
        return ip.version == self.start.version and self.start <= ip <= self.end  # type: ignore[operator]

    def __str__(self) -> str:
        return f"{self.start}-{self.end}"


RangeSet = tuple[Range, ...]


class IpamConfig(NamedTuple):
    range_sets: tuple[RangeSet, ...]
    routes: tuple[Route, ...]
    data_dir: str
    resolv_conf: str
    requested: tuple[IPAddress, ...]


# The keys of host-local's IPAMConfig, Range and types.Route. Go's encoding/json matches them ignoring
# case, and go-cni sends runtimeConfig.ipRanges with the Go field names ("Subnet", "RangeStart", ...).
IPAM_KEYS = ("subnet", "rangeStart", "rangeEnd", "gateway", "ranges", "routes", "dataDir", "resolvConf")
RANGE_KEYS = ("subnet", "rangeStart", "rangeEnd", "gateway")
ROUTE_KEYS = ("dst", "gw")


def parse_ipam(conf: NetConf, cni_args: dict[str, str]) -> IpamConfig:
    ipam = go_view(obj_field(conf.raw, "ipam"), IPAM_KEYS)
    where = "ipam."
    sets: list[RangeSet] = []
    for raw_set in list_field(conf.runtime_config, "ipRanges", where="runtimeConfig."):
        sets.append(_parse_set(raw_set, len(sets)))
    if ipam.get("subnet") is not None:
        sets.append((_parse_range(ipam, len(sets)),))
    for raw_set in list_field(ipam, "ranges", where=where):
        sets.append(_parse_set(raw_set, len(sets)))
    if not sets:
        sets.append((_parse_range({"subnet": DEFAULT_SUBNET}, 0),))
    _check_overlaps(sets)
    if not at_least(conf.cni_version, "0.3.0"):
        fams = [s[0].subnet.version for s in sets]
        if len(fams) != len(set(fams)):
            raise InvalidConfig("too many ranges", f"cniVersion {conf.cni_version} allows one range set per family")
    return IpamConfig(
        range_sets=tuple(sets),
        routes=tuple(_parse_route(r) for r in list_field(ipam, "routes", where=where)),
        data_dir=_data_dir(str_field(ipam, "dataDir", default=DEFAULT_DATA_DIR, where=where)),
        resolv_conf=_resolv_conf(str_field(ipam, "resolvConf", where=where)),
        requested=_requested(conf, cni_args),
    )


def _data_dir(path: str) -> str:
    if not path.startswith("/") or ".." in path.split("/"):
        raise InvalidConfig("ipam.dataDir must be an absolute path without '..'", path)
    if "\0" in path:
        raise InvalidConfig("ipam.dataDir must not contain a NUL byte", repr(path))
    return path.rstrip("/") or "/"


def _resolv_conf(path: str) -> str:
    if "\0" in path:
        raise InvalidConfig("ipam.resolvConf must not contain a NUL byte", repr(path))
    return path


def _addr(value: object, what: str) -> IPAddress:
    try:
        return ipparse.ip_address(value, what)
    except ValueError as exc:
        raise InvalidConfig(f"invalid {what}", repr(value)) from exc


def _opt_addr(raw: dict[str, Any], key: str, what: str) -> IPAddress | None:
    """An optional address: missing, null and "" (Go's empty net.IP) are absent; anything else must parse."""
    value = raw.get(key)
    return None if value is None or value == "" else _addr(value, what)


def _parse_set(raw: object, index: int) -> RangeSet:
    if not isinstance(raw, list) or not raw:
        raise InvalidConfig(f"range set {index} must be a non-empty list of ranges", repr(raw))
    out = tuple(_parse_range(r, index) for r in raw)
    if len({r.subnet.version for r in out}) > 1:
        raise InvalidConfig(f"range set {index}: mixed address families")
    return out


def _parse_range(raw: object, index: int) -> Range:
    if not isinstance(raw, dict):
        raise InvalidConfig(f"range set {index}: a range must be an object", repr(raw))
    raw = go_view(raw, RANGE_KEYS)
    subnet_text = raw.get("subnet")
    if subnet_text is None or subnet_text == "":
        raise InvalidConfig(f"range set {index}: missing subnet")
    try:
        subnet = ipparse.ip_network(subnet_text, "subnet", strict=True)
    except ValueError as exc:
        raise InvalidConfig(f"range set {index}: invalid subnet {subnet_text!r}", str(exc)) from exc
    max_prefix = 30 if subnet.version == 4 else 126
    if subnet.prefixlen > max_prefix:
        raise InvalidConfig(f"network {subnet} too small to allocate from")
    first = subnet.network_address + 1
    last = subnet.broadcast_address - 1 if subnet.version == 4 else subnet.broadcast_address
    gateway = _opt_addr(raw, "gateway", "gateway")
    start = _opt_addr(raw, "rangeStart", "rangeStart")
    end = _opt_addr(raw, "rangeEnd", "rangeEnd")
    gateway = first if gateway is None else gateway
    start = first if start is None else start
    end = last if end is None else end
    if gateway.version != subnet.version:
        raise InvalidConfig(f"gateway {gateway} is not of the family of network {subnet}")
    for name, ip in (("rangeStart", start), ("rangeEnd", end)):
        if ip not in subnet or not first <= ip <= last:  # type: ignore[operator]
            raise InvalidConfig(f"{name} {ip} not in network {subnet}")
    if start > end:  # type: ignore[operator]
        raise InvalidConfig(f"rangeStart {start} is after rangeEnd {end}")
    return Range(subnet=subnet, start=start, end=end, gateway=gateway)


def _check_overlaps(sets: list[RangeSet]) -> None:
    flat = [(i, r) for i, s in enumerate(sets) for r in s]
    for a, (i, ra) in enumerate(flat):
        for j, rb in flat[a + 1:]:
            if ra.start.version == rb.start.version and ra.start <= rb.end and rb.start <= ra.end:  # type: ignore[operator]
                if i == j:
                    raise InvalidConfig(f"range set {i}: ranges {ra} and {rb} overlap")
                raise InvalidConfig(f"range set {i} overlaps with {j}", f"{ra} and {rb}")


def _parse_route(raw: object) -> Route:
    if not isinstance(raw, dict):
        raise InvalidConfig("ipam.routes entries need a dst", repr(raw))
    raw = go_view(raw, ROUTE_KEYS)
    if raw.get("dst") is None or raw.get("dst") == "":
        raise InvalidConfig("ipam.routes entries need a dst", repr(raw))
    try:
        dst = ipparse.ip_network(raw["dst"], "route dst")
    except ValueError as exc:
        raise InvalidConfig("invalid route dst", repr(raw["dst"])) from exc
    return Route(dst=dst, gw=_opt_addr(raw, "gw", "route gw"))


def _requested(conf: NetConf, cni_args: dict[str, str]) -> tuple[IPAddress, ...]:
    texts: list[Any] = list(list_field(conf.runtime_config, "ips", where="runtimeConfig."))
    cni = go_get(conf.args, "cni")
    if cni is not None and not isinstance(cni, dict):
        raise InvalidConfig("args.cni must be an object", repr(cni))
    texts += list_field(go_view(cni or {}, ("ips",)), "ips", where="args.cni.")
    if cni_args.get("IP"):
        texts += cni_args["IP"].split(",")
    out: list[IPAddress] = []
    for t in texts:
        try:  # an address, or one with a prefix that is ignored (host-local)
            ip = ipparse.ip_interface(t, "requested IP").ip
        except ValueError as exc:
            raise InvalidConfig("invalid requested IP", repr(t)) from exc
        if ip not in out:
            out.append(ip)
    return tuple(out)
