"""Throwaway network namespaces: one acting as the "host" for every plugin call, plus containers.

Nothing here touches the root network namespace: plugins run through ``ip netns exec <host>``, every
namespace made here is named ``cnconf-…`` and ``Namespaces.close()`` deletes all of them (callers use it
as a context manager, so this happens on failure too).
"""

from __future__ import annotations

import json
import subprocess
import uuid
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from collections.abc import Mapping, Sequence
    from types import TracebackType

NETNS_DIR = "/var/run/netns"
BASE_ENV = {"PATH": "/usr/sbin:/usr/bin:/sbin:/bin", "LANG": "C.UTF-8"}


def run(argv: Sequence[str], *, input: bytes | None = None, env: Mapping[str, str] | None = None,
        timeout: float = 60) -> subprocess.CompletedProcess[bytes]:
    """Run a command to completion; on timeout subprocess kills the child it started (by PID)."""
    return subprocess.run(list(argv), input=input, capture_output=True, check=False, timeout=timeout,
                          env=dict(BASE_ENV if env is None else env))


def must(argv: Sequence[str], **kw: Any) -> subprocess.CompletedProcess[bytes]:
    res = run(argv, **kw)
    if res.returncode != 0:
        raise RuntimeError(f"{' '.join(argv)} failed ({res.returncode}): {res.stderr.decode(errors='replace')}")
    return res


def in_ns(ns: str, argv: Sequence[str], **kw: Any) -> subprocess.CompletedProcess[bytes]:
    return run(["ip", "netns", "exec", ns, *argv], **kw)


def ns_json(ns: str, argv: Sequence[str]) -> list[dict[str, Any]]:
    """``ip -j …`` inside a namespace, parsed; [] when the namespace or object is gone."""
    res = in_ns(ns, argv)
    text = res.stdout.decode(errors="replace").strip()
    if res.returncode != 0 or not text:
        return []
    data = json.loads(text)
    return data if isinstance(data, list) else []


def path(name: str) -> str:
    return f"{NETNS_DIR}/{name}"


@dataclass
class Namespaces:
    """A host namespace (made on entry) plus container namespaces made on demand; all deleted on exit."""

    tag: str = "cnconf"
    host: str = ""
    made: list[str] = field(default_factory=list)

    def __enter__(self) -> Namespaces:
        self.host = self.new("h")
        return self

    def __exit__(self, t: type[BaseException] | None, e: BaseException | None, tb: TracebackType | None) -> None:
        self.close()

    def new(self, role: str = "c") -> str:
        name = f"{self.tag}-{role}-{uuid.uuid4().hex[:8]}"
        must(["ip", "netns", "add", name])
        self.made.append(name)
        must(["ip", "netns", "exec", name, "ip", "link", "set", "lo", "up"])
        return name

    def delete(self, name: str) -> None:
        """Delete one namespace now (a container that went away before its DEL)."""
        run(["ip", "netns", "del", name])
        if name in self.made:
            self.made.remove(name)

    def close(self) -> None:
        for name in reversed(self.made):
            run(["ip", "netns", "del", name])
        self.made.clear()
