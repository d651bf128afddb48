"""Per-attachment state records and the host port registry, under a caller-given state_dir.

    <state_dir>/<network>/<key>              JSON: owner, backend, addresses, the rule-shaping config
    <state_dir>/ports/lock                   flock held while claiming ports and writing a record
    <state_dir>/ports/<proto>_<port>/<addr>  "<network>/<key>" of the owner; <addr> is any (no hostIP),
                                             any4 (0.0.0.0), any6 (::) or the hostIP itself

The kernel rules stay the truth for CHECK; a record lets DEL rebuild the exact rules it must remove
without listing anything, and GC find the attachments of a network. A port entry whose owner has no
record (an ADD that died between claiming and writing) is stale and may be reclaimed.
"""

from __future__ import annotations

import contextlib
import fcntl
import ipaddress
import json
import os
from typing import TYPE_CHECKING, Any, NamedTuple

from ..errors import CniError, IOFailure
from .naming import network_dir

if TYPE_CHECKING:
    from collections.abc import Iterator

    from .base import Address, AttachmentInfo, FirewallConfig, Owner, PortMapping


class PortConflict(CniError):
    """A host port is already mapped by another attachment (plugin-specific code)."""

    code = 100


class Record(NamedTuple):
    owner: Owner
    backend: str
    addresses: tuple[Address, ...]
    config: FirewallConfig
    ports: tuple[str, ...]  # registry entries: "<proto>_<port>/<addr>"


def record_path(state_dir: str, owner: Owner) -> str:
    return os.path.join(state_dir, network_dir(owner.network), owner.key)


def _config_doc(cfg: FirewallConfig) -> dict[str, Any]:
    return {"ipMasq": cfg.ip_masq, "forward": cfg.forward, "snat": cfg.snat, "masqAll": cfg.masq_all,
            "markMasqBit": cfg.mark_masq_bit, "externalSetMarkChain": cfg.external_set_mark_chain,
            "conditionsV4": list(cfg.conditions_v4), "conditionsV6": list(cfg.conditions_v6),
            "portMappings": [{"hostPort": m.host_port, "containerPort": m.container_port,
                              "protocol": m.protocol, "hostIP": m.host_ip} for m in cfg.port_mappings]}


def write(rec: Record) -> None:
    path = record_path(rec.config.state_dir, rec.owner)
    o = rec.owner
    doc = {"network": o.network, "containerID": o.container_id, "ifname": o.ifname, "key": o.key,
           "backend": rec.backend, "addresses": [str(a) for a in rec.addresses],
           "config": _config_doc(rec.config), "ports": list(rec.ports)}
    try:
        os.makedirs(os.path.dirname(path), mode=0o755, exist_ok=True)
        tmp = f"{path}.tmp{os.getpid()}"
        with open(tmp, "w", encoding="utf-8") as fh:
            json.dump(doc, fh)
        os.replace(tmp, path)
    except OSError as exc:
        raise IOFailure(f"cannot write firewall state {path}", str(exc)) from exc


def _decode(doc: dict[str, Any], state_dir: str) -> Record:
    from .base import FirewallConfig, Owner, parse_port_mappings

    c = doc["config"]
    cfg = FirewallConfig(
        ip_masq=bool(c["ipMasq"]), forward=bool(c["forward"]), snat=bool(c["snat"]), masq_all=bool(c["masqAll"]),
        mark_masq_bit=int(c["markMasqBit"]), external_set_mark_chain=c.get("externalSetMarkChain"),
        conditions_v4=tuple(c.get("conditionsV4", ())), conditions_v6=tuple(c.get("conditionsV6", ())),
        port_mappings=parse_port_mappings(c.get("portMappings")), state_dir=state_dir, backend=doc["backend"])
    owner = Owner(network=doc["network"], container_id=doc["containerID"], ifname=doc["ifname"])
    return Record(owner=owner, backend=doc["backend"], config=cfg, ports=tuple(doc.get("ports", ())),
                  addresses=tuple(ipaddress.ip_interface(a) for a in doc.get("addresses", ())))


def load(state_dir: str, owner: Owner) -> Record | None:
    path = record_path(state_dir, owner)
    try:
        with open(path, encoding="utf-8") as fh:
            return _decode(json.load(fh), state_dir)
    except FileNotFoundError:
        return None
    except (OSError, ValueError, KeyError, TypeError) as exc:
        raise IOFailure(f"unreadable firewall state {path}", str(exc)) from exc


