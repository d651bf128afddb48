"""Per-call log: one JSON line per CNI call, appended to the network config's ``logFile``.

Config keys (on the plugin's configuration, names as the reference plugins would spell them):

    logFile       absolute path; default none (no log, as the reference plugins: a drop-in replacement must
                  not start writing where nothing was written before). Add it to the plugin's config.
    logLevel      "error" (only failed calls), "info" (default: every call) or "debug" (every call
                  plus the steps taken, with their timings).
    logMaxBytes   rotation threshold, default 10 MiB: a call that finds the file larger renames it to
                  ``<logFile>.1`` (replacing the previous one) under a lock, so at most ~2x this is kept.

A line: ``time`` (UTC, RFC 3339 with ms), ``level``, ``plugin``, ``verb``, ``network``, ``containerID``,
``ifname``, ``netns``, ``owner``, ``ms`` (duration); on success of ADD ``addresses`` and ``hostPorts``;
on failure ``code``, ``msg`` (and ``details``); at debug ``steps``: ``[[name, ms], ...]``.

Each line is written with one ``write`` on an ``O_APPEND`` descriptor, so concurrent calls never
interleave. Nothing is written to stdout, and a log that cannot be written never fails the call: a
one-line note goes to stderr instead.
"""

from __future__ import annotations

import os
import time
from contextlib import suppress  # loaded by skel already

from . import _json as json  # json's own C scanner/encoder without the json package (and re): cni_ignite/_json.py

TYPE_CHECKING = False  # not typing.TYPE_CHECKING: no typing import on a plugin's path (cni_ignite/__init__.py)
if TYPE_CHECKING:
    from typing import IO, Any

    from .skel import CmdArgs

LEVELS = {"error": 0, "info": 1, "debug": 2}
DEFAULT_MAX_BYTES = 10 * 1024 * 1024
MAX_LINE = 64 * 1024  # a longer line (huge error details) is cut, so one write stays one line

# (path, level, max_bytes). A plain tuple, not a NamedTuple: this module loads on every logged call, and a
# class costs more to create than the rest of the module (benchmarks/calllog_bench.py).
LogConfig = tuple[str, int, int]


def log_config(raw: dict[str, Any]) -> LogConfig | None:
    """The log keys of a plugin configuration; None when there is no (usable) log. Never raises: a
    bad log key must not fail a CNI call (it is reported in the line itself, or on stderr)."""
    path = raw.get("logFile")
    if not isinstance(path, str) or not path.startswith("/") or "\0" in path:
        return None
    level = raw.get("logLevel", "info")
    max_bytes = raw.get("logMaxBytes", DEFAULT_MAX_BYTES)
    if isinstance(max_bytes, bool) or not isinstance(max_bytes, int) or max_bytes < 4096:
        max_bytes = DEFAULT_MAX_BYTES
    return path, LEVELS.get(level, 1) if isinstance(level, str) else 1, max_bytes


def _now() -> str:
    t = time.time()
    return time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(t)) + f".{int(t * 1000) % 1000:03d}Z"


def _addresses(result: dict[str, Any] | None) -> list[str]:
    if not isinstance(result, dict):
        return []
    ips = result.get("ips")
    if isinstance(ips, list):
        return [str(ip.get("address")) for ip in ips if isinstance(ip, dict)]
    return [str(result[k]["ip"]) for k in ("ip4", "ip6") if isinstance(result.get(k), dict)]


def _host_ports(args: CmdArgs) -> list[str]:
    from .netconf import go_get

    out = []
    for m in args.conf.runtime_config.get("portMappings") or ():
        if isinstance(m, dict):
            proto = go_get(m, "protocol") or "tcp"
            host_ip = go_get(m, "hostIP") or ""
            out.append(f"{proto}/{f'{host_ip}:' if host_ip else ''}{go_get(m, 'hostPort')}")
    return out


def line(cfg: LogConfig, plugin: str, args: CmdArgs, started: float, *, result: dict[str, Any] | None = None,
         error: dict[str, Any] | None = None, owner: str = "",
         steps: list[tuple[str, float]] | None = None) -> str | None:
    """The JSON line of one call, or None when the level says nothing is logged. `steps` are the call's
    steps with their ms (skel.step), written at debug level."""
    level = cfg[1]
    if error is None and level < 1:
        return None
    doc: dict[str, Any] = {
        "time": _now(), "level": "error" if error else "info", "plugin": plugin, "verb": args.command,
        "network": args.conf.name, "containerID": args.container_id, "ifname": args.ifname,
        "netns": args.netns, "owner": owner or args.container_id,
        "ms": round((time.perf_counter() - started) * 1000, 3),
    }
    if error is not None:
        doc.update({k: error[k] for k in ("code", "msg", "details") if k in error})
    elif args.command == "ADD":
        doc["addresses"] = _addresses(result)
        doc["hostPorts"] = _host_ports(args)
    if level >= 2 and steps:
        doc["steps"] = [list(s) for s in steps]
    text = json.dumps(doc, separators=(",", ":"), default=str)
    if len(text) >= MAX_LINE:
        doc.pop("steps", None)
        doc["details"] = str(doc.get("details", ""))[:1024] + "...(cut)"
        text = json.dumps(doc, separators=(",", ":"), default=str)[:MAX_LINE - 1]
    return text + "\n"


def append(cfg: LogConfig, text: str, stderr: IO[str]) -> None:
    """One O_APPEND write; rotate first when the file has grown past max_bytes. Never raises."""
    path, _, max_bytes = cfg
    data = text.encode("utf-8", errors="replace")
    try:
        fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT | os.O_CLOEXEC, 0o640)
        try:
            if os.fstat(fd).st_size >= max_bytes:
                os.close(fd)
                fd = -1
                _rotate(path, max_bytes)
                fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT | os.O_CLOEXEC, 0o640)
            os.write(fd, data)
        finally:
            if fd >= 0:
                os.close(fd)
    except OSError as exc:
        with suppress(OSError, ValueError):
            stderr.write(f"cni-ignite: cannot write log {path}: {exc}\n")


def _rotate(path: str, max_bytes: int) -> None:
    """Rename the full log to .1 under a lock, re-checking the size so concurrent callers rotate once."""
    import fcntl

    lock = os.open(path + ".lock", os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o640)
    try:
        fcntl.flock(lock, fcntl.LOCK_EX)
        try:
            if os.stat(path).st_size >= max_bytes:
                os.replace(path, path + ".1")
        except FileNotFoundError:
            pass
    finally:
        os.close(lock)
