"""Sticky addresses and reservations over the DiskStore: which address an owner gets, what its DEL leaves.

Records in the index folder (``<dataDir>/.ignite-index/<network>/``), all durable (a rebuild keeps them),
all read and written under the network's lock, each one file so that every lookup is O(1):

- ``o-<okey>``: the owner record of (owner, ifname) (okey = identity.owner_key): JSON
  ``{"owner", "ifname", "cid", "ips"}``; ``cid`` the container ID of the attachment holding its leases
  ("" after its DEL), ``ips`` the addresses leased to it or remembered for it. Each address is confirmed
  against its lease file before use, so a record that went stale (host-local, an operator) misleads no one.
- ``b-<hash(cid, ifname)>``: the okey of an attachment (written by ADD, removed by DEL/GC): a DEL, or a
  GC that has no CNI_ARGS, knows whose address it releases.
- ``rip-<ip>``: a reservation, JSON ``{"owner", "ifname", "mac", "source"}`` (source ``config`` or
  ``runtime``); ``res-<okey>``: the reserved addresses of (owner, ifname), one a line.
- ``config-reservations``: the ``ipam.reservations`` last applied (JSON); a call whose config differs
  applies the difference first.

What the network folder holds for an address (the truth, visible to host-local): a lease (in use), a HELD
placeholder (remembered for its owner; held while ``until`` is in the future), a RESERVED placeholder
(reserved and not in use), or nothing (never used, or forgotten).
"""

from __future__ import annotations

from .. import _json as json  # json's own C scanner/encoder without the json package (and re): cni_ignite/_json.py
from .._sha import sha256
from ..errors import InvalidConfig, TryAgainLater
from ..identity import owner_key
from .allocator import Exhausted, allocate
from .store import HELD, RESERVED, Slot, lease_name, parse_slot

TYPE_CHECKING = False  # not typing.TYPE_CHECKING: no typing import on a plugin's path (cni_ignite/__init__.py)
if TYPE_CHECKING:
    from collections.abc import Callable
    from typing import NamedTuple as Record

    from ..result import IPAddress
    from .config import IpamConfig, RangeSet, Reservation
    from .store import DiskStore
else:
    from .. import Record

CONFIG_STAMP = "config-reservations"


class Who(Record):
    """The attachment asking, and its owner."""
    cid: str
    ifname: str
    owner: str

    @property
    def key(self) -> str:
        return owner_key(self.owner, self.ifname)


class OwnerRecord(Record):
    owner: str
    ifname: str
    cid: str
    ips: tuple[IPAddress, ...]


class ResEntry(Record):
    owner: str
    ifname: str
    mac: str
    source: str  # "config" or "runtime"


def binding_name(cid: str, ifname: str) -> str:
    return "b-" + sha256(f"{cid}\0{ifname}".encode()).hexdigest()[:32]


# ------------------------------------------------------------------------------------------ records

def load_record(store: DiskStore, okey: str) -> OwnerRecord | None:
    data = store.read_meta("o-" + okey)
    if data is None:
        return None
    try:
        doc = json.loads(data)
        ips = tuple(ip for ip in (lease_name(t) for t in doc["ips"]) if ip is not None)
        return OwnerRecord(str(doc["owner"]), str(doc["ifname"]), str(doc["cid"]), ips)
    except (ValueError, KeyError, TypeError):
        return None  # a damaged record is forgotten, not fatal: the placeholders still hold the addresses


def save_record(store: DiskStore, rec: OwnerRecord) -> None:
    ips = sorted(set(rec.ips), key=lambda a: (a.version, a))
    doc = {"owner": rec.owner, "ifname": rec.ifname, "cid": rec.cid, "ips": [str(ip) for ip in ips]}
    store.write_meta("o-" + owner_key(rec.owner, rec.ifname), json.dumps(doc).encode())


def bound_key(store: DiskStore, cid: str, ifname: str) -> str | None:
    data = store.read_meta(binding_name(cid, ifname))
    return data.decode(errors="replace").strip() or None if data is not None else None


