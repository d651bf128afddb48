"""The CNI protocol skeleton: environment and stdin in, a result or an error object out.

It knows no plugin: a plugin hands it ``Handlers`` (one callable per verb) and its world (env, stdin,
stdout, stderr) as arguments. VERSION and every error path import nothing beyond this module's own
light dependencies (json, re, the error family).

The answer is written once: one object, or nothing when writing it fails (then the exit status is 1 and a
note goes to stderr), never an answer followed by a second object. Nothing after the answer (the per-call
log) can fail the call.
"""

from __future__ import annotations

import os
from contextlib import suppress
from time import perf_counter

from . import _json as json  # json's own C scanner/encoder without the json package (and re): cni_ignite/_json.py
from .errors import CniError, InvalidConfig, InvalidEnvironment, IOFailure, TryAgainLater
from .netconf import NAME_RE, NetConf, load_object, parse_netconf
from .version import CURRENT, SUPPORTED, require_verb

TYPE_CHECKING = False  # not typing.TYPE_CHECKING: no typing import on a plugin's path (cni_ignite/__init__.py)
if TYPE_CHECKING:
    from collections.abc import Callable, Mapping
    from typing import IO, Any
    from typing import NamedTuple as Record

    from .result import Result
else:
    from . import Record  # a NamedTuple at namedtuple's cost (cni_ignite/__init__.py)

VERBS = ("ADD", "DEL", "CHECK", "GC", "STATUS", "VERSION")

# Set once an answer has started to go out (packaging/entry.py reads it: after a failure past this point it
# must not write a second object).
answered = False

# The steps of this call with their durations, [(name, ms)], kept only when the per-call log is at debug level
# (cni_ignite/calllog.py writes them): plugin code marks the end of each step with step("veth"). Kept here,
# not in calllog, so that marking costs nothing and imports nothing when the log is off.
_steps: list[tuple[str, float]] | None = None
_step_last = 0.0

# Which variables each verb requires (spec §Parameters); all missing ones are reported together.
REQUIRED_ENV: dict[str, tuple[str, ...]] = {
    "ADD": ("CNI_CONTAINERID", "CNI_NETNS", "CNI_IFNAME"),
    "CHECK": ("CNI_CONTAINERID", "CNI_NETNS", "CNI_IFNAME"),
    "DEL": ("CNI_CONTAINERID", "CNI_IFNAME"),
    "GC": ("CNI_PATH",),
    "STATUS": (),
}


class CmdArgs(Record):
    command: str
    container_id: str
    netns: str
    ifname: str
    args: str
    path: str
    stdin: bytes
    conf: NetConf


class Handlers(Record):
    add: Callable[[CmdArgs], Result]
    delete: Callable[[CmdArgs], None]
    check: Callable[[CmdArgs], None]
    gc: Callable[[CmdArgs], None]
    status: Callable[[CmdArgs], None]


def step(name: str) -> None:
    """The step `name` of this call just finished (it took the time since the previous step or the start)."""
    global _step_last  # noqa: PLW0603
    if _steps is not None:
        now = perf_counter()
        _steps.append((name, round((now - _step_last) * 1000, 3)))
        _step_last = now


def _record_steps(started: float) -> None:
    global _steps, _step_last
    _steps, _step_last = [], started


def validate_ifname(name: str) -> None:
    if not name:
        raise InvalidEnvironment("CNI_IFNAME is empty")
    if len(name.encode()) > 15:
        raise InvalidEnvironment("CNI_IFNAME too long", f"{name!r} is longer than 15 bytes")
    if name in (".", ".."):
        raise InvalidEnvironment("CNI_IFNAME invalid", f"{name!r} is not a valid interface name")
    if any(c in "/:" or c.isspace() for c in name):
        raise InvalidEnvironment("CNI_IFNAME invalid", f"{name!r} contains '/', ':' or whitespace")


def validate_container_id(cid: str) -> None:
    if not NAME_RE.match(cid):
        raise InvalidEnvironment("invalid characters in containerID", cid)


def read_args(env: Mapping[str, str], stdin: IO[bytes]) -> CmdArgs:
    command = env.get("CNI_COMMAND", "")
    required = REQUIRED_ENV.get(command)
    if required is None:
        raise InvalidEnvironment(f"unknown CNI_COMMAND: {command}", f"CNI_COMMAND must be one of {', '.join(VERBS)}")
    missing = [k for k in required if not env.get(k)]
    if missing:
        raise InvalidEnvironment(f"required env variables [{','.join(missing)}] missing")
    cid, ifname = env.get("CNI_CONTAINERID", ""), env.get("CNI_IFNAME", "")
    if command in ("ADD", "DEL", "CHECK"):
        validate_container_id(cid)
        validate_ifname(ifname)
    try:
        data = stdin.read()
    except OSError as exc:
        raise IOFailure("error reading from stdin", str(exc)) from exc
    conf = parse_netconf(data)
    return CmdArgs(command=command, container_id=cid, netns=env.get("CNI_NETNS", ""), ifname=ifname,
                   args=env.get("CNI_ARGS", ""), path=env.get("CNI_PATH", ""), stdin=data, conf=conf)


