"""`cni-ignite worker`: warm start. A resident process that has started its interpreter and imported the plugins'
code once, and forks one child per plugin call handed to it by the bundle's launcher (packaging/launcher.c).

Why: a CNI runtime execs a plugin per call, and a frozen Python plugin pays ~19 ms of interpreter start and
~10 ms of imports on every exec (benchmarks/RESULTS.md), more than half of a whole-network ADD. A forked child
has both already.

What a child does is what an exec'd plugin does, in the caller's world rather than the worker's: it enters the
caller's mount namespace, root, working directory and network namespace, takes the caller's environment, umask
and stdin/stdout/stderr (all received as file descriptors or fields, see the protocol in packaging/launcher.c),
runs the same ``cni_ignite.cli`` entry the frozen executable runs, and exits with its status, which the worker
relays to the launcher. One process per call, as before: locks, rollback, the per-call log and a SIGKILL in the
middle behave as they do for an exec'd plugin.

Safety:
- Only root may hand over a call (SO_PEERCRED uid 0; the socket's folder is 0700 root): anyone else is told
  to run it themselves, which is what a plugin without the worker does.
- A launcher of another build is told to run it itself: an upgraded bundle never runs the old code.
- A caller that goes away (a runtime's timeout kills the launcher) has its child killed, as a killed plugin
  would be; a worker that dies takes its children with it (PR_SET_PDEATHSIG), and the launcher says so.
- Until the child has entered the caller's world (a failure there: it exits FALLBACK before any of the call
  runs), the launcher may still run the call itself; after that it never runs twice.
- SIGTERM/SIGINT: stop taking calls, wait for the running ones, remove the socket, exit 0.

This is long-running code (no start-up budget); the children inherit its imports.
"""

from __future__ import annotations

import argparse
import contextlib
import gc
import os
import selectors
import signal
import socket
import struct
import sys
import time
from typing import TYPE_CHECKING, NamedTuple

if TYPE_CHECKING:
    from collections.abc import Callable, Sequence
    from typing import Any

DEFAULT_SOCKET = "/run/cni-ignite/worker.sock"
MAGIC = b"CIW1"
NFDS = 7  # stdin, stdout, stderr, netns, mntns, root, cwd
MAX_REQUEST = 1 << 20
REQUEST_TIMEOUT = 5.0  # seconds for a connection to send its whole request (the launcher sends it at once)
FALLBACK = 207  # a child's exit status meaning "nothing of the call ran": the launcher runs it itself
PLUGINS = {"ignite-bridge": "bridge_main", "ignite-ipam": "ipam_main", "loopback": "loopback_main"}
CLONE_NEWNS = 0x00020000
CLONE_NEWNET = 0x40000000
PR_SET_PDEATHSIG = 1
UNVERSIONED = "unversioned"  # the launcher's build id when it was built without one (= packaging/launcher.c)
# Modules a plugin imports lazily (inside functions) that are not cni_ignite's own: imported up front so that
# no child reads a module file from the caller's mount namespace.
LAZY_STDLIB = ("re", "ipaddress", "hashlib", "traceback", "shlex", "signal", "_signal", "errno", "fcntl",
               "_ctypes", "time", "contextlib", "json", "_thread", "_socket", "struct", "select", "stat")
# Never preloaded: the admin command's and the node agent's modules (pyroute2, etcd client, argparse trees).
NOT_PRELOADED = ("cni_ignite.node", "cni_ignite.admin", "cni_ignite.install", "cni_ignite.worker",
                 "cni_ignite.status", "cni_ignite.leases", "cni_ignite.gc", "cni_ignite.reserve")


def describe(path: str = DEFAULT_SOCKET) -> str:
    """One line for `cni-ignite status`: whether a worker answers at `path`, its PID and build."""
    probe = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    try:
        probe.settimeout(2.0)
        probe.connect(path)
        pid, _uid, _gid = struct.unpack("3i", probe.getsockopt(socket.SOL_SOCKET, socket.SO_PEERCRED, 12))
    except OSError as exc:
        return f"not answering at {path} ({exc.strerror or exc}): the plugins run each call themselves"
    finally:
        probe.close()
    try:
        build = build_id_at(os.readlink(f"/proc/{pid}/exe")) or "?"
    except OSError:
        build = "?"
    return f"answering at {path} (pid {pid}, build {build})"


class Request(NamedTuple):
    build_id: str
    name: str
    umask: int
    env: dict[str, str]


class ProtocolError(ValueError):
    pass


