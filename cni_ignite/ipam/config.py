"""host-local-compatible IPAM configuration: parse and canonicalise, pure (no I/O).

Accepted keys under ``ipam``: ``subnet``/``rangeStart``/``rangeEnd``/``gateway`` (a legacy single range,
prepended as range set 0), ``ranges`` (a list of range sets: one address is leased from each set),
``routes``, ``dataDir``, ``resolvConf``. ``runtimeConfig.ipRanges`` is prepended too. Requested
addresses come from ``runtimeConfig.ips``, ``args.cni.ips`` and ``CNI_ARGS IP=`` (merged, as host-local).
With no range at all, addresses come from 10.61.0.0/16.
"""

from __future__ import annotations

import ipaddress
from typing import Any, NamedTuple

from ..errors import InvalidConfig
from ..netconf import NetConf, list_field, obj_field, str_field
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


def parse_ipam(conf: NetConf, cni_args: dict[str, str]) -> IpamConfig:
    ipam = obj_field(conf.raw, "ipam")
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
        resolv_conf=str_field(ipam, "resolvConf", where=where),
        requested=_requested(conf, cni_args),
    )


def _data_dir(path: str) -> str:
    if not path.startswith("/") or ".." in path.split("/"):
        raise InvalidConfig("ipam.dataDir must be an absolute path without '..'", path)
    return path.rstrip("/") or "/"


def _addr(value: object, what: str) -> IPAddress:
    try:
        return ipaddress.ip_address(str(value))
    except ValueError as exc:
        raise InvalidConfig(f"invalid {what}", str(value)) from exc


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
    subnet_text = raw.get("subnet")
    if not isinstance(subnet_text, str):
        raise InvalidConfig(f"range set {index}: missing subnet")
    try:
        subnet = ipaddress.ip_network(subnet_text)
    except ValueError as exc:
        raise InvalidConfig(f"range set {index}: invalid subnet {subnet_text}", str(exc)) from exc
    max_prefix = 30 if subnet.version == 4 else 126
    if subnet.prefixlen > max_prefix:
        raise InvalidConfig(f"network {subnet} too small to allocate from")
    first = subnet.network_address + 1
    last = subnet.broadcast_address - 1 if subnet.version == 4 else subnet.broadcast_address
    gateway = _addr(raw["gateway"], "gateway") if raw.get("gateway") else first
    start = _addr(raw["rangeStart"], "rangeStart") if raw.get("rangeStart") else first
    end = _addr(raw["rangeEnd"], "rangeEnd") if raw.get("rangeEnd") else last
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
    if not isinstance(raw, dict) or not isinstance(raw.get("dst"), str):
        raise InvalidConfig("ipam.routes entries need a dst", repr(raw))
    try:
        dst = ipaddress.ip_network(raw["dst"], strict=False)
    except ValueError as exc:
        raise InvalidConfig("invalid route dst", str(raw["dst"])) from exc
    gw = _addr(raw["gw"], "route gw") if raw.get("gw") else None
    return Route(dst=dst, gw=gw)


def _requested(conf: NetConf, cni_args: dict[str, str]) -> tuple[IPAddress, ...]:
    texts: list[Any] = list(list_field(conf.runtime_config, "ips", where="runtimeConfig."))
    cni = obj_field(conf.args, "cni", where="args.")
    texts += list_field(cni, "ips", where="args.cni.")
    if cni_args.get("IP"):
        texts += cni_args["IP"].split(",")
    out: list[IPAddress] = []
    for t in texts:
        ip = _addr(str(t).split("/")[0], "requested IP")  # the prefix, if any, is ignored (host-local)
        if ip not in out:
            out.append(ip)
    return tuple(out)
