"""Per-attachment state records and the host port registry, under a caller-given state_dir.

    <state_dir>/<network>/<key>              JSON: owner, backend, addresses, the rule-shaping config,
                                             host interface, the backend's rule layout (absent: 1)
    <state_dir>/<network>/tmp/<key>.<pid>    a record being written (temp file + rename); one left
                                             behind is a writer that died, removed by its key's DEL
    <state_dir>/ports/lock                   flock held while claiming ports and writing a record, and
                                             while releasing ports (every change of the registry)
    <state_dir>/_nft-shared/<chain>/<key>    empty: key's elements jump to the shared nft chain <chain>
                                             (a folder per chain: creating it tells the first user,
                                             removing it when empty the last, in O(1), no listing)
    <state_dir>/ports/<proto>_<port>/<addr>  "<network>/<key>" of the owner; <addr> is any (no hostIP),
                                             any4 (0.0.0.0), any6 (::) or the hostIP itself; written
                                             whole (temp file + rename)

The kernel rules stay the truth for CHECK; a record lets DEL rebuild the exact rules it must remove
without listing anything, and GC find the attachments of a network. An ADD writes its record (with the
entries it is about to claim) before it claims, and a DEL releases before it removes the record, so
whatever an ADD that died or failed holds is named by a record its DEL finds; a port entry whose owner
has no record (left by older code) is stale and may be reclaimed. That judgement and every release
happen under the lock, so a release never deletes an entry another ADD has just written, and a temp
file seen under the lock (``.<addr>.tmp<pid>``) is a dead writer's: claims and releases remove it.
A record's own temp file (``tmp/<key>.<pid>``) of a writer that died is removed with the record: DEL lists
``tmp/`` (empty but for dead writers), never the folder of records, which holds one entry per attachment.
(Records written before ``tmp/`` kept theirs beside them as ``<key>.tmp<pid>``; readers skip such names.)
A record is input to the rule scripts on DEL, so it is read back through the same strict parsing as the
config (addresses without ``%zone``).
"""

from __future__ import annotations

import contextlib
import fcntl
import os
from _thread import get_ident

from .. import _json as json
from ..errors import CniError, InvalidConfig, IOFailure
from ..ipparse import ip_address, ip_interface
from .naming import network_dir

TYPE_CHECKING = False  # not typing.TYPE_CHECKING: no typing import on a plugin's path (cni_ignite/__init__.py)
if TYPE_CHECKING:
    from collections.abc import Iterator
    from typing import Any
    from typing import NamedTuple as _Record

    from .base import Address, AttachmentInfo, FirewallConfig, Owner, PortMapping
else:
    from .. import Record as _Record  # a NamedTuple at namedtuple's cost (cni_ignite/__init__.py)


class PortConflict(CniError):
    """A host port is already mapped by another attachment (plugin-specific code)."""

    code = 100


LAYOUTS = (1, 2)  # nftables: 2 = shared sets and maps, 1 = per-attachment chains; iptables: 1


class Record(_Record):
    owner: Owner
    backend: str
    addresses: tuple[Address, ...]
    config: FirewallConfig
    ports: tuple[str, ...]  # registry entries: "<proto>_<port>/<addr>"
    host_iface: str = ""  # the attachment's host interface (nft layout 2 keys elements by it)
    layout: int = 1  # the backend's rule layout that made the rules (1: before the field existed)


TMP = "tmp"  # beside a network's records: the temp files of record writes (a key is hex: never "tmp")


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
           "config": _config_doc(rec.config), "ports": list(rec.ports), "hostIface": rec.host_iface,
           "layout": rec.layout}
    tmp_dir = os.path.join(os.path.dirname(path), TMP)
    try:
        os.makedirs(tmp_dir, mode=0o755, exist_ok=True)
        _write_whole(path, json.dumps(doc), os.path.join(tmp_dir, f"{o.key}.{os.getpid()}"))
    except OSError as exc:
        raise IOFailure(f"cannot write firewall state {path}", str(exc)) from exc


def _write_whole(path: str, text: str, tmp: str) -> None:
    """Write text to path atomically: readers see the old content or all of the new, never a part."""
    try:
        with open(tmp, "w", encoding="utf-8") as fh:
            fh.write(text)
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise


