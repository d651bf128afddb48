"""Throwaway network namespaces for tests and demos; nothing here touches the root namespace.

Every namespace made here is named ``cnit-<random>`` and removed by ``Namespaces.cleanup()`` even when
a test fails. Commands run inside a namespace through ``ip netns exec``.
"""

from __future__ import annotations

import os
import subprocess
import uuid
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from collections.abc import Mapping, Sequence


def sh(argv: Sequence[str], *, check: bool = True, input: bytes | None = None,
       env: Mapping[str, str] | None = None, timeout: float = 60) -> subprocess.CompletedProcess[bytes]:
    res = subprocess.run(list(argv), input=input, capture_output=True, env=None if env is None else dict(env),
                         timeout=timeout, check=False)
    if check and res.returncode != 0:
        raise AssertionError(f"{' '.join(argv)} failed ({res.returncode}): {res.stderr.decode()}{res.stdout.decode()}")
    return res


@dataclass
class Namespaces:
    """Creates namespaces on demand and removes all of them on cleanup()."""

    made: list[str] = field(default_factory=list)

    def new(self, prefix: str = "cnit") -> str:
        name = f"{prefix}-{uuid.uuid4().hex[:8]}"
        sh(["ip", "netns", "add", name])
        self.made.append(name)
        sh(["ip", "netns", "exec", name, "ip", "link", "set", "lo", "up"])
        return name

    def cleanup(self) -> None:
        for name in reversed(self.made):
            # Killing what still runs in the namespace is the caller's job (by PID); here we only unmount.
            subprocess.run(["ip", "netns", "del", name], capture_output=True, check=False)
        self.made.clear()


def path(name: str) -> str:
    return f"/var/run/netns/{name}"


def in_ns(ns: str, argv: Sequence[str], **kw: object) -> subprocess.CompletedProcess[bytes]:
    return sh(["ip", "netns", "exec", ns, *argv], **kw)  # type: ignore[arg-type]


def is_root() -> bool:
    return os.geteuid() == 0