def reservation_at(store: DiskStore, ip: IPAddress) -> ResEntry | None:
    data = store.read_meta(f"rip-{ip}")
    if data is None:
        return None
    try:
        doc = json.loads(data)
        return ResEntry(str(doc["owner"]), str(doc["ifname"]), str(doc.get("mac") or ""), str(doc["source"]))
    except (ValueError, KeyError, TypeError):
        return None


def reserved_ips(store: DiskStore, okey: str) -> list[IPAddress]:
    data = store.read_meta("res-" + okey)
    if data is None:
        return []
    return [ip for ip in (lease_name(w) for w in data.decode(errors="replace").split()) if ip is not None]


def write_reservation(store: DiskStore, ip: IPAddress, entry: ResEntry | None, okey: str) -> None:
    """Add (entry) or remove (None) the reservation of `ip` for okey, in both records."""
    ips = [x for x in reserved_ips(store, okey) if x != ip]
    if entry is not None:
        store.write_meta(f"rip-{ip}", json.dumps(entry._asdict()).encode())
        ips.append(ip)
    else:
        store.write_meta(f"rip-{ip}", None)
    store.write_meta("res-" + okey, "\n".join(str(x) for x in ips).encode() if ips else None)


# ----------------------------------------------------------------------------- config reservations

def apply_config_reservations(store: DiskStore, sets: tuple[RangeSet, ...], items: tuple[Reservation, ...]) -> None:
    """Bring the dataDir in line with ``ipam.reservations`` (a no-op, one file read, when it already is).

    Checks every new reservation against the runtime ones before writing anything (code 7)."""
    want = [[str(r.address), r.owner, r.ifname, r.mac] for r in items]
    text = json.dumps(want).encode()
    old = store.read_meta(CONFIG_STAMP)
    if old == text or (old is None and not items):
        return
    try:
        before = {lease_name(a): (o, i, m) for a, o, i, m in json.loads(old or b"[]")}
    except (ValueError, TypeError):
        before = {}
    now_by_ip = {r.address: r for r in items}
    for r in items:
        have = reservation_at(store, r.address)
        if have is not None and have.source == "runtime" and (have.owner, have.ifname) != (r.owner, r.ifname):
            raise InvalidConfig(f"ipam.reservations: {r.address} is reserved for {have.owner}/{have.ifname} "
                                "by cni-ignite reserve", "unreserve it first, or pick another address")
        for other in reserved_ips(store, owner_key(r.owner, r.ifname)):
            entry = reservation_at(store, other)
            if (other != r.address and entry is not None and entry.source == "runtime"
                    and any(x.contains(other) for x in sets[r.range_id])):
                raise InvalidConfig(f"ipam.reservations: {r.owner}/{r.ifname} already has {other} reserved "
                                    "by cni-ignite reserve", f"not also {r.address}")
    for ip, (owner, ifname, _) in before.items():
        if ip is None or ip in now_by_ip:
            continue
        entry = reservation_at(store, ip)
        if entry is not None and entry.source == "config":
            write_reservation(store, ip, None, owner_key(owner, ifname))
            slot = _slot_at(store, ip)
            if slot is not None and slot.kind == RESERVED:
                store.release(ip)
    for r in items:
        okey = owner_key(r.owner, r.ifname)
        write_reservation(store, r.address, ResEntry(r.owner, r.ifname, r.mac, "config"), okey)
        data = store.read(r.address)
        if data is None or parse_slot(data) is not None:  # free, held, or reserved for someone: ours now
            store.put(r.address, Slot(RESERVED, r.owner, r.ifname).encode(), replace=data is not None)
    store.write_meta(CONFIG_STAMP, text)


def _slot_at(store: DiskStore, ip: IPAddress) -> Slot | None:
    data = store.read(ip)
    return parse_slot(data) if data is not None else None


# ------------------------------------------------------------------------------------------ ADD

