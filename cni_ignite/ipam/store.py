"""Leases on disk, byte-compatible with the reference host-local, plus an index that keeps ADD and
DEL independent of the number of leases.

Layout (host-local's): ``<dataDir>/<network>/<ip>`` holds ``<containerID>\\r\\n<ifname>``;
``last_reserved_ip.<n>`` the last address handed out from range set n; ``lock`` is flock'ed for the
whole command (go-filemutex and filelock's UnixFileLock use the same flock, so the Go plugin, filelock
users and we exclude each other).

The lease files are the truth. Beside them, ``<dataDir>/.ignite-index/<network>/`` maps each
attachment (hash of container ID and ifname) to its addresses. The index is trusted only while the
network folder's mtime equals the value in ``stamp``, which we set ourselves with ``utime`` after each
change; anyone else creating or removing a lease (the Go plugin, an operator) changes the mtime and the
next command rebuilds the index from the lease files.

A lease is written to a temporary file, fsync'ed, then hard-linked to its address's name: the link is
atomic and exclusive, so a lease is never half-written. Temporary files live in
``<dataDir>/.ignite-index/.tmp-<network>/`` (same file system, not in the index folder) and are only ever
written under the lock, so whatever the next command finds there (after holding the lock) was
left by a writer that died; it removes it.

Every file-system failure leaves the store as ``IOFailure`` (5). The index is a cache: when it cannot be
rebuilt or stamped (a full disk), the command goes on without it (``find`` scans the lease files, O(leases))
and leaves it unstamped for the next one, so DEL and GC work on a full disk.

Holds and reservations (see sticky.py) are *placeholder* lease files under the address's name, so that
host-local (which only ever creates a lease with ``O_EXCL``) sees the address as another container's:
``_ignite_held_\r\n<ifname>\r\n<owner>\r\n<released ns>\r\n<until ns>`` and
``_ignite_reserved_\r\n<ifname>\r\n<owner>``. No runtime's container ID can be ``_ignite_…`` (IDs start
with a letter or digit), and a placeholder has more than two lines, so host-local's DEL (which removes a
file whose content is exactly ``id\r\nifname`` or ``id``) never matches one. Durable per-owner records
(``o-``, ``b-``, ``res-``, ``rip-`` files) live in the index folder and are never removed by a rebuild.

This module uses ``fcntl.flock`` itself rather than importing ``filelock``: importing filelock costs
39-44 ms per plugin start (it pulls inspect, logging, threading, decimal; measured in
benchmarks/IMPORTS.md), more than the rest of an IPAM ADD. The admin command uses filelock.
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import os
import time

from .. import ipparse
from .._sha import sha256
from ..errors import CniError, IOFailure, TryAgainLater

TYPE_CHECKING = False  # not typing.TYPE_CHECKING: no typing import on a plugin's path (cni_ignite/__init__.py)
if TYPE_CHECKING:
    import signal
    from collections.abc import Iterator
    from typing import NamedTuple as Record

    from ..result import IPAddress
else:
    # not signal.py (its IntEnums: ~1 ms per call): signal(), setitimer() and the constants are _signal's own;
    # _signal.signal returns the previous handler raw (an int for SIG_DFL/SIG_IGN), which is only put back
    import _signal as signal

    from .. import Record

INDEX_DIR = ".ignite-index"
LAST_RESERVED = "last_reserved_ip."
Owner = tuple[str, str]  # (container ID, ifname); ifname "" for legacy id-only leases
HELD, RESERVED = "_ignite_held_", "_ignite_reserved_"
DURABLE = ("o-", "b-", "res-", "rip-", "config-reservations")  # index-folder files a rebuild keeps
TMP_PREFIX = ".tmp-"  # <dataDir>/.ignite-index/.tmp-<network>/: temporary files, written only under the lock
# (a network name starts with a letter or digit, so this folder is never a network's)


class Slot(Record):
    """A placeholder lease: an address held for (owner, ifname) after its DEL, or reserved for it."""
    kind: str  # HELD or RESERVED
    owner: str
    ifname: str
    released: int = 0  # ns since the epoch (HELD)
    until: int = 0  # ns since the epoch: held for the owner until then (HELD)

    def encode(self) -> bytes:
        lines = [self.kind, self.ifname, self.owner]
        if self.kind == HELD:
            lines += [str(self.released), str(self.until)]
        return "\r\n".join(lines).encode()


def parse_slot(data: bytes) -> Slot | None:
    """A placeholder's content -> Slot; anything else (a lease, garbage) -> None."""
    if not data.startswith(b"_ignite_"):
        return None
    lines = data.decode(errors="replace").strip().split("\r\n")
    try:
        if lines[0] == HELD and len(lines) == 5:
            return Slot(HELD, lines[2], lines[1], int(lines[3]), int(lines[4]))
        if lines[0] == RESERVED and len(lines) == 3:
            return Slot(RESERVED, lines[2], lines[1])
    except ValueError:
        pass
    return None


