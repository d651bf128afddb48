"""The bridge's IPAM: our own ignite-ipam runs in-process (same code, no second process); any other
``ipam.type`` (host-local, static, dhcp, …) is executed from CNI_PATH like libcni's delegation."""

from __future__ import annotations

from .config import OUR_IPAM

TYPE_CHECKING = False  # not typing.TYPE_CHECKING: no typing import on a plugin's path (cni_ignite/__init__.py)
if TYPE_CHECKING:
    from ..ipam.config import IpamConfig
    from ..result import Result
    from ..skel import CmdArgs


def _ours(ipam_type: str) -> bool:
    return ipam_type in OUR_IPAM


def validate(cmd: CmdArgs, ipam_type: str) -> IpamConfig | None:
    """Parse our own IPAM's block (code 7 on bad values) so ADD can refuse it before changing anything;
    returns it (its dataDir holds sticky records and reservations), None for a delegated IPAM.

    A delegated plugin validates its own configuration when it runs; here it need only be on CNI_PATH."""
    if _ours(ipam_type):
        from ..ipam import plugin

        return plugin.config_of(cmd)
    from ..delegate import find_plugin

    find_plugin(ipam_type, cmd.path)
    return None


def add(cmd: CmdArgs, ipam_type: str) -> Result:
    if _ours(ipam_type):
        from ..ipam import plugin

        return plugin.add(cmd)
    from ..delegate import exec_ipam

    result = exec_ipam(cmd, ipam_type, "ADD")
    assert result is not None
    return result


def run(cmd: CmdArgs, ipam_type: str, verb: str) -> None:
    """DEL, CHECK, GC or STATUS."""
    if _ours(ipam_type):
        from ..ipam import plugin

        {"DEL": plugin.delete, "CHECK": plugin.check, "GC": plugin.gc, "STATUS": plugin.status}[verb](cmd)
        return
    from ..delegate import exec_ipam

    exec_ipam(cmd, ipam_type, verb)
