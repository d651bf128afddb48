"""Running the rule programs through hostexec, with a clear error when one is missing."""

from __future__ import annotations

from typing import TYPE_CHECKING

from .. import hostexec
from ..errors import CniError

if TYPE_CHECKING:
    from collections.abc import Sequence


class RuleToolFailed(CniError):
    """iptables-restore / nft refused a batch; details carry its stderr."""


class ToolMissing(CniError):
    """iptables-restore / nft is not installed (DEL treats that backend as holding nothing)."""


def program(name: str, backend: str) -> str:
    try:
        return hostexec.find_program(name)
    except hostexec.ProgramNotFound as exc:
        raise ToolMissing(f"{name} is required by the {backend} firewall backend but was not found",
                       exc.details) from exc


def run(backend: str, argv: Sequence[str], stdin: str = "") -> hostexec.Completed:
    return hostexec.run([program(argv[0], backend), *argv[1:]], stdin=stdin.encode(), timeout=60.0)


def checked(backend: str, argv: Sequence[str], stdin: str = "", what: str = "") -> hostexec.Completed:
    res = run(backend, argv, stdin)
    if not res.ok:
        err = res.stderr.decode(errors="replace").strip() or res.stdout.decode(errors="replace").strip()
        raise RuleToolFailed(f"{what or argv[0]} failed ({backend})", err)
    return res