def parse_request(body: bytes) -> Request:
    """The NUL-terminated fields of a request's body (pure; ProtocolError on anything malformed)."""
    if not body.endswith(b"\0"):
        raise ProtocolError("request not NUL-terminated")
    fields = body[:-1].split(b"\0")
    if len(fields) < 3:
        raise ProtocolError("request has too few fields")
    try:
        build_id, name, mask = (f.decode("ascii") for f in fields[:3])
        umask = int(mask, 8)
    except ValueError as exc:
        raise ProtocolError(f"bad request header: {exc}") from exc
    if not 0 <= umask <= 0o777:
        raise ProtocolError("bad umask")
    env: dict[str, str] = {}
    for raw in fields[3:]:
        key, sep, value = raw.partition(b"=")
        if sep and key:  # as the exec'd plugin's os.environ: entries without "=" are skipped, the first of a
            env.setdefault(os.fsdecode(key), os.fsdecode(value))  # duplicated name wins (as getenv(3) finds it)
    return Request(build_id, name, umask, env)


def bundle_build_id() -> str:
    """The frozen bundle's build id (packaging/build.sh writes it beside the launcher it builds); running from
    source: UNVERSIONED, which only a launcher built without an id matches."""
    base = getattr(sys, "_MEIPASS", None)
    if base is None:
        return UNVERSIONED
    try:
        with open(os.path.join(base, "cni-ignite.build-id"), encoding="ascii") as f:
            return f.read().strip() or UNVERSIONED
    except OSError:
        return UNVERSIONED


def build_id_at(exe: str) -> str | None:
    """The build id of the bundle that `exe` names now: after an install, `<bin>/cni-ignite.d/cni-ignite` names the
    new generation's executable. None when it has none (or cannot be read)."""
    folder = os.path.dirname(os.path.realpath(exe))
    try:
        with open(os.path.join(folder, "_internal", "cni-ignite.build-id"), encoding="ascii") as f:
            return f.read().strip() or None
    except OSError:
        return None


def invoked_as(argv0: str) -> str | None:
    """The path this program was started through (a link such as <bin>/cni-ignite.d/cni-ignite is kept as is)."""
    if "/" in argv0:
        return os.path.abspath(argv0)
    import shutil

    return shutil.which(argv0)


def preload() -> list[str]:
    """Import every plugin module (cni_ignite's, but not the admin command's or the agent's) and the stdlib
    modules they import lazily. Returns the names that failed to import."""
    import cni_ignite

    failed = []
    root = os.path.dirname(cni_ignite.__file__)
    names = []
    for folder, dirs, files in os.walk(root):
        dirs[:] = sorted(d for d in dirs if d != "__pycache__")
        rel = os.path.relpath(folder, root)
        prefix = "cni_ignite" if rel == "." else "cni_ignite." + rel.replace(os.sep, ".")
        for f in sorted(files):
            stem, ext = os.path.splitext(f)
            if ext in (".py", ".pyc"):
                names.append(prefix if stem == "__init__" else f"{prefix}.{stem}")
    for name in (*LAZY_STDLIB, *sorted(set(names))):
        if any(name == p or name.startswith(p + ".") for p in NOT_PRELOADED):
            continue
        try:
            __import__(name)
        except Exception:
            failed.append(name)
    from cni_ignite.netlink import netns

    if getattr(os, "setns", None) is None:  # the child's setns would load libc's on first use: load it once here
        netns._setns_impl = netns._libc_setns()
    return failed


_prctl: Callable[..., int] | None = None  # libc's prctl, loaded in the worker once for all children


def load_prctl() -> None:
    global _prctl  # noqa: PLW0603 - loaded once before the first fork
    import ctypes

    _prctl = ctypes.CDLL(None, use_errno=True).prctl


def _pdeathsig() -> None:
    import ctypes

    if _prctl is None:
        load_prctl()
    assert _prctl is not None
    if _prctl(PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0) != 0:
        raise OSError(ctypes.get_errno(), "prctl(PR_SET_PDEATHSIG)")


def _same_ns(fd: int, own: str) -> bool:
    a, b = os.fstat(fd), os.stat(own)
    return (a.st_dev, a.st_ino) == (b.st_dev, b.st_ino)


