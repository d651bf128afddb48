"""host-local-compatible IPAM configuration: parse and canonicalise, pure (no I/O).

Accepted keys under ``ipam``: ``subnet``/``rangeStart``/``rangeEnd``/``gateway`` (a legacy single range,
prepended as range set 0), ``ranges`` (a list of range sets: one address is leased from each set),
``routes``, ``dataDir``, ``resolvConf``. ``runtimeConfig.ipRanges`` is prepended too. Requested
addresses come from ``runtimeConfig.ips``, ``args.cni.ips`` and ``CNI_ARGS IP=`` (merged, as host-local).
With no range at all, addresses come from 10.61.0.0/16.

Our own keys (an ipam block without them behaves exactly as host-local):

- ``subnetFile``: the multi-node agent's subnet file (flannel's ``subnet.env``, e.g.
  ``/run/flannel/subnet.env``): this host's subnet (``FLANNEL_SUBNET``, its address the gateway) becomes
  range set 0 and a route to the whole network (``FLANNEL_NETWORK``) is returned. A missing file is code
  11 (the agent has not leased a subnet yet). It is the only key whose parsing reads a file.

- ``sticky``: ``true`` (hold time 1h), ``false``, or ``{"hold": H}`` with H integer seconds or a duration
  text (``"90s"``, ``"30m"``, ``"1h30m"``, ``"7d"``, ``"0"``). After an owner's DEL its addresses are
  remembered in the dataDir; the owner's next ADD gets them back whenever they are free. For ``hold``
  after the DEL no other owner gets them; after that they are given to others only when the range
  set has no never-used address left, least recently released first. ``hold: 0`` = best effort only.
- ``reservations``: ``[{"owner": O, "address": A, "ifname": "eth0", "mac": M}]`` pins an address (and a
  MAC, optional) to (owner, ifname); ``ifname`` defaults to ``eth0``. An address outside the ranges, on
  a gateway, or in two reservations, and two addresses for one (owner, ifname) in one range set, are
  rejected (code 7). Reservations apply whether or not ``sticky`` is on.
"""

from __future__ import annotations

from .. import ipparse
from ..errors import InvalidConfig, TryAgainLater
from ..identity import valid_owner
from ..netconf import NetConf, go_get, go_view, list_field, obj_field, str_field
from ..result import IPAddress, IPNetwork, Route
from ..version import at_least

TYPE_CHECKING = False  # not typing.TYPE_CHECKING: no typing import on a plugin's path (cni_ignite/__init__.py)
if TYPE_CHECKING:
    from typing import Any
    from typing import NamedTuple as Record
else:
    from .. import Record

DEFAULT_SUBNET = "10.61.0.0/16"
DEFAULT_DATA_DIR = "/var/lib/cni/networks"
DEFAULT_HOLD = 3600  # seconds: covers a VM/pod restart and a host reboot; after it, best effort
DEFAULT_IFNAME = "eth0"
# As text: re is imported, and the pattern compiled, only when a reservation has a MAC (not on every call).
MAC_RE = r"^[0-9a-f]{2}(:[0-9a-f]{2}){5}\Z"
# Checked with str methods (no re on the plugins' path; tests/unit/test_import_cost.py compares them):
# DURATION = r"^(?:(\d{1,9})d)?(?:(\d{1,9})h)?(?:(\d{1,9})m)?(?:(\d{1,9})s)?\Z" (\d: any Unicode digit, as
# str.isdecimal), and an ifname must not contain r"[/:\s]" (\s: str.isspace).
DURATION = r"^(?:(\d{1,9})d)?(?:(\d{1,9})h)?(?:(\d{1,9})m)?(?:(\d{1,9})s)?\Z"


def duration_groups(text: str) -> tuple[str | None, ...] | None:
    """``re.match(DURATION, text).groups()``, or None when it does not match."""
    groups: list[str | None] = []
    pos = 0
    for unit in "dhms":
        end = pos
        while end < len(text) and text[end].isdecimal():
            end += 1
        if pos < end <= pos + 9 and text[end:end + 1] == unit:
            groups.append(text[pos:end])
            pos = end + 1
        else:
            groups.append(None)
    return tuple(groups) if pos == len(text) else None


def _is_mac(text: str) -> bool:
    import re  # only for a reservation with a MAC

    return re.match(MAC_RE, text) is not None


def ifname_bad_char(ifname: str) -> bool:
    r"""``re.search(r"[/:\s]", ifname) is not None``."""
    return any(c in "/:" or c.isspace() for c in ifname)


class Range(Record):
    subnet: IPNetwork
    start: IPAddress
    end: IPAddress
    gateway: IPAddress

    def contains(self, ip: IPAddress) -> bool:
        return ip.version == self.start.version and self.start <= ip <= self.end  # type: ignore[operator]

    def __str__(self) -> str:
        return f"{self.start}-{self.end}"


RangeSet = tuple[Range, ...]