def remove(state_dir: str, owner: Owner) -> None:
    with contextlib.suppress(FileNotFoundError):
        os.unlink(record_path(state_dir, owner))


def records(state_dir: str, network: str | None = None) -> Iterator[Record]:
    """Every readable record (of one network, or all); unreadable ones are skipped."""
    if network is not None:
        dirs = [network_dir(network)]
    else:
        try:
            dirs = [d for d in os.listdir(state_dir) if d != "ports"]
        except FileNotFoundError:
            return
    for d in dirs:
        try:
            names = os.listdir(os.path.join(state_dir, d))
        except (FileNotFoundError, NotADirectoryError):
            continue
        for name in names:
            if ".tmp" in name:
                continue
            try:
                with open(os.path.join(state_dir, d, name), encoding="utf-8") as fh:
                    yield _decode(json.load(fh), state_dir)
            except (OSError, ValueError, KeyError, TypeError):
                continue


def list_attachments(state_dir: str, network: str | None = None) -> list[AttachmentInfo]:
    from .base import AttachmentInfo

    return [AttachmentInfo(owner=r.owner, backend=r.backend, addresses=tuple(str(a) for a in r.addresses),
                           ports=tuple(r.ports)) for r in records(state_dir, network)]


# ------------------------------------------------------------------------------------------ port registry

def addr_token(m: PortMapping) -> str:
    if not m.host_ip:
        return "any"
    if not m.specific_ip():
        return f"any{m.family()}"
    return m.host_ip


def _overlaps(a: str, b: str) -> bool:
    if "any" in {a, b} or a == b:
        return True
    fam = {t: (int(t[3]) if t.startswith("any") else ipaddress.ip_address(t).version) for t in (a, b)}
    return fam[a] == fam[b] and (a.startswith("any") or b.startswith("any"))


@contextlib.contextmanager
def ports_lock(state_dir: str) -> Iterator[None]:
    folder = os.path.join(state_dir, "ports")
    try:
        os.makedirs(folder, mode=0o755, exist_ok=True)
        fd = os.open(os.path.join(folder, "lock"), os.O_RDWR | os.O_CREAT, 0o600)
    except OSError as exc:
        raise IOFailure(f"cannot open {folder}/lock", str(exc)) from exc
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        yield
    finally:
        os.close(fd)


def _owner_ref(owner: Owner) -> str:
    return f"{network_dir(owner.network)}/{owner.key}"


def claim_ports(state_dir: str, owner: Owner, mappings: tuple[PortMapping, ...]) -> tuple[str, ...]:
    """Register each mapping's host port for owner (hold ports_lock); PortConflict if another live
    attachment holds an overlapping one. Returns the entries (the caller records them)."""
    mine, entries = _owner_ref(owner), []
    for m in mappings:
        folder = os.path.join(state_dir, "ports", f"{m.protocol}_{m.host_port}")
        os.makedirs(folder, mode=0o755, exist_ok=True)
        token = addr_token(m)
        for other in os.listdir(folder):
            if not _overlaps(token, other):
                continue
            ref = _read(os.path.join(folder, other))
            if ref == mine:
                continue
            if ref and os.path.exists(os.path.join(state_dir, ref)):
                raise PortConflict(f"host port {m.protocol}/{m.host_port} ({m.host_ip or 'any address'}) is "
                                   f"already mapped by attachment {ref}", f"registry entry {folder}/{other}")
            with contextlib.suppress(FileNotFoundError):
                os.unlink(os.path.join(folder, other))  # stale: its owner has no state record
        path = os.path.join(folder, token)
        if _read(path) != mine:
            with open(path, "w", encoding="utf-8") as fh:
                fh.write(mine + "\n")
        entries.append(f"{m.protocol}_{m.host_port}/{token}")
    return tuple(dict.fromkeys(entries))


def _read(path: str) -> str:
    try:
        with open(path, encoding="utf-8") as fh:
            return fh.readline().strip()
    except FileNotFoundError:
        return ""


def release_ports(state_dir: str, owner: Owner, entries: tuple[str, ...]) -> None:
    """Remove owner's registry entries (only those still naming owner)."""
    mine = _owner_ref(owner)
    for entry in entries:
        path = os.path.join(state_dir, "ports", entry)
        if _read(path) == mine:
            with contextlib.suppress(FileNotFoundError):
                os.unlink(path)
        with contextlib.suppress(OSError):
            os.rmdir(os.path.dirname(path))
