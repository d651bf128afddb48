"""``cni-ignite gc``: remove the attachments whose network namespace is gone, for runtimes that never send
CNI GC (containerd 1.6, Ignite) and for VMs that died without DEL.

    cni-ignite gc [--conf-dir /etc/cni/net.d] [--network NAME] [--dry-run]

For each ignite-bridge network of the conf dir (or only NAME), the attachments are whatever any of our
stores knows of: the bridge's namespace records (``bridge.records``), the firewall's state records and,
with ignite-ipam, the leases. One whose namespace is gone (``records.gone``: the recorded namespace path is
missing or names another namespace; without a record, its tagged host veth is gone) is removed by the
bridge's own DEL run in-process: host veth, guard and macspoofchk entries, firewall rules, state records,
and the lease last (a sticky network keeps the address held for the owner, as after any DEL). Each
judgement and removal holds the network's bridge lock exclusively, so an ADD in progress (which holds it
shared) is never taken for dead. ``--dry-run`` lists what would be removed and changes nothing.

Chained plugins after ignite-bridge in a conflist (portmap, firewall, ...) are not called: their state is
theirs. Not on any plugin's path.
"""

from __future__ import annotations

import json
import os
import sys
from typing import TYPE_CHECKING, NamedTuple, TextIO

from .errors import CniError
from .netconf import NetConf, load_object, parse_netconf

if TYPE_CHECKING:
    from .bridge.kernel import HostNet
    from .skel import CmdArgs

BRIDGE_TYPES = ("ignite-bridge",)
DEFAULT_CNI_PATH = "/opt/cni/bin"


class Dead(NamedTuple):
    network: str
    container_id: str
    ifname: str
    why: str

    def __str__(self) -> str:
        return f"{self.network} {self.container_id} {self.ifname}: {self.why}"


def bridge_networks(conf_dir: str, name: str | None = None) -> list[NetConf]:
    """The ignite-bridge plugin configurations (with the network's name and cniVersion) of `conf_dir`'s
    .conflist/.conf/.json files, or only the network called `name` (an error when there is none)."""
    found: list[NetConf] = []
    for entry in sorted(os.listdir(conf_dir)):
        if not entry.endswith((".conflist", ".conf", ".json")):
            continue
        try:
            with open(os.path.join(conf_dir, entry), "rb") as f:
                doc = load_object(f.read())
        except (CniError, OSError):  # another tool's broken file is not ours to judge
            continue
        if name is not None and doc.get("name") != name:
            continue
        listed = doc.get("plugins")
        plugins: list[object] = listed if isinstance(listed, list) else [doc]
        for plugin in plugins:
            if isinstance(plugin, dict) and plugin.get("type") in BRIDGE_TYPES:
                one = {**plugin, "name": doc.get("name"), "cniVersion": doc.get("cniVersion", "1.0.0")}
                found.append(parse_netconf(json.dumps(one).encode()))
                break
    if name is not None and not found:
        from .errors import InvalidConfig

        raise InvalidConfig(f"no ignite-bridge network named {name!r} in {conf_dir}")
    return found


def _cmd(conf: NetConf, cid: str, ifname: str) -> CmdArgs:
    from .skel import CmdArgs

    return CmdArgs(command="DEL", container_id=cid, netns="", ifname=ifname, args="",
                   path=os.environ.get("CNI_PATH", DEFAULT_CNI_PATH), stdin=b"", conf=conf)


def _state_dir(conf: NetConf) -> str:
    from .firewall.base import parse_firewall_config

    return parse_firewall_config(conf.raw).state_dir