def version_reply(stdin: IO[bytes], supported: tuple[str, ...]) -> dict[str, Any]:
    """Echo the caller's cniVersion when it is one we speak (spec); else report our newest."""
    asked = CURRENT
    try:
        doc = load_object(stdin.read() or b"{}")
        if doc.get("cniVersion") in supported:
            asked = doc["cniVersion"]
    except (CniError, OSError):
        pass
    return {"cniVersion": asked, "supportedVersions": list(supported)}


def run(handlers: Handlers | Callable[[], Handlers], *, env: Mapping[str, str], stdin: IO[bytes],
        stdout: IO[str], stderr: IO[str],
        about: str, supported: tuple[str, ...] = SUPPORTED,
        on_internal_error: Callable[[BaseException], None] | None = None) -> int:
    """Dispatch one CNI call; returns the process exit status.

    `handlers` may be a function that returns them, so that VERSION and argument errors never import
    a plugin's modules."""
    command = env.get("CNI_COMMAND")
    if not command:
        stderr.write(f"{about}\nCNI protocol versions supported: {', '.join(supported)}\n")
        return 0
    if command == "VERSION":
        return 0 if _emit(stdout, version_reply(stdin, supported), stderr) else 1
    conf_version = CURRENT
    args: CmdArgs | None = None
    answer: dict[str, Any] | None = None
    started = perf_counter()
    try:
        args = read_args(env, stdin)
        conf_version = args.conf.cni_version
        if not args.conf.type:  # the spec requires it; libcni refuses a config without one
            raise InvalidConfig("missing type", "a network configuration must name its plugin in 'type'")
        require_verb(command, conf_version)
        if not isinstance(handlers, Handlers):
            handlers = _load(handlers)
        if args.conf.raw.get("logLevel") == "debug" and "logFile" in args.conf.raw:
            _record_steps(started)
        answer = _dispatch(handlers, args)
    except CniError as exc:
        _emit(stdout, exc.as_dict(conf_version), stderr)
        _log(args, started, stderr, error=exc.as_dict(conf_version))
        return 1
    except Exception as exc:
        error = _unexpected(exc, stderr, on_internal_error).as_dict(conf_version)
        _emit(stdout, error, stderr)
        _log(args, started, stderr, error=error)
        return 1
    if answer is not None and not _emit(stdout, answer, stderr):
        return 1
    _log(args, started, stderr, result=answer)
    return 0


def _unexpected(exc: Exception, stderr: IO[str], on_internal_error: Callable[[BaseException], None] | None
                ) -> CniError:
    """The answer to an exception no handler turned into a CniError."""
    if _module_load_failure(exc):  # a lazy import inside the handler could not read its module file
        stderr.write(f"cni-ignite: {type(exc).__name__}: {exc}\n")
        return load_failure(exc)
    if isinstance(exc, OSError):
        # The kernel refused something the plugin did not expect to fail (EIO reading a .pyc whose read fault
        # carries no file name, closing a descriptor): an I/O failure, not a bug: 5 (11 when the host is short
        # of memory or descriptors), one line on stderr, no traceback.
        stderr.write(f"cni-ignite: {type(exc).__name__}: {exc}\n")
        return _io_error(exc, f"I/O error: {exc.strerror or exc}")
    if on_internal_error is not None:
        try:
            on_internal_error(exc)
        except Exception as report:  # e.g. traceback cannot be imported: the answer still goes out
            stderr.write(f"cni-ignite: {type(exc).__name__}: {exc} (no traceback: {report!r})\n")
    return CniError(f"internal error: {type(exc).__name__}", str(exc))


def _io_error(exc: BaseException, msg: str) -> CniError:
    """11 for a transient shortage of memory or descriptors, else 5 (an I/O failure)."""
    import errno  # built in: only on the failure paths

    details = f"{type(exc).__name__}: {exc}"
    if isinstance(exc, MemoryError) or (isinstance(exc, OSError) and exc.errno in (
            errno.ENOMEM, errno.EAGAIN, errno.EMFILE, errno.ENFILE)):
        return TryAgainLater(msg, details)
    return IOFailure(msg, details)