class Reservation(Record):
    """An address (and optionally a MAC) pinned to (owner, ifname) in range set `range_id`."""
    owner: str
    ifname: str
    address: IPAddress
    mac: str
    range_id: int


class IpamConfig(Record):
    range_sets: tuple[RangeSet, ...]
    routes: tuple[Route, ...]
    data_dir: str
    resolv_conf: str
    requested: tuple[IPAddress, ...]
    sticky: bool = False
    hold: int = 0  # seconds an owner's released address stays reserved for it (when sticky)
    reservations: tuple[Reservation, ...] = ()
    # False for a DEL/GC whose subnetFile is missing: its range is unknown, so the configured reservations were
    # not parsed and must not be applied (that would drop them); releasing by container ID needs no range.
    range_known: bool = True


# The keys of host-local's IPAMConfig, Range and types.Route. Go's encoding/json matches them ignoring
# case, and go-cni sends runtimeConfig.ipRanges with the Go field names ("Subnet", "RangeStart", ...).
IPAM_KEYS = ("subnet", "rangeStart", "rangeEnd", "gateway", "ranges", "routes", "dataDir", "resolvConf", "sticky",
             "reservations", "subnetFile")
RESERVATION_KEYS = ("owner", "address", "ifname", "mac")
RANGE_KEYS = ("subnet", "rangeStart", "rangeEnd", "gateway")
ROUTE_KEYS = ("dst", "gw")


def parse_ipam(conf: NetConf, cni_args: dict[str, str], *, cleanup: bool = False) -> IpamConfig:
    """``cleanup`` (DEL, GC): a subnetFile that does not exist (yet) is no error, as after a reboot that cleared
    /run before the multi-node agent wrote it again: the attachment's leases must still be released."""
    raw_ipam = obj_field(conf.raw, "ipam")
    kind = go_get(raw_ipam, "type")
    if not isinstance(kind, str) or not kind:
        raise InvalidConfig("ipam.type must be a non-empty string", repr(kind)[:100])
    ipam = go_view(raw_ipam, IPAM_KEYS)
    where = "ipam."
    sets: list[RangeSet] = []
    for raw_set in list_field(conf.runtime_config, "ipRanges", where="runtimeConfig."):
        sets.append(_parse_set(raw_set, len(sets)))
    extra_routes: tuple[Route, ...] = ()
    range_known = True
    if ipam.get("subnetFile") is not None:  # the multi-node agent's subnet file: this host's range
        try:
            env = _subnet_env(ipam.get("subnetFile"))
        except TryAgainLater:
            if not cleanup:
                raise
            range_known = False
        else:
            gw = env.subnet.ip
            sets.append((_parse_range({"subnet": str(env.subnet.network), "gateway": str(gw)}, len(sets)),))
            extra_routes = (Route(dst=env.network),)  # the whole network (other hosts) via the gateway
    if ipam.get("subnet") is not None:
        sets.append((_parse_range(ipam, len(sets)),))
    for raw_set in list_field(ipam, "ranges", where=where):
        sets.append(_parse_set(raw_set, len(sets)))
    if not sets and range_known:
        sets.append((_parse_range({"subnet": DEFAULT_SUBNET}, 0),))
    _check_overlaps(sets)
    if not at_least(conf.cni_version, "0.3.0"):
        fams = [s[0].subnet.version for s in sets]
        if len(fams) != len(set(fams)):
            raise InvalidConfig("too many ranges", f"cniVersion {conf.cni_version} allows one range set per family")
    sticky, hold = _sticky(ipam.get("sticky"))
    range_sets = tuple(sets)
    reservations = tuple(parse_reservation(r, range_sets, f"ipam.reservations[{i}]")
                         for i, r in enumerate(list_field(ipam, "reservations", where=where))) if range_known else ()
    check_reservations(reservations)
    return IpamConfig(
        range_sets=range_sets,
        routes=extra_routes + tuple(_parse_route(r) for r in list_field(ipam, "routes", where=where)),
        data_dir=_data_dir(str_field(ipam, "dataDir", default=DEFAULT_DATA_DIR, where=where)),
        resolv_conf=_resolv_conf(str_field(ipam, "resolvConf", where=where)),
        requested=_requested(conf, cni_args),
        sticky=sticky,
        hold=hold,
        reservations=reservations,
        range_known=range_known,
    )


def _subnet_env(path: object) -> Any:
    """``subnetFile``: an absolute path to a flannel-format subnet.env (the only I/O of config parsing)."""
    if not isinstance(path, str) or not path.startswith("/") or "\0" in path:
        raise InvalidConfig("ipam.subnetFile must be an absolute path", repr(path)[:200])
    from ..subnetenv import read_subnet_env

    return read_subnet_env(path)


