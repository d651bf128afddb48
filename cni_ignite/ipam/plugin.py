"""ignite-ipam's verbs: glue between the skeleton, the config, the allocator and the store.

Sticky addresses and reservations (sticky.py) take part when the config asks for them (``sticky``,
``reservations``) or the dataDir holds a reservation for the owner (``cni-ignite reserve``); otherwise
every verb is host-local's.

The bridge plugin calls these same functions in-process when ``ipam.type`` is ``ignite-ipam``.
"""

from __future__ import annotations

import contextlib
import ipaddress
import time

from ..errors import CniError, InvalidConfig, IOFailure, PluginUnavailable
from ..identity import OWNER_ARG, owner_of
from ..netconf import parse_cni_args
from ..result import DNS, IPConfig, Result
from ..skel import Handlers, step
from . import sticky
from .allocator import first_free
from .config import IpamConfig, RangeSet, parse_ipam
from .store import HELD, DiskStore, Owner

TYPE_CHECKING = False  # not typing.TYPE_CHECKING: no typing import on a plugin's path (cni_ignite/__init__.py)
if TYPE_CHECKING:
    from collections.abc import Callable
    from typing import Any

    from ..result import IPAddress
    from ..skel import CmdArgs

# CNI_ARGS keys any of our plugins understands (the IPAM sees the bridge's environment), and the explicit
# owner. K8S_POD_* stay unknown as for host-local: the runtimes that send them also send IgnoreUnknown=1.
KNOWN_ARGS = frozenset({"IP", "MAC", "TC_REDIRECT_TAP_NAME", "TC_REDIRECT_TAP_UID", "TC_REDIRECT_TAP_GID", OWNER_ARG})


def config_of(cmd: CmdArgs) -> IpamConfig:
    return parse_ipam(cmd.conf, parse_cni_args(cmd.args, KNOWN_ARGS), cleanup=cmd.command in ("DEL", "GC"))


def store_of(cfg: IpamConfig, cmd: CmdArgs) -> DiskStore:
    return DiskStore(cfg.data_dir, cmd.conf.name)


def who_of(cmd: CmdArgs, *, strict: bool) -> sticky.Who:
    cni = cmd.conf.args.get("cni")
    if strict and cni is not None and not isinstance(cni, dict):
        raise InvalidConfig("args.cni must be an object", repr(cni)[:200])
    owner = owner_of(cmd.container_id, cmd.args, cni if isinstance(cni, dict) else None, strict=strict)
    return sticky.Who(cmd.container_id, cmd.ifname, owner)


def add(cmd: CmdArgs) -> Result:
    cfg = config_of(cmd)
    step("ipam config")
    # The owner is checked strictly where the config makes it matter; elsewhere a malformed one (which
    # host-local would not look at) only fails to match a runtime reservation.
    who = who_of(cmd, strict=cfg.sticky or bool(cfg.reservations))
    owner: Owner = (cmd.container_id, cmd.ifname)
    wanted = _assign_requests(cfg)
    dns = read_resolv_conf(cfg.resolv_conf) if cfg.resolv_conf else DNS()
    store = store_of(cfg, cmd)
    with store.locked(), contextlib.ExitStack() as undo:
        store.owner = owner
        sticky.apply_config_reservations(store, cfg.range_sets, cfg.reservations)
        held = store.find(owner)

        def on_failure(step: Callable[..., None], *args: Any, **kwargs: Any) -> None:
            undo.callback(_quietly, step, *args, **kwargs)

        picker = sticky.Picker(store, cfg, who, time.time_ns(), on_failure)
        got: list[IPAddress] = []
        for i, rs in enumerate(cfg.range_sets):
            mine = next((ip for ip in held if any(r.contains(ip) for r in rs)), None)
            if mine is not None and wanted[i] in (None, mine):
                got.append(mine)  # a repeated ADD returns the lease it already holds
                continue
            got.append(picker.pick(i, rs, wanted[i]))
        store.set_index(owner, sorted(set(got) | set(held), key=lambda a: (a.version, a)))
        if cfg.sticky or picker.mine_reserved:
            sticky.record_add(store, who, got)
        undo.pop_all()
    step("ipam lease")
    ips = tuple(_ip_config(ip, rs) for ip, rs in zip(got, cfg.range_sets, strict=True))
    return Result(ips=ips, routes=cfg.routes, dns=dns)


def delete(cmd: CmdArgs) -> None:
    cfg = config_of(cmd)
    store = store_of(cfg, cmd)
    owner: Owner = (cmd.container_id, cmd.ifname)
    with store.locked():
        if cfg.range_known:
            sticky.apply_config_reservations(store, cfg.range_sets, cfg.reservations)
        ips = store.find(owner)
        if not ips:  # host-local: fall back to legacy leases that hold only the container ID
            owner = (cmd.container_id, "")
            ips = store.find(owner)
        if ips:
            sticky.release(store, cfg, owner[0], owner[1], ips, who_of(cmd, strict=False).owner, time.time_ns())
            store.set_index(owner, [])
    step("ipam release")