def load_failure(exc: BaseException) -> CniError:
    """The CNI error for a plugin that could not load its own modules (packaging/entry.py has a copy that needs
    no import): transient resource shortage 11, any other OS error (EIO reading a module file) 5, else 999."""
    if isinstance(exc, (OSError, MemoryError)) or _module_load_failure(exc):
        return _io_error(exc, "cni-ignite could not load its modules")
    return CniError(f"internal error: {type(exc).__name__}", f"loading the plugin's modules: {exc}")


def _module_load_failure(exc: BaseException) -> bool:
    """The import system could not read a module file or folder (.pyc/.so of the bundle, a package's
    directory): not the plugin's own work.

    For an ImportError: one of our own or a standard-library module (in a working install each is there,
    so it failing to load means the file system refused it: dlopen of fcntl.so failing with EACCES or
    ENOSPC, or a package folder that could not be listed, which the finder takes for an empty one and
    reports as ModuleNotFoundError or "cannot import name"), or any extension module whose dlopen failed
    on an I/O error (ImportError carries dlerror()'s text). A missing third-party module stays internal."""
    if isinstance(exc, OSError):
        return isinstance(exc.filename, str) and exc.filename.endswith((".pyc", ".py", ".so"))
    if not isinstance(exc, ImportError):
        return False
    import sys  # built in: only on this failure path

    top = (exc.name or "").partition(".")[0]
    return top == "cni_ignite" or top in sys.stdlib_module_names or (bool(exc.path) and os.strerror(5) in str(exc))


def _load(handlers: Callable[[], Handlers]) -> Handlers:
    try:
        return handlers()
    except (OSError, MemoryError) as exc:
        raise load_failure(exc) from exc
    except ImportError as exc:  # the plugin's modules (or the stdlib's under them) could not be loaded
        if not _module_load_failure(exc):
            raise
        raise load_failure(exc) from exc


def _dispatch(handlers: Handlers, args: CmdArgs) -> dict[str, Any] | None:
    """Run the verb; ADD's result encoded in the config's version."""
    if args.command == "ADD":
        from .result import encode

        return encode(handlers.add(args), args.conf.cni_version)
    {"DEL": handlers.delete, "CHECK": handlers.check, "GC": handlers.gc, "STATUS": handlers.status}[args.command](args)
    return None


def _log(args: CmdArgs | None, started: float, stderr: IO[str], *, result: dict[str, Any] | None = None,
         error: dict[str, Any] | None = None) -> None:
    """One line in the configured per-call log (after the answer is out: never delays or fails it)."""
    if args is None or "logFile" not in args.conf.raw:
        return
    try:
        _log_line(args, started, stderr, result=result, error=error)
    except Exception as exc:
        with suppress(Exception):  # stderr itself failing: nothing left to tell
            stderr.write(f"cni-ignite: no log line written: {type(exc).__name__}: {exc}\n")


def _log_line(args: CmdArgs, started: float, stderr: IO[str], *, result: dict[str, Any] | None,
              error: dict[str, Any] | None) -> None:
    from . import calllog
    from .identity import owner_of

    cfg = calllog.log_config(args.conf.raw)
    if cfg is None:
        stderr.write("cni-ignite: logFile must be an absolute path; no log written\n")
        return
    cni = args.conf.args.get("cni")
    owner = owner_of(args.container_id, args.args, cni if isinstance(cni, dict) else None)
    text = calllog.line(cfg, args.conf.type or "cni-ignite", args, started, result=result, error=error, owner=owner,
                        steps=_steps)
    if text:
        calllog.append(cfg, text, stderr)


def _emit(stdout: IO[str], doc: dict[str, Any], stderr: IO[str]) -> bool:
    """Write the one answer; False (and a note on stderr) if it could not be written.

    A real stdout gets it with write(2) on its descriptor, not through the text buffer: a failed flush keeps
    the data buffered and the flush at exit would write it after all, behind whatever came next."""
    global answered  # noqa: PLW0603
    text = json.dumps(doc, separators=(",", ":")) + "\n"  # a failure here (a bug) is still answered by entry.py
    answered = True
    try:
        try:
            fd = stdout.fileno()
        except (AttributeError, OSError, ValueError):  # a StringIO (tests)
            stdout.write(text)
            stdout.flush()
            return True
        stdout.flush()
        data = memoryview(text.encode())
        while data:
            data = data[os.write(fd, data):]
    except (OSError, ValueError) as exc:
        with suppress(OSError, ValueError):
            stderr.write(f"cni-ignite: writing the answer to stdout failed: {exc}\n")
            stderr.flush()
        return False
    return True
