"""ignite-ipam's verbs: glue between the skeleton, the config, the allocator and the store.

The bridge plugin calls these same functions in-process when ``ipam.type`` is ``ignite-ipam``.
"""

from __future__ import annotations

import contextlib
import ipaddress
from typing import TYPE_CHECKING, Any

from ..errors import CniError, InvalidConfig, IOFailure, PluginUnavailable
from ..netconf import parse_cni_args
from ..result import DNS, IPConfig, Result
from ..skel import Handlers
from .allocator import allocate, first_free
from .config import IpamConfig, RangeSet, parse_ipam
from .store import DiskStore, Owner

if TYPE_CHECKING:
    from collections.abc import Callable

    from ..result import IPAddress
    from ..skel import CmdArgs

# CNI_ARGS keys any of our plugins understands (the IPAM sees the bridge's environment).
KNOWN_ARGS = frozenset({"IP", "MAC", "TC_REDIRECT_TAP_NAME", "TC_REDIRECT_TAP_UID", "TC_REDIRECT_TAP_GID"})


def config_of(cmd: CmdArgs) -> IpamConfig:
    return parse_ipam(cmd.conf, parse_cni_args(cmd.args, KNOWN_ARGS))


def store_of(cfg: IpamConfig, cmd: CmdArgs) -> DiskStore:
    return DiskStore(cfg.data_dir, cmd.conf.name)


def add(cmd: CmdArgs) -> Result:
    cfg = config_of(cmd)
    owner: Owner = (cmd.container_id, cmd.ifname)
    wanted = _assign_requests(cfg)
    dns = read_resolv_conf(cfg.resolv_conf) if cfg.resolv_conf else DNS()
    store = store_of(cfg, cmd)
    with store.locked(), contextlib.ExitStack() as undo:
        store.owner = owner
        held = store.find(owner)
        got: list[IPAddress] = []
        for i, rs in enumerate(cfg.range_sets):
            mine = next((ip for ip in held if any(r.contains(ip) for r in rs)), None)
            if mine is not None and wanted[i] in (None, mine):
                got.append(mine)  # a repeated ADD returns the lease it already holds
                continue
            last = store.last_reserved(i)
            ip = allocate(store, rs, i, wanted[i])
            # Whatever fails next, this lease goes back and the set's last reserved address is as it was.
            undo.callback(_quietly, store.set_last_reserved, i, last)
            undo.callback(_quietly, store.release, ip)
            got.append(ip)
        store.set_index(owner, sorted(set(got) | set(held), key=lambda a: (a.version, a)))
        undo.pop_all()
    ips = tuple(_ip_config(ip, rs) for ip, rs in zip(got, cfg.range_sets, strict=True))
    return Result(ips=ips, routes=cfg.routes, dns=dns)


def delete(cmd: CmdArgs) -> None:
    cfg = config_of(cmd)
    store = store_of(cfg, cmd)
    owner: Owner = (cmd.container_id, cmd.ifname)
    with store.locked():
        ips = store.find(owner)
        if not ips:  # host-local: fall back to legacy leases that hold only the container ID
            owner = (cmd.container_id, "")
            ips = store.find(owner)
        for ip in ips:
            store.release(ip)
        if ips:
            store.set_index(owner, [])


def check(cmd: CmdArgs) -> None:
    cfg = config_of(cmd)
    store = store_of(cfg, cmd)
    with store.locked():
        if not store.find((cmd.container_id, cmd.ifname)) and not store.find((cmd.container_id, "")):
            raise CniError(f"no IP address leased to {cmd.container_id}/{cmd.ifname} in network {cmd.conf.name}")


def gc(cmd: CmdArgs) -> None:
    """Release every lease whose attachment is not in cni.dev/valid-attachments."""
    cfg = config_of(cmd)
    valid = valid_attachments(cmd.conf.raw)
    valid_ids = {cid for cid, _ in valid}
    store = store_of(cfg, cmd)
    with store.locked():
        for ip, owner in store.scan().items():
            if owner is None or (owner not in valid and not (owner[1] == "" and owner[0] in valid_ids)):
                store.release(ip)
        store.rebuild_index()


def status(cmd: CmdArgs) -> None:
    cfg = config_of(cmd)
    store = store_of(cfg, cmd)
    with store.locked():
        for i, rs in enumerate(cfg.range_sets):
            if first_free(store.is_taken, rs, store.last_reserved(i)) is None:
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


def _quietly(undo: Callable[..., None], *args: Any) -> None:
    """One step of a failed ADD's rollback. Its failure must not hide the ADD's own error; a lease that
    stays on disk is still found by DEL and GC, because the store does not stamp its index on an error
    path and the next command rebuilds the index from the lease files."""
    with contextlib.suppress(CniError, OSError):
        undo(*args)


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