def _decode(doc: dict[str, Any], state_dir: str) -> Record:
    """A record's JSON → Record through the config's own parsing (a record feeds DEL's rule scripts);
    anything malformed raises ValueError / KeyError / TypeError (the callers' "unreadable")."""
    from .base import Owner, parse_firewall_config

    backend, c = doc["backend"], dict(doc["config"])
    if backend not in {"iptables", "nftables"}:
        raise ValueError(f"unknown backend {backend!r}")
    if c.get("externalSetMarkChain") is not None:
        c.pop("markMasqBit", None)  # the record holds both; the config allows only one
    try:
        cfg = parse_firewall_config({**c, "backend": "auto", "stateDir": state_dir},
                                    {"portMappings": c.get("portMappings")})._replace(backend=backend)
    except InvalidConfig as exc:
        raise ValueError(str(exc)) from exc
    names = (doc["network"], doc["containerID"], doc["ifname"])
    if not all(isinstance(v, str) for v in names):
        raise TypeError("network, containerID and ifname must be strings")
    owner = Owner(network=names[0], container_id=names[1], ifname=names[2])
    ports = tuple(doc.get("ports", ()))
    if not all(isinstance(e, str) and _entry_token(e) for e in ports):
        raise ValueError(f"bad port registry entries {ports!r}")
    host_iface, layout = doc.get("hostIface", ""), doc.get("layout", 1)
    if not isinstance(host_iface, str) or layout not in LAYOUTS or isinstance(layout, bool):
        raise ValueError(f"bad hostIface {host_iface!r} or layout {layout!r}")
    return Record(owner=owner, backend=backend, config=cfg, ports=ports, host_iface=host_iface, layout=layout,
                  addresses=tuple(ip_interface(a) for a in doc.get("addresses", ())))


class RecordUnreadable(IOFailure):
    """A record is there but reading it failed (an I/O error, not its content): a repeated call may read it."""


def load(state_dir: str, owner: Owner) -> Record | None:
    """owner's record; None when there is none. RecordUnreadable when it cannot be read, IOFailure when
    its content is no valid record (both code 5)."""
    path = record_path(state_dir, owner)
    try:
        with open(path, encoding="utf-8") as fh:
            return _decode(json.load(fh), state_dir)
    except FileNotFoundError:
        return None
    except OSError as exc:
        raise RecordUnreadable(f"unreadable firewall state {path}", str(exc)) from exc
    except (ValueError, KeyError, TypeError) as exc:
        raise IOFailure(f"unreadable firewall state {path}", str(exc)) from exc


def remove(state_dir: str, owner: Owner) -> None:
    """Delete owner's record and the temp files of its writers that died (``tmp/<key>.<pid>``): only ``tmp/``
    is listed (O(dead writers)), not the records beside it (O(attachments))."""
    path = record_path(state_dir, owner)
    folder, prefix = os.path.join(os.path.dirname(path), TMP), f"{owner.key}."  # a key has no '.'
    try:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(path)
        try:
            names = os.listdir(folder)
        except FileNotFoundError:
            return
        for name in names:
            if name.startswith(prefix):
                with contextlib.suppress(FileNotFoundError):
                    os.unlink(os.path.join(folder, name))
    except OSError as exc:
        raise IOFailure(f"cannot remove firewall state {path}", str(exc)) from exc


def records(state_dir: str, network: str | None = None) -> Iterator[Record]:
    """Every readable record (of one network, or all); unreadable ones are skipped."""
    if network is not None:
        dirs = [network_dir(network)]
    else:
        try:
            dirs = [d for d in os.listdir(state_dir) if d not in {"ports", SHARED_DIR}]
        except FileNotFoundError:
            return
    for d in dirs:
        try:
            names = os.listdir(os.path.join(state_dir, d))
        except (FileNotFoundError, NotADirectoryError):
            continue
        for name in names:
            if ".tmp" in name or name == TMP:
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
    return m.specific_ip()


def port_entries(mappings: tuple[PortMapping, ...]) -> tuple[str, ...]:
    """The registry entries "<proto>_<port>/<addr>" that claim_ports makes for mappings (in its order)."""
    return tuple(dict.fromkeys(f"{m.protocol}_{m.host_port}/{addr_token(m)}" for m in mappings))


# A registry entry is "<tcp|udp|sctp>_<port 1-65535, no leading zero>/<token>", the token an address, a prefix
# or any/any4/any6 ([0-9a-f.:]{2,45}); checked with str methods: no `re` import on a DEL (benchmarks/IMPORTS.md).
_PROTOS = frozenset(("tcp", "udp", "sctp"))
_TOKEN_CHARS = frozenset("0123456789abcdef.:")