@contextlib.contextmanager
def flocked(path: str, timeout: float) -> Iterator[None]:
    """Hold an exclusive flock on `path` (created if missing), waiting at most `timeout` seconds."""
    try:
        fd = os.open(path, os.O_RDONLY | os.O_CREAT | os.O_CLOEXEC | os.O_NOFOLLOW, 0o600)
    except OSError as exc:
        raise IOFailure(f"cannot open the IPAM lock {path}", str(exc)) from exc
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            _wait_flock(fd, path, timeout)
        except OSError as exc:
            raise IOFailure(f"cannot lock {path}", str(exc)) from exc
        yield
    finally:
        os.close(fd)  # closing drops the flock; the file stays (unlinking would split waiters)


def _wait_flock(fd: int, path: str, timeout: float) -> None:
    def expired(_sig: int, _frame: object) -> None:
        raise TryAgainLater("IPAM store busy", f"could not lock {path} within {timeout:g}s")

    old = signal.signal(signal.SIGALRM, expired)
    signal.setitimer(signal.ITIMER_REAL, timeout)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
    except OSError as exc:
        raise IOFailure(f"cannot lock {path}", str(exc)) from exc
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, old)


def owner_key(owner: Owner) -> str:
    return "a-" + sha256(f"{owner[0]}\0{owner[1]}".encode()).hexdigest()[:32]


def parse_lease(data: bytes) -> Owner | None:
    """Lease file content -> (id, ifname); legacy id-only leases give (id, ""); empty/garbage -> None."""
    text = data.decode(errors="replace").strip()
    if not text:
        return None
    cid, _, ifname = text.partition("\r\n")
    return (cid.strip(), ifname.strip())


def lease_name(name: str) -> IPAddress | None:
    """The address a lease file (or last_reserved_ip) names, or None unless `name` is exactly the canonical
    text of an address, as host-local and we write it: ``fd00::2%1`` or ``FD00::2`` is another file than
    ``fd00::2``, so trusting it would let one address be leased twice."""
    try:
        ip = ipparse.ip_address(name)
    except ValueError:
        return None
    return ip if str(ip) == name else None


