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

``.bridge`` cannot be a network's folder (CNI names start with a letter or digit). Written whole (temp file
and rename); read leniently (a damaged record is treated as missing).
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import time
from typing import TYPE_CHECKING, Any, NamedTuple

from ..firewall.naming import network_dir
from ..identity import owner_key
from .config import attachment_hash, attachment_tag, host_veth_name

if TYPE_CHECKING:
    from collections.abc import Iterator

    from ..guard.rules import Attachment as GuardAttachment
    from .kernel import HostNet

FOLDER = ".bridge"


class Record(NamedTuple):
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
    tmp = f"{path}.{os.getpid()}.tmp"
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_CLOEXEC, 0o600)
    try:
        os.write(fd, data)
    finally:
        os.close(fd)
    os.replace(tmp, path)


def _read(path: str) -> bytes | None:
    try:
        with open(path, "rb") as f:
            return f.read(1 << 16)
    except (FileNotFoundError, NotADirectoryError):
        return None


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
        with contextlib.suppress(FileNotFoundError):
            os.unlink(_owner_path(state_dir, network, rec.owner, ifname))
    with contextlib.suppress(FileNotFoundError):
        os.unlink(_att_path(state_dir, network, cid, ifname))


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

def hold_shared(state_dir: str, network: str) -> int:
    """ADD holds the network's ``lock`` shared from before it judges an earlier attachment until it ends
    (ADDs never wait for each other); ``cni-ignite gc`` takes it exclusively around each judgement and
    removal, so it never removes an attachment an ADD (Ignite reuses the VM ID) is making. Returns the fd
    to close."""
    base = folder(state_dir, network)
    os.makedirs(base, mode=0o700, exist_ok=True)
    fd = os.open(os.path.join(base, "lock"), os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
    try:
        fcntl.flock(fd, fcntl.LOCK_SH)
    except BaseException:
        os.close(fd)
        raise
    return fd


@contextlib.contextmanager
def exclusive(state_dir: str, network: str, timeout: float = 30.0) -> Iterator[bool]:
    """The network's lock, exclusively (for gc); yields False when it could not be had within timeout."""
    base = folder(state_dir, network)
    os.makedirs(base, mode=0o700, exist_ok=True)
    fd = os.open(os.path.join(base, "lock"), os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
    try:
        deadline = time.monotonic() + timeout
        while True:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                break
            except BlockingIOError:
                if time.monotonic() > deadline:
                    yield False
                    return
                time.sleep(0.02)
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