class Picker:
    """Chooses one address per range set for `who`, under the lock; every step registers its undo."""

    def __init__(self, store: DiskStore, cfg: IpamConfig, who: Who, now: int, undo: Callable[..., None]) -> None:
        self.store, self.cfg, self.who, self.now, self._undo = store, cfg, who, now, undo
        self.lease = f"{who.cid}\r\n{who.ifname}".encode()
        self.mine_reserved = reserved_ips(store, who.key)
        rec = load_record(store, who.key) if cfg.sticky else None
        self.remembered = rec.ips if rec is not None else ()

    def pick(self, i: int, rs: RangeSet, wanted: IPAddress | None) -> IPAddress:
        in_set = [ip for ip in self.mine_reserved if any(r.contains(ip) for r in rs)]
        if wanted is not None:
            return self._requested(i, rs, wanted)
        for ip in in_set:
            if self._take(ip, reserved=True):
                return ip
            raise TryAgainLater(f"address {ip} reserved for {self.who.owner}/{self.who.ifname} is still leased "
                                f"to another attachment", self._holder_text(ip))
        for ip in self.remembered:
            if any(r.contains(ip) for r in rs) and ip not in self.cfg_gateways(rs) and self._take(ip):
                return ip
        last = self.store.last_reserved(i)
        try:
            ip = allocate(self.store, rs, i, None)
        except Exhausted:
            reclaimed = self._reclaim(rs)
            if reclaimed is None:
                raise
            return reclaimed
        self._undo(self.store.set_last_reserved, i, last)
        self._undo(self.store.release, ip)
        return ip

    @staticmethod
    def cfg_gateways(rs: RangeSet) -> set[IPAddress]:
        return {r.gateway for r in rs}

    def _requested(self, i: int, rs: RangeSet, ip: IPAddress) -> IPAddress:
        entry = reservation_at(self.store, ip)
        if entry is not None and (entry.owner, entry.ifname) != (self.who.owner, self.who.ifname):
            raise InvalidConfig(f"requested address {ip} is reserved for {entry.owner}/{entry.ifname}")
        slot = _slot_at(self.store, ip)
        if slot is not None and (slot.owner, slot.ifname) != (self.who.owner, self.who.ifname):
            if slot.kind == RESERVED:
                raise InvalidConfig(f"requested address {ip} is reserved for {slot.owner}/{slot.ifname}")
            if slot.until > self.now:
                raise InvalidConfig(f"requested address {ip} is held for {slot.owner}/{slot.ifname}",
                                    f"until {iso_time(slot.until)} (its last DEL plus the hold time)")
        if slot is not None and any(r.contains(ip) for r in rs) and ip not in self.cfg_gateways(rs):
            self._replace(ip)
            return ip
        last = self.store.last_reserved(i)
        got = allocate(self.store, rs, i, ip)
        self._undo(self.store.set_last_reserved, i, last)
        self._undo(self.store.release, got)
        return got

    def _take(self, ip: IPAddress, *, reserved: bool = False) -> bool:
        """Lease `ip` if it is free or a placeholder of this owner (and reserved for no one else)."""
        if not reserved:
            entry = reservation_at(self.store, ip)
            if entry is not None and (entry.owner, entry.ifname) != (self.who.owner, self.who.ifname):
                return False
        data = self.store.read(ip)
        if data is None:
            if self.store.put(ip, self.lease, replace=False):
                self._undo(self.store.release, ip)
                return True
            return False
        slot = parse_slot(data)
        if slot is not None and (slot.owner, slot.ifname) == (self.who.owner, self.who.ifname):
            self._replace(ip, data)
            return True
        return False

    def _replace(self, ip: IPAddress, old: bytes | None = None) -> None:
        old = self.store.read(ip) if old is None else old
        self.store.put(ip, self.lease, replace=True)
        if old is not None:
            self._undo(self.store.put, ip, old, replace=True)

    def _reclaim(self, rs: RangeSet) -> IPAddress | None:
        """The range set is full: take the least recently released address whose hold is over. O(leases),
        on this path only (host-local's walk of a full set is O(addresses) too)."""
        expired = [(slot.released, ip) for ip, slot in self.store.scan_slots().items()
                   if slot.kind == HELD and slot.until <= self.now and any(r.contains(ip) for r in rs)]
        for _, ip in sorted(expired, key=lambda t: (t[0], t[1].version, t[1])):
            if reservation_at(self.store, ip) is None:
                self._replace(ip)
                return ip
        return None

    def _holder_text(self, ip: IPAddress) -> str:
        data = self.store.read(ip) or b""
        return data.decode(errors="replace").replace("\r\n", "/")[:200]


