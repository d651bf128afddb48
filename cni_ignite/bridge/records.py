"""Which network namespace each attachment lives in, and whose it is: so that an ADD of the same owner under
another container ID, or ``cni-ignite gc``, can tell an attachment whose namespace is gone (a VM or pod
that died without DEL, weaveworks/ignite#660) from a live one. The firewall's state record does not hold
the namespace, so the bridge keeps its own, beside it in the firewall's stateDir (same lifetime as the
namespaces: a tmpfs, gone at reboot):

    <stateDir>/.bridge/<network>/a-<hash(network, cid, ifname)>
        JSON {"cid", "ifname", "owner", "netns", "dev", "ino", "guard"}: CNI_NETNS and the (st_dev, st_ino)
        of the namespace it named at ADD; "guard" the exact guard elements applied (None: no guard), so DEL
        removes them without prevResult and whatever the config says now
    <stateDir>/.bridge/<network>/o-<owner_key(owner, ifname)>
        the container ID of the owner's latest ADD (one file, O(1): no listing on ADD or DEL)

A namespace is gone when its path is missing, is no namespace any more, or names another namespace
(``/proc/PID/ns/net`` of a dead PID, or of a new process that reuses the PID). Without a record (an
attachment made before records existed, or after a reboot wiped them while the IPAM leases stayed) the
attachment's tagged host veth decides: the kernel deletes a veth pair when either end's namespace dies.

``.bridge`` cannot be a network's folder (CNI names start with a letter or digit). Written whole (a temp
file ``tmp/<name>.<pid>.tmp`` renamed over the record); read leniently (a damaged record is treated as
missing). A write that fails removes its temp file and answers IOFailure (5). A writer killed between the
two leaves its temp file: whoever next takes the network's ``lock`` exclusively (an ADD or DEL that finds
no other ADD, or ``cni-ignite gc``) knows that no writer is alive and empties ``tmp/`` (O(leftovers): it
holds nothing else, so no ADD or DEL lists the records).
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import time

from .. import _json as json  # json's own C scanner/encoder without the json package (and re): cni_ignite/_json.py
from ..errors import IOFailure
from ..firewall.naming import network_dir
from ..identity import owner_key
from .config import attachment_hash, attachment_tag, host_veth_name

TYPE_CHECKING = False  # not typing.TYPE_CHECKING: no typing import on a plugin's path (cni_ignite/__init__.py)
if TYPE_CHECKING:
    from collections.abc import Iterator
    from typing import Any
    from typing import NamedTuple as _Record

    from ..guard.rules import Attachment as GuardAttachment
    from .kernel import HostNet
else:
    from .. import Record as _Record  # a NamedTuple at namedtuple's cost (cni_ignite/__init__.py)

FOLDER = ".bridge"
TMP = "tmp"  # the temp files of writes in progress (or of writers killed mid-write), beside the records


class Record(_Record):
    cid: str
    ifname: str
    owner: str
    netns: str
    dev: int
    ino: int
    guard: dict[str, Any] | None = None  # guard_doc() of the applied guard attachment


def folder(state_dir: str, network: str) -> str:
    return os.path.join(state_dir, FOLDER, network_dir(network))


def _att_path(state_dir: str, network: str, cid: str, ifname: str) -> str:
    return os.path.join(folder(state_dir, network), "a-" + attachment_hash(network, cid, ifname)[:32])


def _owner_path(state_dir: str, network: str, owner: str, ifname: str) -> str:
    return os.path.join(folder(state_dir, network), "o-" + owner_key(owner, ifname))


def _write(path: str, data: bytes) -> None:
    """Replace the record at path with data, whole; IOFailure (and no temp file left) when that fails."""
    base, name = os.path.split(path)
    tmp = os.path.join(base, TMP, f"{name}.{os.getpid()}.tmp")
    try:
        try:
            fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_CLOEXEC, 0o600)
        except FileNotFoundError:  # the network's first write (or one since its tmp/ was lost)
            os.makedirs(os.path.join(base, TMP), mode=0o700, exist_ok=True)
            fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_CLOEXEC, 0o600)
        try:
            view = memoryview(data)
            while view:
                view = view[os.write(fd, view):]
        finally:
            os.close(fd)
        os.replace(tmp, path)
    except OSError as exc:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise IOFailure(f"cannot write the attachment record {path}", str(exc)) from exc


def _read(path: str) -> bytes | None:
    try:
        with open(path, "rb") as f:
            return f.read(1 << 16)
    except (FileNotFoundError, NotADirectoryError):
        return None
    except OSError as exc:
        raise IOFailure(f"cannot read the attachment record {path}", str(exc)) from exc


def _unlink(path: str) -> None:
    try:
        os.unlink(path)
    except FileNotFoundError:
        pass
    except OSError as exc:
        raise IOFailure(f"cannot remove the attachment record {path}", str(exc)) from exc


def clear_temps(state_dir: str, network: str) -> None:
    """Remove the temp files of the network's writers; only with the network's lock held exclusively (no
    writer is alive then: every write happens under the lock, shared)."""
    base = os.path.join(folder(state_dir, network), TMP)
    try:
        names = os.listdir(base)
    except FileNotFoundError:
        return
    except OSError as exc:
        raise IOFailure(f"cannot list {base}", str(exc)) from exc
    for name in names:
        if name.endswith(".tmp"):
            _unlink(os.path.join(base, name))


def write(state_dir: str, network: str, rec: Record) -> None:
    _write(_att_path(state_dir, network, rec.cid, rec.ifname), json.dumps(rec._asdict()).encode())
    _write(_owner_path(state_dir, network, rec.owner, rec.ifname), rec.cid.encode())


def _decode(data: bytes) -> Record | None:
    try:
        doc = json.loads(data)
        guard = doc.get("guard")
        return Record(str(doc["cid"]), str(doc["ifname"]), str(doc["owner"]), str(doc["netns"]), int(doc["dev"]),
                      int(doc["ino"]), guard if isinstance(guard, dict) else None)
    except (ValueError, KeyError, TypeError, AttributeError):
        return None


def load(state_dir: str, network: str, cid: str, ifname: str) -> Record | None:
    data = _read(_att_path(state_dir, network, cid, ifname))
    return _decode(data) if data is not None else None


def latest(state_dir: str, network: str, owner: str, ifname: str) -> str | None:
    """The container ID of the owner's latest ADD in `network` (None: none recorded)."""
    data = _read(_owner_path(state_dir, network, owner, ifname))
    return data.decode(errors="replace") or None if data is not None else None