def enter_callers_world(fds: Sequence[int], req: Request, worker_pid: int) -> None:
    """In the forked child: become the exec'd plugin the caller would have started (everything but the call)."""
    from cni_ignite.netlink.netns import setns

    _pdeathsig()
    if os.getppid() != worker_pid:  # the worker died before prctl took effect
        os._exit(FALLBACK)
    signal.set_wakeup_fd(-1)
    for sig in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP, signal.SIGCHLD):
        signal.signal(sig, signal.SIG_DFL)
    stdin, stdout, stderr, net, mnt, root, cwd = fds
    if not _same_ns(mnt, "/proc/self/ns/mnt"):
        setns(mnt, CLONE_NEWNS)  # resets root and cwd to the namespace's: both are set from the caller's below
    os.fchdir(root)
    os.chroot(".")
    os.fchdir(cwd)
    if not _same_ns(net, "/proc/thread-self/ns/net"):
        setns(net, CLONE_NEWNET)
    for want, fd in enumerate((stdin, stdout, stderr)):
        os.dup2(fd, want, inheritable=True)
    # A worker started with one of its own closed has no sys.stdin/stdout/stderr for it: give the child the
    # streams an exec'd plugin's interpreter makes over 0, 1, 2.
    if sys.stdin is None:
        sys.stdin = open(0, encoding="utf-8", closefd=False)  # noqa: SIM115 - lives as long as the process
    if sys.stdout is None:
        sys.stdout = open(1, "w", encoding="utf-8", closefd=False)  # noqa: SIM115
    if sys.stderr is None:
        sys.stderr = open(2, "w", encoding="utf-8", errors="backslashreplace", closefd=False)  # noqa: SIM115
    for fd in _open_fds():  # the worker's socket, epoll, pipes and other calls' fds; the received originals
        if fd > 2:
            with contextlib.suppress(OSError):
                os.close(fd)
    os.umask(req.umask)
    os.environ.clear()
    os.environ.update(req.env)
    sys.argv[:] = [req.name]


def _open_fds() -> list[int]:
    return [int(n) for n in os.listdir("/proc/self/fd")]


def run_call(name: str) -> int:
    """The call itself, as packaging/entry.py runs it in an exec'd plugin."""
    from cni_ignite import cli

    status = int(getattr(cli, PLUGINS[name])())
    for stream in (sys.stdout, sys.stderr):
        try:  # noqa: SIM105
            stream.flush()
        except BaseException:
            pass
    return status


def child(fds: Sequence[int], req: Request, worker_pid: int) -> None:
    """The forked child: never returns."""
    status = 1
    try:
        try:
            enter_callers_world(fds, req, worker_pid)
        except BaseException as exc:
            try:
                os.write(2, f"cni-ignite worker: cannot enter the caller's namespaces ({exc}); running directly\n"
                         .encode())
            finally:
                os._exit(FALLBACK)
        status = run_call(req.name)
    except BaseException as exc:
        try:
            os.write(2, f"cni-ignite worker: {type(exc).__name__}: {exc}\n".encode())
        finally:
            os._exit(1)
    os._exit(status)


def _drain(fd: int) -> None:
    """Empty the signal wake-up pipe (a signal only has to wake select(); the loop then looks at `stopping`)."""
    with contextlib.suppress(BlockingIOError):
        while os.read(fd, 512):
            pass


class Pending:
    """A connection whose request is not whole yet (mutable; long-running code)."""

    def __init__(self, conn: socket.socket, deadline: float) -> None:
        self.conn, self.deadline = conn, deadline
        self.buf = bytearray()
        self.fds: list[int] = []
        self.length = -1  # the body's length, once the header is in


class Call(NamedTuple):
    pid: int
    pidfd: int
    conn: socket.socket