def iso_time(ns: int) -> str:
    import time

    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(ns / 1e9))


def record_add(store: DiskStore, who: Who, got: list[IPAddress]) -> None:
    """After a sticky or reserved ADD: the owner record and the attachment's binding."""
    rec = load_record(store, who.key)
    keep = [ip for ip in (rec.ips if rec else ()) if _still_mine(store, ip, who)] + got
    save_record(store, OwnerRecord(who.owner, who.ifname, who.cid, tuple(keep)))
    store.write_meta(binding_name(who.cid, who.ifname), who.key.encode())


def _still_mine(store: DiskStore, ip: IPAddress, who: Who) -> bool:
    data = store.read(ip)
    if data is None:
        return True  # remembered, free: still the owner's first choice
    slot = parse_slot(data)
    return slot is not None and (slot.owner, slot.ifname) == (who.owner, who.ifname)


# ------------------------------------------------------------------------------------- DEL / GC

def release(store: DiskStore, cfg: IpamConfig, cid: str, ifname: str, ips: list[IPAddress],
            fallback_owner: str | None, now: int) -> None:
    """Release an attachment's leases: a reserved address becomes a RESERVED placeholder, with
    ``sticky`` the others HELD ones for its owner (until now + hold), else they are removed (host-local)."""
    okey = bound_key(store, cid, ifname)
    rec = load_record(store, okey) if okey else None
    owner = rec.owner if rec is not None else fallback_owner
    kept: list[IPAddress] = []
    for ip in ips:
        entry = reservation_at(store, ip)
        if entry is not None:
            store.put(ip, Slot(RESERVED, entry.owner, entry.ifname).encode(), replace=True)
            if owner is not None and (entry.owner, entry.ifname) == (owner, ifname):
                kept.append(ip)
        elif cfg.sticky and owner is not None:
            store.put(ip, Slot(HELD, owner, ifname, now, now + cfg.hold * 1_000_000_000).encode(), replace=True)
            kept.append(ip)
        else:
            store.release(ip)
    if owner is not None and (kept or rec is not None):
        who = Who(cid, ifname, owner)
        others = [ip for ip in (rec.ips if rec else ())
                  if ip not in kept and _still_mine_or_leased(store, ip, who, rec)]
        new_cid = rec.cid if rec is not None and rec.cid != cid else ""
        save_record(store, OwnerRecord(owner, ifname, new_cid, tuple(others + kept)))
    if okey is not None:
        store.write_meta(binding_name(cid, ifname), None)


def _still_mine_or_leased(store: DiskStore, ip: IPAddress, who: Who, rec: OwnerRecord | None) -> bool:
    if _still_mine(store, ip, who):
        return True
    holder = store.holder(ip)
    return rec is not None and rec.cid != who.cid and holder == (rec.cid, who.ifname)


# ------------------------------------------------------------------------------------- the bridge

def reservation_mac(data_dir: str, network: str, owner: str, ifname: str) -> str:
    """The MAC reserved for (owner, ifname) in `network`, or "" (no lock: two small reads, written atomically)."""
    from .store import DiskStore

    store = DiskStore(data_dir, network)
    for ip in reserved_ips(store, owner_key(owner, ifname)):
        entry = reservation_at(store, ip)
        if entry is not None and entry.mac:
            return entry.mac
    return ""


def attachment_of(data_dir: str, network: str, owner: str, ifname: str) -> str | None:
    """The container ID of the attachment of (owner, ifname) that holds leases in `network`, or None. O(1)."""
    from .store import DiskStore

    store = DiskStore(data_dir, network)
    rec = load_record(store, owner_key(owner, ifname))
    if rec is None or not rec.cid:
        return None
    return rec.cid if any(store.holder(ip) == (rec.cid, ifname) for ip in rec.ips) else None
