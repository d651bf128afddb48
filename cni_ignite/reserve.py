"""`cni-ignite reserve` / `unreserve` and the data of `cni-ignite leases`, as functions (admin.py and
leases.py wire them to the command line). Not on any plugin's path.

A runtime reservation is stored in the network's dataDir (``rip-<ip>``, ``res-<okey>``, and a RESERVED
placeholder lease, see ipam/sticky.py) under the network's lock, the same flock the plugins and host-local
take. Everything is checked before anything is written: an address outside the ranges, on a gateway,
reserved for someone else, leased to another owner's attachment or held for another owner is refused
(InvalidConfig, code 7) and the dataDir is left as it was.
"""

from __future__ import annotations

import json
import os
import time
from typing import Any, NamedTuple

from .errors import CniError, InvalidConfig
from .identity import owner_key
from .ipam import sticky
from .ipam.config import DEFAULT_IFNAME, IpamConfig, Reservation, check_reservations, parse_ipam, parse_reservation
from .ipam.store import HELD, RESERVED, DiskStore, Slot, flocked, lease_name, parse_slot
from .netconf import NetConf, load_object, parse_netconf

OUR_IPAM = ("ignite-ipam",)


class Network(NamedTuple):
    conf: NetConf
    ipam: IpamConfig


def network_of(doc: dict[str, Any]) -> Network:
    """A network from a plugin configuration (``name``, ``cniVersion``, ``ipam``) or a whole conflist
    (its first plugin whose ``ipam.type`` is ignite-ipam)."""
    if isinstance(doc.get("plugins"), list):
        for plugin in doc["plugins"]:
            if isinstance(plugin, dict) and isinstance(plugin.get("ipam"), dict) \
                    and plugin["ipam"].get("type") in OUR_IPAM:
                doc = {**plugin, "name": doc.get("name"), "cniVersion": doc.get("cniVersion", "1.0.0")}
                break
        else:
            raise InvalidConfig(f"network {doc.get('name')!r} has no plugin with an ignite-ipam ipam block")
    conf = parse_netconf(json.dumps(doc).encode())
    return Network(conf, parse_ipam(conf, {}))


def find_network(conf_dir: str, name: str) -> Network:
    """The network called `name` among the .conflist/.conf/.json files of `conf_dir` (libcni's extensions)."""
    for entry in sorted(os.listdir(conf_dir)):
        if not entry.endswith((".conflist", ".conf", ".json")):
            continue
        with open(os.path.join(conf_dir, entry), "rb") as f:
            try:
                doc = load_object(f.read())
            except CniError:  # another tool's broken file is not ours to judge here
                continue
        if doc.get("name") == name:
            return network_of(doc)
    raise InvalidConfig(f"no network named {name!r} in {conf_dir}")


def _store(net: Network) -> DiskStore:
    return DiskStore(net.ipam.data_dir, net.conf.name)


def reserve(net: Network, owner: str, address: str, ifname: str = DEFAULT_IFNAME, mac: str = "") -> Reservation:
    """Pin `address` (and `mac`) to (owner, ifname) in `net`. Idempotent for the same values."""
    raw = {"owner": owner, "address": address, "ifname": ifname, "mac": mac}
    res = parse_reservation(raw, net.ipam.range_sets, "reservation")
    store = _store(net)
    now = time.time_ns()
    with store.locked():
        sticky.apply_config_reservations(store, net.ipam.range_sets, net.ipam.reservations)
        okey = owner_key(res.owner, res.ifname)
        have = sticky.reservation_at(store, res.address)
        if have is not None and (have.owner, have.ifname) != (res.owner, res.ifname):
            raise InvalidConfig(f"{res.address} is already reserved for {have.owner}/{have.ifname}",
                                f"({have.source})")
        if have is not None and have.source == "config":
            raise InvalidConfig(f"{res.address} is reserved for {owner}/{ifname} by ipam.reservations",
                                "change it there")
        mine = [Reservation(e.owner, e.ifname, ip, e.mac, _set_of(net, ip))
                for ip, e in _all_reservations(store).items() if ip != res.address]
        check_reservations((*mine, res))  # one address per set, no MAC twice
        data = store.read(res.address)
        if data is not None:
            slot = parse_slot(data)
            if slot is None:
                _refuse_if_leased_to_another(store, res, data)
            elif (slot.owner, slot.ifname) != (res.owner, res.ifname) and slot.kind == HELD and slot.until > now:
                raise InvalidConfig(f"{res.address} is held for {slot.owner}/{slot.ifname}",
                                    f"until {sticky.iso_time(slot.until)}")
        sticky.write_reservation(store, res.address, sticky.ResEntry(res.owner, res.ifname, res.mac, "runtime"), okey)
        if data is None or parse_slot(data) is not None:
            store.put(res.address, Slot(RESERVED, res.owner, res.ifname).encode(), replace=data is not None)
    return res