class Worker:
    def __init__(self, path: str, build_id: str, exe: str | None = None) -> None:
        self.path, self.build_id, self.exe = path, build_id, exe
        self.upgraded_to: str | None = None  # the build a launcher asked for and `exe` now is: re-exec when drained
        self.sel = selectors.DefaultSelector()
        self.calls: dict[int, Call] = {}  # by pidfd
        self.pending: list[Pending] = []
        self.stopping = False
        self.listener: socket.socket | None = None
        self.inode = 0
        self.served = 0
        self.worker_pid = os.getpid()

    # ------------------------------------------------------------------ socket

    def listen(self) -> None:
        folder = os.path.dirname(self.path) or "."
        os.makedirs(folder, mode=0o700, exist_ok=True)
        probe = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        try:
            probe.connect(self.path)
        except OSError:
            pass
        else:
            raise SystemExit(f"cni-ignite worker: another worker answers at {self.path}")
        finally:
            probe.close()
        tmp = f"{self.path}.{os.getpid()}.tmp"
        lst = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        old = os.umask(0o177)
        try:
            lst.bind(tmp)
        finally:
            os.umask(old)
        lst.listen(512)
        os.rename(tmp, self.path)  # replaces a stale socket of a worker that died
        self.inode = os.stat(self.path).st_ino
        lst.setblocking(False)
        self.listener = lst
        self.sel.register(lst, selectors.EVENT_READ, ("accept", None))

    def close_listener(self) -> None:
        if self.listener is None:
            return
        self.sel.unregister(self.listener)
        self.listener.close()
        self.listener = None
        try:  # only our own socket file: a worker started since (which replaced it) keeps its own
            if os.stat(self.path).st_ino == self.inode:
                os.unlink(self.path)
        except FileNotFoundError:
            pass

    # ------------------------------------------------------------------ calls

    def accept(self) -> None:
        assert self.listener is not None
        while True:
            try:
                conn, _ = self.listener.accept()
            except (BlockingIOError, InterruptedError):
                return
            except OSError:
                return  # EMFILE and the like: the launcher sees its connection refused or closed and runs directly
            conn.setblocking(False)
            pending = Pending(conn, time.monotonic() + REQUEST_TIMEOUT)
            self.pending.append(pending)
            self.sel.register(conn, selectors.EVENT_READ, ("request", pending))

    def receive(self, p: Pending) -> None:
        """More of a request: read without blocking (a caller that connects and says nothing, or says it slowly,
        never holds up the others); take it once whole."""
        try:
            msg, fds, _flags, _addr = socket.recv_fds(p.conn, 65536, NFDS + 1)
        except (BlockingIOError, InterruptedError):
            return
        except OSError:
            self.refuse(p)
            return
        p.fds.extend(fds)
        if not msg:
            self.refuse(p)  # closed before the request was whole
            return
        p.buf += msg
        if p.length < 0 and len(p.buf) >= 8:
            (length,) = struct.unpack("=I", p.buf[4:8])
            if p.buf[:4] != MAGIC or length > MAX_REQUEST:
                self.refuse(p)
                return
            p.length = length
        if 0 <= p.length <= len(p.buf) - 8:
            self.done_receiving(p)
            self.take(p.conn, bytes(p.buf[8:8 + p.length]), p.fds)

    def done_receiving(self, p: Pending) -> None:
        self.sel.unregister(p.conn)
        self.pending.remove(p)

    def refuse(self, p: Pending) -> None:
        self.done_receiving(p)
        for fd in p.fds:
            os.close(fd)
        with contextlib.suppress(OSError):
            self._reply(p.conn, b"F\0")
        p.conn.close()

    def expire(self) -> float | None:
        """Refuse the requests that were not whole in time; the seconds until the next one is due (None: none)."""
        now = time.monotonic()
        for p in [p for p in self.pending if p.deadline <= now]:
            self.refuse(p)
        return max(0.0, min(p.deadline for p in self.pending) - now) if self.pending else None

    def take(self, conn: socket.socket, data: bytes, fds: list[int]) -> None:
        try:
            _pid, uid, _gid = struct.unpack("3i", conn.getsockopt(socket.SOL_SOCKET, socket.SO_PEERCRED, 12))
            req = parse_request(data)
            if uid != 0 or req.build_id != self.build_id or req.name not in PLUGINS or len(fds) != NFDS:
                if uid == 0 and req.build_id != self.build_id:
                    self.notice_upgrade(req.build_id)
                self._reply(conn, b"F\0")
                conn.close()
                return
            child_pid = os.fork()
            if child_pid == 0:  # pragma: no cover - the child
                child(fds, req, self.worker_pid)
            pidfd = os.pidfd_open(child_pid)
        except (OSError, ProtocolError, struct.error):
            with contextlib.suppress(OSError):
                self._reply(conn, b"F\0")
            conn.close()
            return
        finally:
            for fd in fds:
                os.close(fd)
        conn.setblocking(False)
        call = Call(child_pid, pidfd, conn)
        self.calls[pidfd] = call
        self.sel.register(pidfd, selectors.EVENT_READ, ("exit", call))
        self.sel.register(conn, selectors.EVENT_READ, ("caller", call))
        self.served += 1

    def notice_upgrade(self, wanted: str) -> None:
        """A launcher of another build asked: if that is the build our executable's path names now (an install
        replaced the bundle), stop taking calls, let the running ones finish and start again as the new build.
        Meanwhile the launchers run their calls themselves. Any other build id is only refused."""
        if self.exe is not None and self.upgraded_to is None and wanted == build_id_at(self.exe):
            self.upgraded_to = wanted
            self.stopping = True

    @staticmethod
    def _reply(conn: socket.socket, data: bytes) -> None:
        conn.setblocking(True)
        conn.settimeout(1.0)
        conn.sendall(data)

    def caller_gone(self, call: Call) -> None:
        """The launcher's end closed (or sent more, which it never does) before the call ended: kill the child,
        as a runtime's kill of an exec'd plugin would have."""
        if self.calls.get(call.pidfd) is not call:  # it ended in this same round (its pidfd number may be reused)
            return
        self.sel.unregister(call.conn)
        with contextlib.suppress(ProcessLookupError):
            signal.pidfd_send_signal(call.pidfd, signal.SIGKILL)

    def exited(self, call: Call) -> None:
        _, status = os.waitpid(call.pid, 0)
        self.sel.unregister(call.pidfd)
        os.close(call.pidfd)
        del self.calls[call.pidfd]
        if os.WIFEXITED(status):
            code = os.WEXITSTATUS(status)
            reply = b"F\0" if code == FALLBACK else b"E" + bytes([code])
        else:
            reply = b"S" + bytes([os.WTERMSIG(status) & 0xFF])
        with contextlib.suppress(KeyError):  # KeyError: the caller is gone already
            self.sel.unregister(call.conn)
        with contextlib.suppress(OSError):
            self._reply(call.conn, reply)
        call.conn.close()

    # ------------------------------------------------------------------ loop

    def stop(self, *_: object) -> None:
        self.stopping = True

    def serve(self) -> int:
        self.worker_pid = os.getpid()
        signal.signal(signal.SIGTERM, self.stop)
        signal.signal(signal.SIGINT, self.stop)
        # A signal wakes select() (EINTR is retried by Python after the handler ran): the loop sees `stopping`.
        rfd, wfd = os.pipe2(os.O_NONBLOCK | os.O_CLOEXEC)
        signal.set_wakeup_fd(wfd)
        self.sel.register(rfd, selectors.EVENT_READ, ("wake", rfd))
        handlers: dict[str, Callable[[Any], None]] = {
            "accept": lambda _: self.accept(), "wake": _drain, "request": self.receive, "exit": self.exited,
            "caller": self.caller_gone}
        gc.collect()
        gc.freeze()  # the children never touch the reference counts of these objects' GC headers by collecting
        gc.disable()
        try:
            while True:
                if self.stopping and self.listener is not None:
                    self.close_listener()
                if self.stopping and not self.calls and not self.pending:
                    return 0
                for key, _ in self.sel.select(self.expire()):
                    kind, what = key.data
                    handlers[kind](what)
        finally:
            if self.listener is not None:
                self.close_listener()
            signal.set_wakeup_fd(-1)
            os.close(rfd)
            os.close(wfd)


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(prog="cni-ignite worker",
                                     description="warm start: serve plugin calls from the bundle's launcher "
                                                 "(docs/WORKER.md)")
    parser.add_argument("--socket", default=DEFAULT_SOCKET, help=f"where to listen (default {DEFAULT_SOCKET})")
    parser.add_argument("--build-id", default=None, help=argparse.SUPPRESS)  # tests: pose as another build
    args = parser.parse_args(argv)
    if os.geteuid() != 0:
        sys.stderr.write("cni-ignite worker: must run as root (it runs the plugins' calls)\n")
        return 1
    for fd in (0, 1, 2):  # started with one closed: /dev/null there, so no socket or received fd takes its number
        try:
            os.fstat(fd)
        except OSError:
            os.open(os.devnull, os.O_RDWR)  # the lowest free number: this one
    failed = preload()
    load_prctl()
    if failed:
        sys.stderr.write(f"cni-ignite worker: could not preload {', '.join(failed)}\n")
    own = bundle_build_id()
    # Following an upgrade needs the path we were started through and a real build of our own (not --build-id).
    exe = invoked_as(sys.argv[0]) if getattr(sys, "frozen", False) and args.build_id is None else None
    worker = Worker(args.socket, args.build_id or own, exe)
    worker.listen()
    sys.stderr.write(f"cni-ignite worker: serving at {args.socket} (pid {os.getpid()}, build {worker.build_id})\n")
    sys.stderr.flush()
    rc = worker.serve()
    sys.stderr.write(f"cni-ignite worker: stopped after {worker.served} calls\n")
    if worker.upgraded_to is not None and exe is not None:
        sys.stderr.write(f"cni-ignite worker: {exe} is now build {worker.upgraded_to}: starting it\n")
        sys.stderr.flush()
        os.execv(exe, [exe, "worker", *argv])
    return rc