class DiskStore:
    """One network's leases. Use inside ``with store.locked():``; every method assumes the lock is held."""

    def __init__(self, data_dir: str, network: str, *, lock_timeout: float = 30.0) -> None:
        self.dir = os.path.join(data_dir, network)
        self.idx = os.path.join(data_dir, INDEX_DIR, network)
        self.tmp = os.path.join(data_dir, INDEX_DIR, TMP_PREFIX + network)
        self.lock_timeout = lock_timeout
        self._dirty = False
        self._index_ok = True  # False: the index could not be rebuilt; find() scans the leases instead
        self.owner: Owner = ("", "")

    # ------------------------------------------------------------------------------------ transaction
    @contextlib.contextmanager
    def locked(self) -> Iterator[DiskStore]:
        try:
            os.makedirs(self.dir, mode=0o755, exist_ok=True)
            os.makedirs(self.idx, mode=0o700, exist_ok=True)
        except OSError as exc:
            raise IOFailure(f"cannot create IPAM data folder {self.dir}", str(exc)) from exc
        with flocked(os.path.join(self.dir, "lock"), self.lock_timeout):
            self._dirty, self._index_ok = False, True
            try:
                self._clear_tmp()
                if not self._index_fresh():
                    self.refresh_index()
                yield self
            except BaseException as exc:
                # Whatever was done before the failure may not be in the index: never vouch for it, and
                # make sure no earlier stamp does either (the next command rebuilds from the leases).
                self._invalidate()
                if isinstance(exc, OSError):  # the store is where file-system errors enter our code
                    raise IOFailure(f"IPAM store {self.dir}: {exc.strerror or exc}", str(exc)) from exc
                raise
            if self._dirty and self._index_ok:
                try:
                    self._stamp()
                except (OSError, CniError):  # the verb's work is done and on disk; the index is only a cache
                    self._invalidate()

    def _clear_tmp(self) -> None:
        """Remove temporary files a writer that died left (we hold the lock: no one else is writing)."""
        try:
            names = os.listdir(self.tmp)
        except FileNotFoundError:
            return
        for name in names:
            with contextlib.suppress(FileNotFoundError):
                os.unlink(os.path.join(self.tmp, name))

    def refresh_index(self) -> None:
        """Rebuild the index from the lease files; when that fails (a full disk), carry on without it: the
        rest of the command scans the leases, and nothing stamps the half-written index."""
        try:
            self.rebuild_index()
        except (OSError, CniError):
            self._index_ok = False
            self._invalidate()

    def _index_fresh(self) -> bool:
        try:
            with open(os.path.join(self.idx, "stamp"), "rb") as f:
                return int(f.read() or b"-1") == os.stat(self.dir).st_mtime_ns
        except (OSError, ValueError):
            return False

    def _invalidate(self) -> None:
        with contextlib.suppress(OSError):
            os.unlink(os.path.join(self.idx, "stamp"))

    def _stamp(self) -> None:
        """Give the lease folder an mtime that only we could have set, and record it."""
        st = os.stat(self.dir)
        mark = time.time_ns() | 1
        if mark == st.st_mtime_ns:
            mark += 2
        os.utime(self.dir, ns=(st.st_atime_ns, mark))
        self._write_atomic(os.path.join(self.idx, "stamp"), str(mark).encode())

    def rebuild_index(self) -> None:
        leases = self.scan()
        for name in os.listdir(self.idx):
            if name.startswith(("a-", ".tmp-")) and not name.startswith(DURABLE):
                os.unlink(os.path.join(self.idx, name))
        by_owner: dict[Owner, list[IPAddress]] = {}
        for ip, owner in leases.items():
            if owner is not None:
                by_owner.setdefault(owner, []).append(ip)
        for owner, ips in by_owner.items():
            self._write_index(owner, ips)
        self._dirty = True

    # ---------------------------------------------------------------------------------------- reading
    def scan(self) -> dict[IPAddress, Owner | None]:
        """Every lease file and its owner (None for an empty or unreadable lease), placeholders left out.
        O(leases)."""
        return {ip: owner for ip, (owner, slot) in self.scan_all().items() if slot is None}

    def scan_slots(self) -> dict[IPAddress, Slot]:
        """Every placeholder (held or reserved address). O(leases)."""
        return {ip: slot for ip, (_, slot) in self.scan_all().items() if slot is not None}

    def scan_all(self) -> dict[IPAddress, tuple[Owner | None, Slot | None]]:
        out: dict[IPAddress, tuple[Owner | None, Slot | None]] = {}
        for entry in os.scandir(self.dir):
            ip = lease_name(entry.name)
            if ip is None:
                continue
            try:
                with open(entry.path, "rb") as f:
                    data = f.read()
            except OSError:
                out[ip] = (None, None)
                continue
            slot = parse_slot(data)
            out[ip] = (None, slot) if slot is not None else (parse_lease(data), None)
        return out

    def read(self, ip: IPAddress) -> bytes | None:
        """The raw content of the file named by `ip`, or None when there is none."""
        try:
            with open(os.path.join(self.dir, str(ip)), "rb") as f:
                return f.read()
        except FileNotFoundError:
            return None
        except OSError as exc:
            raise IOFailure(f"cannot read lease {ip}", str(exc)) from exc

    def read_meta(self, name: str) -> bytes | None:
        """A file of the index folder (an owner record, a reservation), or None."""
        try:
            with open(os.path.join(self.idx, name), "rb") as f:
                return f.read()
        except FileNotFoundError:
            return None
        except OSError as exc:
            raise IOFailure(f"cannot read IPAM record {name}", str(exc)) from exc

    def write_meta(self, name: str, data: bytes | None) -> None:
        """Write (atomically) or, with None, remove a file of the index folder."""
        path = os.path.join(self.idx, name)
        if data is not None:
            self._write_atomic(path, data)
            return
        try:
            os.unlink(path)
        except FileNotFoundError:
            pass
        except OSError as exc:
            raise IOFailure(f"cannot remove {path}", str(exc)) from exc

    def find(self, owner: Owner) -> list[IPAddress]:
        """The addresses leased to `owner`, from the index, each confirmed against its lease file."""
        if not self._index_ok:
            return sorted((ip for ip, o in self.scan().items() if o == owner), key=lambda a: (a.version, a))
        listed = self._read_index(owner)
        if listed is None:  # not written by us: rebuild it from the lease files
            self.refresh_index()
            if not self._index_ok:
                return self.find(owner)
            listed = self._read_index(owner) or []
        return [ip for ip in listed if self.holder(ip) == owner]

    def _read_index(self, owner: Owner) -> list[IPAddress] | None:
        """The addresses listed for `owner` ([] when none), or None when the entry holds anything else."""
        try:
            with open(os.path.join(self.idx, owner_key(owner)), "rb") as f:
                words = f.read().decode(errors="replace").split()
        except FileNotFoundError:
            return []
        except OSError as exc:
            raise IOFailure("cannot read the IPAM index", str(exc)) from exc
        listed = [lease_name(w) for w in words]
        return None if None in listed else [ip for ip in listed if ip is not None]

    def holder(self, ip: IPAddress) -> Owner | None:
        try:
            with open(os.path.join(self.dir, str(ip)), "rb") as f:
                return parse_lease(f.read())
        except FileNotFoundError:
            return None

    def is_taken(self, ip: IPAddress) -> bool:
        return os.path.lexists(os.path.join(self.dir, str(ip)))

    def last_reserved(self, range_id: int) -> IPAddress | None:
        try:
            with open(os.path.join(self.dir, f"{LAST_RESERVED}{range_id}"), "rb") as f:
                return lease_name(f.read().decode(errors="replace").strip())
        except FileNotFoundError:
            return None

    # ---------------------------------------------------------------------------------------- writing
    def reserve(self, ip: IPAddress, range_id: int) -> bool:
        """Lease `ip` to self.owner; False if it is taken. Records it as the set's last reserved address."""
        cid, ifname = self.owner
        if self.is_taken(ip):  # cheap test first: a full pool must not cost one fsync'ed file per address
            return False
        tmp = self._write_tmp(f"{cid}\r\n{ifname}".encode(), sync=True)
        try:
            os.link(tmp, os.path.join(self.dir, str(ip)))
        except FileExistsError:
            return False
        except OSError as exc:
            raise IOFailure(f"cannot write lease {ip}", str(exc)) from exc
        finally:
            self._drop_tmp(tmp)
        self._dirty = True
        try:
            self._write_atomic(os.path.join(self.dir, f"{LAST_RESERVED}{range_id}"), str(ip).encode())
        except BaseException:
            with contextlib.suppress(OSError):  # the caller never learns of this lease: do not leave it
                os.unlink(os.path.join(self.dir, str(ip)))
            raise
        return True

    def set_last_reserved(self, range_id: int, ip: IPAddress | None) -> None:
        """Put back a set's last reserved address (None: there was none), as a failed ADD's rollback."""
        path = os.path.join(self.dir, f"{LAST_RESERVED}{range_id}")
        if ip is not None:
            self._write_atomic(path, str(ip).encode())
            return
        try:
            os.unlink(path)
        except FileNotFoundError:
            pass
        except OSError as exc:
            raise IOFailure(f"cannot remove {path}", str(exc)) from exc

    def put(self, ip: IPAddress, data: bytes, *, replace: bool) -> bool:
        """Write the file of `ip` (fsync'ed, atomic). ``replace=False``: only if absent (False if present);
        ``replace=True``: over whatever is there, with no moment in which the address looks free."""
        if not replace and self.is_taken(ip):
            return False
        tmp = self._write_tmp(data, sync=True)
        path = os.path.join(self.dir, str(ip))
        try:
            if replace:
                os.replace(tmp, path)
                tmp = ""
            else:
                os.link(tmp, path)
        except FileExistsError:
            return False
        except OSError as exc:
            raise IOFailure(f"cannot write lease {ip}", str(exc)) from exc
        finally:
            if tmp:
                self._drop_tmp(tmp)
        self._dirty = True
        return True

    def release(self, ip: IPAddress) -> None:
        try:
            os.unlink(os.path.join(self.dir, str(ip)))
        except FileNotFoundError:
            return
        except OSError as exc:
            raise IOFailure(f"cannot release lease {ip}", str(exc)) from exc
        self._dirty = True

    def set_index(self, owner: Owner, ips: list[IPAddress]) -> None:
        """Record owner's addresses in the index (skipped while the index is out of use: nothing trusts it)."""
        self._dirty = True
        if self._index_ok:
            self._write_index(owner, ips)

    def _write_index(self, owner: Owner, ips: list[IPAddress]) -> None:
        path = os.path.join(self.idx, owner_key(owner))
        if ips:
            self._write_atomic(path, "\n".join(str(ip) for ip in ips).encode())
        else:
            with contextlib.suppress(FileNotFoundError):
                os.unlink(path)

    def _write_tmp(self, data: bytes, *, sync: bool = False) -> str:
        """A new temporary file holding all of `data` (fsync'ed with sync), or IOFailure and no file."""
        path = os.path.join(self.tmp, f"t-{os.getpid()}-{time.monotonic_ns()}")
        flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC
        try:
            try:
                fd = os.open(path, flags, 0o600)
            except FileNotFoundError:
                os.makedirs(self.tmp, mode=0o700, exist_ok=True)
                fd = os.open(path, flags, 0o600)
        except OSError as exc:
            raise IOFailure(f"cannot write in {self.idx}", str(exc)) from exc
        try:
            try:
                view = memoryview(data)
                while view:
                    view = view[os.write(fd, view):]
                if sync:
                    os.fsync(fd)
            finally:
                os.close(fd)
        except OSError as exc:
            self._drop_tmp(path)
            raise IOFailure(f"cannot write in {self.idx}", str(exc)) from exc
        return path

    @staticmethod
    def _drop_tmp(path: str) -> None:
        """Remove a temporary file; one that cannot be removed now goes with the next command's _clear_tmp."""
        with contextlib.suppress(OSError):
            os.unlink(path)

    def _write_atomic(self, path: str, data: bytes) -> None:
        tmp = self._write_tmp(data)
        try:
            os.replace(tmp, path)
        except OSError as exc:
            self._drop_tmp(tmp)
            what = "no space left for IPAM state" if exc.errno == errno.ENOSPC else f"cannot write {path}"
            raise IOFailure(what, f"{path}: {exc}") from exc