def unreserve(net: Network, owner: str, address: str | None = None, ifname: str = DEFAULT_IFNAME) -> list[str]:
    """Drop the runtime reservations of (owner, ifname) (only `address`'s when given); returns the addresses.
    A freed address stays remembered for the owner (sticky, hold over) or becomes free."""
    store = _store(net)
    okey = owner_key(owner, ifname)
    now = time.time_ns()
    with store.locked():
        sticky.apply_config_reservations(store, net.ipam.range_sets, net.ipam.reservations)
        ips = sticky.reserved_ips(store, okey)
        if address is not None:
            ips = [ip for ip in ips if str(ip) == address]
            if not ips:
                raise InvalidConfig(f"{address} is not reserved for {owner}/{ifname}")
        for ip in ips:
            entry = sticky.reservation_at(store, ip)
            if entry is not None and entry.source == "config":
                raise InvalidConfig(f"{ip} is reserved by ipam.reservations", "remove it there")
        for ip in ips:
            sticky.write_reservation(store, ip, None, okey)
            data = store.read(ip)
            slot = parse_slot(data) if data is not None else None
            if slot is not None and slot.kind == RESERVED:
                if net.ipam.sticky:
                    store.put(ip, Slot(HELD, owner, ifname, now, now).encode(), replace=True)
                else:
                    store.release(ip)
    return [str(ip) for ip in ips]


def _set_of(net: Network, ip: Any) -> int:
    return next((i for i, rs in enumerate(net.ipam.range_sets) if any(r.contains(ip) for r in rs)), -1)


def _all_reservations(store: DiskStore) -> dict[Any, sticky.ResEntry]:
    out = {}
    for name in os.listdir(store.idx):
        if name.startswith("rip-"):
            ip = lease_name(name[4:])
            entry = sticky.reservation_at(store, ip) if ip is not None else None
            if ip is not None and entry is not None:
                out[ip] = entry
    return out


def _refuse_if_leased_to_another(store: DiskStore, res: Reservation, data: bytes) -> None:
    text = data.decode(errors="replace").strip()
    cid, _, ifname = text.partition("\r\n")
    okey = sticky.bound_key(store, cid, ifname)
    rec = sticky.load_record(store, okey) if okey else None
    if rec is None or (rec.owner, rec.ifname) != (res.owner, res.ifname):
        who = f"{rec.owner}/{rec.ifname}" if rec else "an unknown owner"
        raise InvalidConfig(f"{res.address} is leased to container {cid}/{ifname} of {who}",
                            "reserve it after that attachment's DEL")


# ------------------------------------------------------------------------------------------ leases

class LeaseRow(NamedTuple):
    address: str
    state: str  # "in use", "reserved", "held", "remembered" (free, remembered for the owner)
    owner: str  # "" when not known (a lease host-local wrote, or a network without sticky)
    ifname: str
    container: str  # the attachment's container ID ("" for placeholders)
    mac: str  # a reserved MAC, or ""
    until: float  # held: seconds since the epoch the hold ends; else 0
    reserved: bool  # in use by a reservation's owner, or reserved


def lease_rows(data_dir: str, network: str) -> list[LeaseRow]:
    """Every address of `network` that is leased, held, remembered or reserved, read under its lock."""
    store = DiskStore(data_dir, network)
    if not os.path.isdir(store.dir):
        return []
    now = time.time_ns()
    rows: list[LeaseRow] = []
    with flocked(os.path.join(store.dir, "lock"), 10.0):
        reserved = _all_reservations(store) if os.path.isdir(store.idx) else {}
        for ip, (owner, slot) in store.scan_all().items():
            entry = reserved.get(ip)
            mac = entry.mac if entry else ""
            if slot is not None:
                state = ("reserved" if slot.kind == RESERVED else "held" if slot.until > now else "remembered")
                until = slot.until / 1e9 if state == "held" else 0.0
                rows.append(LeaseRow(str(ip), state, slot.owner, slot.ifname, "", mac, until, entry is not None))
                continue
            cid, ifname = owner if owner is not None else ("", "")
            okey = sticky.bound_key(store, cid, ifname) if owner is not None and os.path.isdir(store.idx) else None
            rec = sticky.load_record(store, okey) if okey else None
            rows.append(LeaseRow(str(ip), "in use", rec.owner if rec else "", ifname, cid, mac, 0.0,
                                 entry is not None))
    rows.sort(key=lambda r: (lease_name(r.address).version, lease_name(r.address)))  # type: ignore[union-attr]
    return rows