def _sticky(raw: object) -> tuple[bool, int]:
    if raw is None or raw is False:
        return False, 0
    if raw is True:
        return True, DEFAULT_HOLD
    if not isinstance(raw, dict):
        raise InvalidConfig("ipam.sticky must be true, false or an object", repr(raw)[:200])
    unknown = sorted(k for k in raw if k.casefold() != "hold")
    if unknown:
        raise InvalidConfig("ipam.sticky: unknown keys", ", ".join(map(repr, unknown))[:200])
    value = go_get(raw, "hold")
    return True, DEFAULT_HOLD if value is None else parse_duration(value, "ipam.sticky.hold")


def parse_duration(value: object, what: str) -> int:
    """Seconds from an integer or a duration text (``"90s"``, ``"1h30m"``, ``"7d"``, ``"0"``)."""
    if isinstance(value, int) and not isinstance(value, bool):
        seconds = value
    elif value == "0":
        seconds = 0
    else:
        m = duration_groups(value) if isinstance(value, str) else None
        if m is None or not any(m):
            raise InvalidConfig(f"{what} must be seconds or a duration like 90s, 30m, 1h30m, 7d", repr(value)[:200])
        d, h, mi, s = (int(g or 0) for g in (m or ()))
        seconds = ((d * 24 + h) * 60 + mi) * 60 + s
    if not 0 <= seconds <= 10 * 365 * 86400:
        raise InvalidConfig(f"{what} out of range", f"{seconds}s not in [0, 10 years]")
    return seconds


def parse_reservation(raw: object, sets: tuple[RangeSet, ...], where: str) -> Reservation:
    """One reservation, checked against the range sets: inside a range, not a gateway."""
    if not isinstance(raw, dict):
        raise InvalidConfig(f"{where} must be an object", repr(raw)[:200])
    unknown = sorted(k for k in raw if k.casefold() not in {x.casefold() for x in RESERVATION_KEYS})
    if unknown:
        raise InvalidConfig(f"{where}: unknown keys", ", ".join(map(repr, unknown))[:200])
    raw = go_view(raw, RESERVATION_KEYS)
    owner = raw.get("owner")
    if not valid_owner(owner):
        raise InvalidConfig(f"{where}.owner must be 1-253 printable characters", repr(owner)[:200])
    ifname = raw.get("ifname", DEFAULT_IFNAME)
    if (not isinstance(ifname, str) or not ifname or len(ifname.encode()) > 15 or ifname in (".", "..")
            or ifname_bad_char(ifname) or not ifname.isprintable()):
        raise InvalidConfig(f"{where}.ifname is not an interface name", repr(ifname)[:200])
    if raw.get("address") is None:
        raise InvalidConfig(f"{where} needs an address")
    address = _addr(raw["address"], f"{where}.address")
    mac = raw.get("mac") or ""
    if not isinstance(mac, str) or (mac and not _is_mac(mac.lower())):
        raise InvalidConfig(f"{where}.mac is not a MAC address (aa:bb:cc:dd:ee:ff)", repr(mac)[:200])
    mac = mac.lower()
    if mac and int(mac[:2], 16) & 1:
        raise InvalidConfig(f"{where}.mac {mac} is a multicast address")
    if mac == "00:00:00:00:00:00":
        raise InvalidConfig(f"{where}.mac must not be all zeros")
    for i, rs in enumerate(sets):
        if any(r.gateway == address for r in rs):
            raise InvalidConfig(f"{where}: {address} is a gateway of range set {i}")
        if any(r.contains(address) for r in rs):
            assert isinstance(owner, str)
            return Reservation(owner=owner, ifname=ifname, address=address, mac=mac, range_id=i)
    raise InvalidConfig(f"{where}: {address} is in no range of this network",
                        "; ".join(",".join(str(r) for r in rs) for rs in sets))


def check_reservations(items: tuple[Reservation, ...]) -> None:
    """No address, MAC, or (owner, ifname, range set) twice."""
    seen_ip: dict[IPAddress, Reservation] = {}
    seen_mac: dict[str, Reservation] = {}
    seen_slot: dict[tuple[str, str, int], Reservation] = {}
    seen_owner: dict[tuple[str, str], Reservation] = {}
    for r in items:
        other = seen_ip.setdefault(r.address, r)
        if other is not r:
            raise InvalidConfig(f"address {r.address} is reserved twice",
                                f"for {other.owner}/{other.ifname} and {r.owner}/{r.ifname}")
        if r.mac:
            other = seen_mac.setdefault(r.mac, r)
            if other is not r and (other.owner, other.ifname) != (r.owner, r.ifname):
                raise InvalidConfig(f"MAC {r.mac} is reserved twice",
                                    f"for {other.owner}/{other.ifname} and {r.owner}/{r.ifname}")
        other = seen_owner.setdefault((r.owner, r.ifname), r)
        if r.mac and other.mac and other.mac != r.mac:
            raise InvalidConfig(f"{r.owner}/{r.ifname} is given two MACs", f"{other.mac} and {r.mac}")
        other = seen_slot.setdefault((r.owner, r.ifname, r.range_id), r)
        if other is not r:
            raise InvalidConfig(f"{r.owner}/{r.ifname} has two reservations in range set {r.range_id}",
                                f"{other.address} and {r.address}")


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