def known_attachments(conf: NetConf) -> list[tuple[str, str]]:
    """(container ID, ifname) of every attachment the network's stores know (O(attachments))."""
    from .bridge import records
    from .firewall.core import RuleFirewall

    state_dir = _state_dir(conf)
    seen: dict[tuple[str, str], None] = {}
    for rec in records.all_records(state_dir, conf.name):
        seen[(rec.cid, rec.ifname)] = None
    for info in RuleFirewall(state_dir).attachments(conf.name):
        if info.owner.network == conf.name:
            seen[(info.owner.container_id, info.owner.ifname)] = None
    ipam = conf.raw.get("ipam")
    if isinstance(ipam, dict) and ipam.get("type") == "ignite-ipam":
        from .ipam.config import parse_ipam
        from .ipam.store import DiskStore

        store = DiskStore(parse_ipam(conf, {}).data_dir, conf.name)
        for holder in store.scan().values():
            if holder is not None and holder[1]:  # legacy id-only leases name no interface: not ours
                seen[holder] = None
    return list(seen)


def dead_attachments(conf: NetConf, host: HostNet | None = None) -> list[Dead]:
    """The attachments of the network whose namespace is gone (changes nothing)."""
    from .bridge import records
    from .bridge.kernel import HostNet

    own = host is None
    host = host or HostNet()
    try:
        state_dir = _state_dir(conf)
        out = []
        for cid, ifname in known_attachments(conf):
            why = records.gone(host, state_dir, conf.name, cid, ifname)
            if why is not None:
                out.append(Dead(conf.name, cid, ifname, why))
        return out
    finally:
        if own:
            host.close()


def collect(conf: NetConf, *, dry_run: bool = False, out: TextIO | None = None) -> tuple[list[Dead], list[str]]:
    """Remove (or with dry_run only list) the network's dead attachments: (removed or to remove, failures).
    Each is judged again under the network's exclusive lock right before its removal."""
    from .bridge import records
    from .bridge.kernel import HostNet
    from .bridge.plugin import delete

    host = HostNet()
    done: list[Dead] = []
    failures: list[str] = []
    try:
        state_dir = _state_dir(conf)
        for dead in dead_attachments(conf, host):
            if dry_run:
                done.append(dead)
                _say(out, f"would remove {dead}")
                continue
            with records.exclusive(state_dir, conf.name) as locked:
                if not locked:
                    failures.append(f"{dead}: the network is busy (an ADD holds its lock)")
                    continue
                why = records.gone(host, state_dir, conf.name, dead.container_id, dead.ifname)
                if why is None:
                    continue  # came back to life (an ADD of the same container ID)
                try:
                    delete(_cmd(conf, dead.container_id, dead.ifname))
                except CniError as exc:
                    failures.append(f"{dead}: {exc.msg}{': ' + exc.details if exc.details else ''}")
                    continue
            done.append(dead)
            _say(out, f"removed {dead}")
    finally:
        host.close()
    return done, failures


def _say(out: TextIO | None, line: str) -> None:
    if out is not None:
        out.write(line + "\n")


def run(conf_dir: str, network: str | None, *, dry_run: bool, out: TextIO) -> int:
    """The command: 0 when every dead attachment was removed (or listed), 1 otherwise."""
    failed = False
    for conf in bridge_networks(conf_dir, network):
        done, failures = collect(conf, dry_run=dry_run, out=out)
        for line in failures:
            out.write(f"failed {line}\n")
        failed = failed or bool(failures)
        if not done and not failures:
            out.write(f"{conf.name}: no dead attachments\n")
    return 1 if failed else 0


def main(argv: list[str]) -> int:
    """``python -m cni_ignite.gc`` (the same as ``cni-ignite gc``)."""
    import argparse

    parser = argparse.ArgumentParser(prog="cni-ignite gc", description=__doc__.split("\n\n")[0])
    parser.add_argument("--conf-dir", default="/etc/cni/net.d")
    parser.add_argument("--network", default=None)
    parser.add_argument("--dry-run", action="store_true", help="list what would be removed")
    args = parser.parse_args(argv)
    try:
        return run(args.conf_dir, args.network, dry_run=args.dry_run, out=sys.stdout)
    except CniError as exc:
        sys.stderr.write(f"cni-ignite gc: {exc.msg}{': ' + exc.details if exc.details else ''}\n")
    except OSError as exc:
        sys.stderr.write(f"cni-ignite gc: {exc}\n")
    return 1


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