def _family(token: str) -> int | None:
    """4 or 6 for a registry address token, None for "any"; ValueError when it is not a token (a temp file)."""
    if token == "any":
        return None
    if token in {"any4", "any6"}:
        return int(token[3])
    addr = ip_address(token, "registry entry")
    if str(addr) != token:
        raise ValueError(f"registry entry {token!r} is not canonical")
    return addr.version


def _entry_token(entry: str) -> str:
    """The address token of a registry entry "<proto>_<port>/<token>" ("" when it is not one)."""
    head, sep, token = entry.partition("/")
    proto, _, port = head.partition("_")
    if (not sep or proto not in _PROTOS or not (1 <= len(port) <= 5) or not port.isascii() or not port.isdigit()
            or port[0] == "0" or int(port) > 65535
            or not (token in {"any", "any4", "any6"} or (2 <= len(token) <= 45 and set(token) <= _TOKEN_CHARS))):
        return ""
    try:
        _family(token)
    except ValueError:
        return ""
    return token


def _overlaps(a: str, b: str) -> bool:
    """Do two address tokens share an address (both valid tokens)?"""
    if "any" in {a, b} or a == b:
        return True
    return _family(a) == _family(b) and (a.startswith("any") or b.startswith("any"))


_HELD: set[tuple[str, int]] = set()  # (state_dir, thread) holding ports_lock: nesting does not deadlock


@contextlib.contextmanager
def ports_lock(state_dir: str) -> Iterator[None]:
    """The registry's exclusive lock (flock: every process and thread; re-entrant in one thread)."""
    held = (state_dir, get_ident())
    if held in _HELD:
        yield
        return
    folder = os.path.join(state_dir, "ports")
    try:
        os.makedirs(folder, mode=0o755, exist_ok=True)
        fd = os.open(os.path.join(folder, "lock"), os.O_RDWR | os.O_CREAT, 0o600)
    except OSError as exc:
        raise IOFailure(f"cannot open {folder}/lock", str(exc)) from exc
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX)
        except OSError as exc:
            raise IOFailure(f"cannot lock {folder}/lock", str(exc)) from exc
        _HELD.add(held)
        try:
            yield
        finally:
            _HELD.discard(held)
    finally:
        os.close(fd)


def _owner_ref(owner: Owner) -> str:
    return f"{network_dir(owner.network)}/{owner.key}"


def claim_ports(state_dir: str, owner: Owner, mappings: tuple[PortMapping, ...]) -> tuple[str, ...]:
    """Register each mapping's host port for owner; PortConflict if another live attachment holds an
    overlapping one. The caller holds ports_lock (and has written owner's record naming these entries:
    port_entries). Returns the entries. A file-system failure is IOFailure (5). A claim that fails
    leaves nothing of its own: the entries it made are released, an emptied port folder removed."""
    mine, entries, folder = _owner_ref(owner), [], ""
    try:
        for m in mappings:
            folder = os.path.join(state_dir, "ports", f"{m.protocol}_{m.host_port}")
            _claim_one(state_dir, mine, m, folder)
            entries.append(f"{m.protocol}_{m.host_port}/{addr_token(m)}")
    except BaseException:
        with contextlib.suppress(CniError):  # the claim's own error is the one to report
            release_ports(state_dir, owner, tuple(entries))
        if folder:
            with contextlib.suppress(OSError):
                os.rmdir(folder)  # only when empty: made by this claim, or emptied of stale entries
        raise
    return tuple(dict.fromkeys(entries))


def _claim_one(state_dir: str, mine: str, m: PortMapping, folder: str) -> None:
    token = addr_token(m)
    try:
        os.makedirs(folder, mode=0o755, exist_ok=True)
        for other in os.listdir(folder):
            path = os.path.join(folder, other)
            try:
                _family(other)
            except ValueError:  # a temp file left by a writer that died (we hold the lock)
                with contextlib.suppress(FileNotFoundError):
                    os.unlink(path)
                continue
            if not _overlaps(token, other):
                continue
            ref = _read(path)
            if ref == mine:
                continue
            if ref and os.path.exists(os.path.join(state_dir, ref)):
                raise PortConflict(f"host port {m.protocol}/{m.host_port} ({m.host_ip or 'any address'}) is "
                                   f"already mapped by attachment {ref}", f"registry entry {path}")
            with contextlib.suppress(FileNotFoundError):
                os.unlink(path)  # stale: its owner has no state record
        path = os.path.join(folder, token)
        if _read(path) != mine:
            _write_whole(path, mine + "\n", os.path.join(folder, f".{token}.tmp{os.getpid()}"))
    except OSError as exc:
        raise IOFailure(f"cannot claim host port {m.protocol}/{m.host_port}", f"{folder}: {exc}") from exc