def check(cmd: CmdArgs) -> None:
    cfg = config_of(cmd)
    store = store_of(cfg, cmd)
    with store.locked():
        if not store.find((cmd.container_id, cmd.ifname)) and not store.find((cmd.container_id, "")):
            raise CniError(f"no IP address leased to {cmd.container_id}/{cmd.ifname} in network {cmd.conf.name}")


def gc(cmd: CmdArgs) -> None:
    """Release every lease whose attachment is not in cni.dev/valid-attachments, as its DEL would (with
    ``sticky`` the owner's hold starts); placeholders (held, reserved addresses) are not leases."""
    cfg = config_of(cmd)
    valid = valid_attachments(cmd.conf.raw)
    valid_ids = {cid for cid, _ in valid}
    store = store_of(cfg, cmd)
    now = time.time_ns()
    with store.locked():
        if cfg.range_known:
            sticky.apply_config_reservations(store, cfg.range_sets, cfg.reservations)
        gone: dict[Owner, list[IPAddress]] = {}
        for ip, owner in store.scan().items():
            if owner is None:
                store.release(ip)
            elif owner not in valid and not (owner[1] == "" and owner[0] in valid_ids):
                gone.setdefault(owner, []).append(ip)
        for (cid, ifname), ips in gone.items():
            sticky.release(store, cfg, cid, ifname, ips, cid, now)
        store.refresh_index()  # drops entries of released leases; best effort (a full disk must not fail GC)


def status(cmd: CmdArgs) -> None:
    cfg = config_of(cmd)
    store = store_of(cfg, cmd)
    with store.locked():
        sticky.apply_config_reservations(store, cfg.range_sets, cfg.reservations)
        for i, rs in enumerate(cfg.range_sets):
            if first_free(store.is_taken, rs, store.last_reserved(i)) is None and not _reclaimable(store, rs):
                raise PluginUnavailable(f"no IP addresses available in range set {i}: {_describe(rs)}")


HANDLERS = Handlers(add=add, delete=delete, check=check, gc=gc, status=status)


# ------------------------------------------------------------------------------------------- helpers

def valid_attachments(doc: dict[str, Any]) -> set[Owner]:
    raw = doc.get("cni.dev/valid-attachments", doc.get("cni.dev/attachments"))
    if raw is None:  # an empty list releases everything; a missing one is a caller's mistake, not a wish
        raise InvalidConfig("GC needs cni.dev/valid-attachments (an empty list releases every lease)")
    if not isinstance(raw, list):
        raise InvalidConfig("cni.dev/valid-attachments must be a list")
    out: set[Owner] = set()
    for item in raw:
        if not isinstance(item, dict) or not isinstance(item.get("containerID"), str):
            raise InvalidConfig("invalid entry in cni.dev/valid-attachments", repr(item))
        out.add((item["containerID"], str(item.get("ifname") or "")))
    return out


def _reclaimable(store: DiskStore, rs: RangeSet) -> bool:
    """A full set still serves an ADD when an address's hold is over (O(leases), a full set only)."""
    now = time.time_ns()
    return any(s.kind == HELD and s.until <= now and any(r.contains(ip) for r in rs)
               for ip, s in store.scan_slots().items())


def _quietly(undo: Callable[..., None], *args: Any, **kwargs: Any) -> None:
    """One step of a failed ADD's rollback. Its failure must not hide the ADD's own error; a lease that
    stays on disk is still found by DEL and GC, because the store does not stamp its index on an error
    path and the next command rebuilds the index from the lease files."""
    with contextlib.suppress(CniError, OSError):
        undo(*args, **kwargs)


def _assign_requests(cfg: IpamConfig) -> list[IPAddress | None]:
    """Map each requested address to the range set containing it; every request must land somewhere."""
    wanted: list[IPAddress | None] = [None] * len(cfg.range_sets)
    for ip in cfg.requested:
        for i, rs in enumerate(cfg.range_sets):
            if wanted[i] is None and any(r.contains(ip) for r in rs):
                wanted[i] = ip
                break
        else:
            raise CniError(f"failed to allocate all requested IPs: {ip} is in no free range set")
    return wanted


def _ip_config(ip: IPAddress, rs: RangeSet) -> IPConfig:
    r = next(r for r in rs if r.contains(ip))
    return IPConfig(address=ipaddress.ip_interface(f"{ip}/{r.subnet.prefixlen}"), gateway=r.gateway)


def _describe(rs: RangeSet) -> str:
    return ",".join(str(r) for r in rs)


def read_resolv_conf(path: str) -> DNS:
    try:
        with open(path, encoding="utf-8", errors="replace") as f:
            lines = f.read().splitlines()
    except OSError as exc:
        raise IOFailure(f"cannot read resolvConf {path}", str(exc)) from exc
    servers: list[str] = []
    search: list[str] = []
    options: list[str] = []
    domain = ""
    for line in lines:
        words = line.split("#", 1)[0].split()
        if len(words) < 2:
            continue
        key, rest = words[0], words[1:]
        if key == "nameserver":
            servers.append(rest[0])
        elif key == "domain":
            domain = rest[0]
        elif key == "search":
            search += rest
        elif key == "options":
            options += rest
    return DNS(nameservers=tuple(servers), domain=domain, search=tuple(search), options=tuple(options))
