"""Run a delegated IPAM plugin found on CNI_PATH with our stdin and environment (only CNI_COMMAND
changes), as libcni's DelegateAdd/Del/Check do, and decode its result."""

from __future__ import annotations

import os

from . import _json as json  # json's own C scanner/encoder without the json package (and re): cni_ignite/_json.py
from .errors import CniError, InvalidConfig
from .hostexec import run
from .result import Result, decode

TYPE_CHECKING = False  # not typing.TYPE_CHECKING: no typing import on a plugin's path (cni_ignite/__init__.py)
if TYPE_CHECKING:
    from .skel import CmdArgs


class DelegatedError(CniError):
    """An error object printed by the delegated plugin, passed on with the delegate's own code."""

    def __init__(self, msg: str, details: str, delegated_code: int) -> None:
        super().__init__(msg, details)
        self.delegated_code = delegated_code

    def as_dict(self, cni_version: str) -> dict[str, object]:
        out = super().as_dict(cni_version)
        out["code"] = self.delegated_code
        return out


def find_plugin(plugin: str, cni_path: str) -> str:
    """Like libcni: look only in the CNI_PATH folders."""
    if not plugin or "/" in plugin or "\\" in plugin:
        raise InvalidConfig("invalid ipam.type", repr(plugin))
    dirs = [d for d in cni_path.split(":") if d]
    for d in dirs:
        candidate = os.path.join(d, plugin)
        if os.path.isfile(candidate) and os.access(candidate, os.X_OK):
            return candidate
    raise CniError(f"failed to find plugin {plugin!r} in path", f"CNI_PATH={cni_path!r}")


def exec_ipam(cmd: CmdArgs, plugin: str, verb: str) -> Result | None:
    path = find_plugin(plugin, cmd.path)
    env = dict(os.environ)
    env["CNI_COMMAND"] = verb
    done = run([path], stdin=cmd.stdin, env=env)
    if not done.ok:
        try:
            doc = json.loads(done.stdout)
            raise DelegatedError(str(doc.get("msg", "")), str(doc.get("details", "")), int(doc.get("code", 999)))
        except (ValueError, TypeError, AttributeError):
            text = (done.stderr or done.stdout).decode(errors="replace").strip()
            raise CniError(f"{plugin} {verb} failed (exit {done.returncode})", text) from None
    if verb != "ADD":
        return None
    try:
        return decode(json.loads(done.stdout))
    except ValueError as exc:
        raise CniError(f"{plugin} printed an unreadable result", str(exc)) from exc