def remove(state_dir: str, network: str, cid: str, ifname: str) -> None:
    """Forget the attachment; the owner's pointer too when it names this attachment."""
    rec = load(state_dir, network, cid, ifname)
    if rec is not None and latest(state_dir, network, rec.owner, ifname) == cid:
        _unlink(_owner_path(state_dir, network, rec.owner, ifname))
    _unlink(_att_path(state_dir, network, cid, ifname))


def all_records(state_dir: str, network: str) -> list[Record]:
    """Every attachment record of `network` (for ``cni-ignite gc``: O(attachments), never on ADD/DEL)."""
    base = folder(state_dir, network)
    try:
        names = sorted(os.listdir(base))
    except FileNotFoundError:
        return []
    out = []
    for name in names:
        data = _read(os.path.join(base, name)) if name.startswith("a-") and "." not in name else None
        rec = _decode(data) if data is not None else None
        if rec is not None:
            out.append(rec)
    return out


# -------------------------------------------------------------------------------------------- locking

def _open_lock(state_dir: str, network: str) -> int:
    """An fd of the network's ``lock``, created (with the folder) when missing."""
    base = folder(state_dir, network)
    try:
        os.makedirs(base, mode=0o700, exist_ok=True)
        return os.open(os.path.join(base, "lock"), os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
    except OSError as exc:
        raise IOFailure(f"cannot open the lock of {base}", str(exc)) from exc


def _try_exclusive(fd: int) -> bool:
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        return False
    except OSError as exc:
        raise IOFailure("cannot lock the attachment records", str(exc)) from exc
    return True


def hold_shared(state_dir: str, network: str) -> int:
    """ADD holds the network's ``lock`` shared from before it judges an earlier attachment until it ends
    (ADDs never wait for each other); ``cni-ignite gc`` takes it exclusively around each judgement and
    removal, so it never removes an attachment an ADD (Ignite reuses the VM ID) is making. An ADD that
    finds the lock free takes it exclusively first, long enough to clear killed writers' temp files.
    Returns the fd to close."""
    fd = _open_lock(state_dir, network)
    try:
        if _try_exclusive(fd):
            clear_temps(state_dir, network)
        fcntl.flock(fd, fcntl.LOCK_SH)  # from exclusive: a downgrade
    except OSError as exc:
        os.close(fd)
        raise IOFailure("cannot lock the attachment records", str(exc)) from exc
    except BaseException:
        os.close(fd)
        raise
    return fd


def tidy(state_dir: str, network: str) -> None:
    """DEL: clear killed writers' temp files when no ADD of the network is running (else a later ADD or
    DEL will); never waits, never creates the network's folder."""
    path = os.path.join(folder(state_dir, network), "lock")
    try:
        fd = os.open(path, os.O_RDWR | os.O_CLOEXEC)
    except FileNotFoundError:
        return
    except OSError as exc:
        raise IOFailure(f"cannot open {path}", str(exc)) from exc
    try:
        if _try_exclusive(fd):
            clear_temps(state_dir, network)
    finally:
        os.close(fd)


@contextlib.contextmanager
def exclusive(state_dir: str, network: str, timeout: float = 30.0) -> Iterator[bool]:
    """The network's lock, exclusively (for gc); yields False when it could not be had within timeout.
    Killed writers' temp files are cleared once it is had."""
    fd = _open_lock(state_dir, network)
    try:
        deadline = time.monotonic() + timeout
        while not _try_exclusive(fd):
            if time.monotonic() > deadline:
                yield False
                return
            time.sleep(0.02)
        clear_temps(state_dir, network)
        yield True
    finally:
        os.close(fd)


# ------------------------------------------------------------------------------------------- liveness

def netns_gone(path: str, dev: int, ino: int) -> str | None:
    """Why the namespace recorded as (path, dev, ino) is gone, or None while it lives."""
    if not path:
        return "no namespace path was recorded"
    try:
        st = os.stat(path)
    except FileNotFoundError:
        return f"{path} does not exist"
    except OSError as exc:
        return f"{path}: {exc.strerror}"
    if (st.st_dev, st.st_ino) != (dev, ino):
        return f"{path} is not the attachment's namespace any more"
    return None


def gone(host: HostNet, state_dir: str, network: str, cid: str, ifname: str) -> str | None:
    """Why the attachment (network, cid, ifname) is dead (its namespace is gone), or None while it lives."""
    rec = load(state_dir, network, cid, ifname)
    if rec is not None:
        return netns_gone(rec.netns, rec.dev, rec.ino)
    veth = host.nl.link(host_veth_name(network, cid, ifname))
    if veth is None:
        return "no namespace record and no host veth (the namespace took its veth along)"
    if veth.alias and veth.alias != attachment_tag(network, cid, ifname):
        return "no namespace record, and its host veth name is another attachment's"
    return None


# ---------------------------------------------------------------------------------------------- guard

def guard_doc(att: GuardAttachment) -> dict[str, Any]:
    return {"port": att.port, "macs": list(att.macs), "nets": [str(n) for n in (*att.v4, *att.v6)],
            "trunk": att.trunk}


def guard_att(doc: dict[str, Any]) -> GuardAttachment | None:
    """The guard attachment a record holds, parsed as strictly as the config (None when damaged)."""
    from ..guard import rules
    from ..ipparse import ip_network

    try:
        nets = [ip_network(n, "guard record") for n in doc["nets"]]
        return rules.attachment(str(doc["port"]), [str(m) for m in doc["macs"]], nets, trunk=bool(doc["trunk"]))
    except (ValueError, KeyError, TypeError):
        return None
