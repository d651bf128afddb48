"""The CNI protocol skeleton: environment and stdin in, a result or an error object out.

It knows no plugin: a plugin hands it ``Handlers`` (one callable per verb) and its world (env, stdin,
stdout, stderr) as arguments. VERSION and every error path import nothing beyond this module's own
light dependencies (json, re, the error family).
"""

from __future__ import annotations

import json
from time import perf_counter
from typing import IO, TYPE_CHECKING, Any, NamedTuple

from .errors import CniError, InvalidEnvironment, IOFailure
from .netconf import NAME_RE, NetConf, load_object, parse_netconf
from .version import CURRENT, SUPPORTED, require_verb

if TYPE_CHECKING:
    from collections.abc import Callable, Mapping

    from .result import Result

VERBS = ("ADD", "DEL", "CHECK", "GC", "STATUS", "VERSION")

# Which variables each verb requires (spec §Parameters); all missing ones are reported together.
REQUIRED_ENV: dict[str, tuple[str, ...]] = {
    "ADD": ("CNI_CONTAINERID", "CNI_NETNS", "CNI_IFNAME"),
    "CHECK": ("CNI_CONTAINERID", "CNI_NETNS", "CNI_IFNAME"),
    "DEL": ("CNI_CONTAINERID", "CNI_IFNAME"),
    "GC": ("CNI_PATH",),
    "STATUS": (),
}


class CmdArgs(NamedTuple):
    command: str
    container_id: str
    netns: str
    ifname: str
    args: str
    path: str
    stdin: bytes
    conf: NetConf


class Handlers(NamedTuple):
    add: Callable[[CmdArgs], Result]
    delete: Callable[[CmdArgs], None]
    check: Callable[[CmdArgs], None]
    gc: Callable[[CmdArgs], None]
    status: Callable[[CmdArgs], None]


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
        _emit(stdout, version_reply(stdin, supported))
        return 0
    conf_version = CURRENT
    args: CmdArgs | None = None
    answer: dict[str, Any] | None = None
    started = perf_counter()
    try:
        args = read_args(env, stdin)
        conf_version = args.conf.cni_version
        require_verb(command, conf_version)
        if not isinstance(handlers, Handlers):
            handlers = handlers()
        if "logFile" in args.conf.raw:
            from . import calllog

            calllog.begin(args.conf.raw)
        answer = _dispatch(handlers, args)
    except CniError as exc:
        _emit(stdout, exc.as_dict(conf_version))
        _log(args, started, stderr, error=exc.as_dict(conf_version))
        return 1
    except Exception as exc:
        if on_internal_error is not None:
            on_internal_error(exc)
        error = CniError(f"internal error: {type(exc).__name__}", str(exc)).as_dict(conf_version)
        _emit(stdout, error)
        _log(args, started, stderr, error=error)
        return 1
    if answer is not None:
        _emit(stdout, answer)
    _log(args, started, stderr, result=answer)
    return 0


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
    from . import calllog
    from .identity import owner_of

    cfg = calllog.log_config(args.conf.raw)
    if cfg is None:
        stderr.write("cni-ignite: logFile must be an absolute path; no log written\n")
        return
    cni = args.conf.args.get("cni")
    owner = owner_of(args.container_id, args.args, cni if isinstance(cni, dict) else None)
    text = calllog.line(cfg, args.conf.type or "cni-ignite", args, started, result=result, error=error, owner=owner)
    if text:
        calllog.append(cfg, text, stderr)


def _emit(stdout: IO[str], doc: dict[str, Any]) -> None:
    stdout.write(json.dumps(doc, separators=(",", ":")))
    stdout.write("\n")
    stdout.flush()