def _read(path: str) -> str:
    try:
        with open(path, encoding="utf-8") as fh:
            return fh.readline().strip()
    except FileNotFoundError:
        return ""


def release_ports(state_dir: str, owner: Owner, entries: tuple[str, ...]) -> None:
    """Remove owner's registry entries (only those still naming owner), under ports_lock: taken here,
    or already held by this thread. Entries that are not registry entries are ignored."""
    entries = tuple(e for e in entries if _entry_token(e))
    if not entries:
        return
    mine = _owner_ref(owner)
    with ports_lock(state_dir):
        for entry in entries:
            path = os.path.join(state_dir, "ports", entry)
            try:
                if _read(path) == mine:
                    with contextlib.suppress(FileNotFoundError):
                        os.unlink(path)
            except OSError as exc:
                raise IOFailure(f"cannot release host port entry {entry}", str(exc)) from exc
            _remove_port_folder(os.path.dirname(path))


def _remove_port_folder(folder: str) -> None:
    """rmdir a port's folder when empty, after removing temp files of dead writers (the caller holds the
    lock: no live writer has one); another address may still share the port."""
    try:
        os.rmdir(folder)
        return
    except FileNotFoundError:
        return
    except OSError:
        pass
    with contextlib.suppress(OSError):
        temps = [n for n in os.listdir(folder) if n.startswith(".") and ".tmp" in n]
        for name in temps:
            with contextlib.suppress(FileNotFoundError):
                os.unlink(os.path.join(folder, name))
        if temps:
            os.rmdir(folder)


# ----------------------------------------------------------------------------------- shared-chain users

SHARED_DIR = "_nft-shared"  # no network folder starts with "_" (network_dir: alphanumeric first)


def shared_ref(state_dir: str, chain: str, key: str) -> bool:
    """Record that key uses the shared chain; True when key is its first user here (the folder was
    made now: the caller creates the chain). A hint only: the kernel decides (a failed ADD retries with
    the chain), so a file-system error counts as "first"."""
    folder = os.path.join(state_dir, SHARED_DIR, chain)
    for _ in range(3):
        try:
            os.makedirs(os.path.join(state_dir, SHARED_DIR), mode=0o755, exist_ok=True)
            try:
                os.mkdir(folder, 0o755)
                first = True
            except FileExistsError:
                first = False
            os.close(os.open(os.path.join(folder, key), os.O_WRONLY | os.O_CREAT, 0o644))
            return first
        except FileNotFoundError:
            continue  # the last user removed the folder between our mkdir and open: again
        except OSError:
            return True
    return True


def shared_chains_of(state_dir: str, key: str) -> list[str]:
    """The shared chains key is still registered as a user of (for a DEL that lost its record, e.g. an
    earlier DEL killed between removing the elements and the chain). Lists one folder per shared chain:
    O(subnets), and only on the record-less path."""
    root = os.path.join(state_dir, SHARED_DIR)
    try:
        chains = os.listdir(root)
    except OSError:
        return []
    return sorted(c for c in chains if os.path.exists(os.path.join(root, c, key)))


def shared_unref(state_dir: str, chain: str, key: str) -> bool:
    """Forget that key uses the shared chain; True when no user is left (the folder was removed now:
    the caller deletes the chain; the kernel refuses that while an element still jumps to it).
    IOFailure when key's registration is there but cannot be removed (EIO, EACCES...): the chain then
    still counts as used, and the caller's DEL must fail once it has done the rest, so that it is repeated
    (answering ok would leave the chain and the registration for good)."""
    folder = os.path.join(state_dir, SHARED_DIR, chain)
    try:
        os.unlink(os.path.join(folder, key))
    except FileNotFoundError:
        pass  # not registered (a repeated DEL, an ADD that failed before registering)
    except OSError as exc:
        raise IOFailure(f"cannot unregister {key} from the shared chain {chain}", str(exc)) from exc
    try:
        os.rmdir(folder)
    except FileNotFoundError:  # no user is registered (a killed DEL or a failed ADD got this far): try
        return True  # the chain; the kernel refuses while an element still jumps to it
    except OSError:  # not empty: another user
        return False
    return True
