"""`cni-ignite`: the operator's command (not on any plugin's hot path, so it may use filelock and netaddr).

    cni-ignite install [--bin-dir /opt/cni/bin] [--conf-dir /etc/cni/net.d] [--from dist/] [--no-conf] [--force]
                       [--take-over-ignite]         replace Ignite's own default 10-ignite.conflist (kept, restored)
                       [--network bridge|routed|multinode] [--multi-node [--subnet-file F]]
                                                    which default network to write
                       [--worker]                   plugins through the warm-start launcher (docs/WORKER.md)
    cni-ignite uninstall [--bin-dir /opt/cni/bin]   removes exactly what install put there
    cni-ignite status [--bin-dir B] [--conf-dir C] [--data-dir D] [--state-dir S] [--subnet-file F]
                                                    installed version, the default network, leases, attachments;
                                                    multi-node: this host's subnet, the agent, the peers
    cni-ignite leases [--data-dir D] [NETWORK]      a table of leases: address, container, ifname, age
    cni-ignite ignite-gc [--network N] [--data-dir D] [--dry-run]
                                                    after --take-over-ignite: remove the Go chain's iptables rules
                                                    of attachments our DEL released
    cni-ignite log [--file PATH] [--container ID | --owner OWNER | --network NAME] [--errors] [--follow]
                                                    one readable line per call from the per-call log (and its .1)
    cni-ignite node [--etcd-endpoints E] ...        multi-node agent: etcd subnets, VXLAN (docs/MULTINODE.md)
    cni-ignite reserve [--conf-dir C] [--ifname eth0] [--mac M] NETWORK OWNER ADDRESS
    cni-ignite unreserve [--conf-dir C] [--ifname eth0] NETWORK OWNER [ADDRESS]
                                                    pin / unpin an address (and MAC) to an owner at run time
    cni-ignite gc [--conf-dir C] [--network N] [--dry-run]
                                                    remove attachments whose namespace is gone (runtimes without GC)
    cni-ignite worker [--socket /run/cni-ignite/worker.sock]
                                                    warm start: serve plugin calls handed over by the bundle's
                                                    launcher (install --worker), docs/WORKER.md
    cni-ignite version
"""

from __future__ import annotations

import argparse
import json
import sys
from typing import TYPE_CHECKING, Any, BinaryIO, NamedTuple, TextIO

from .errors import CniError
from .ipam.config import DEFAULT_DATA_DIR
from .leases import print_leases

if TYPE_CHECKING:
    from collections.abc import Callable


def _parser() -> argparse.ArgumentParser:
    from .firewall.base import DEFAULT_STATE_DIR
    from .install import DEFAULT_BIN_DIR, DEFAULT_CONF_DIR, default_source

    parser = argparse.ArgumentParser(prog="cni-ignite", description="cni-ignite administration")
    sub = parser.add_subparsers(dest="cmd", required=True)
    p_leases = sub.add_parser("leases", help="list IPAM leases")
    p_leases.add_argument("--data-dir", default=DEFAULT_DATA_DIR)
    p_leases.add_argument("network", nargs="*")
    p_inst = sub.add_parser("install", help="install the plugins and (into an empty conf dir) the default network")
    p_inst.add_argument("--bin-dir", default=DEFAULT_BIN_DIR)
    p_inst.add_argument("--conf-dir", default=DEFAULT_CONF_DIR)
    p_inst.add_argument("--from", dest="source", default=default_source(),
                        help="dist/ or the bundle folder (default: the bundle running this, else ./dist)")
    p_inst.add_argument("--no-conf", action="store_true", help="do not write 10-ignite.conflist")
    p_inst.add_argument("--force", action="store_true", help="replace ignite-* names not installed by us")
    p_inst.add_argument("--take-over-ignite", action="store_true",
                        help="replace 10-ignite.conflist when it is exactly Ignite's default network (Go bridge, "
                             "host-local, portmap, firewall); kept as 10-ignite.conflist.cni-ignite-backup, "
                             "restored by uninstall. Any other content is refused")
    p_inst.add_argument("--network", dest="network_kind", choices=("bridge", "routed", "multinode"),
                        default="bridge",
                        help="the default network to write: bridge (10-ignite.conflist, 10.61.0.0/16), routed "
                             "(20-ignite-routed.conflist, 10.62.0.0/16, no bridge and no port limit) or multinode "
                             "(30-ignite-multinode.conflist: this host's subnet of the network `cni-ignite node` "
                             "spans across hosts, from its subnet file)")
    p_inst.add_argument("--multi-node", dest="network_kind", action="store_const", const="multinode",
                        help="the same as --network multinode")
    p_inst.add_argument("--subnet-file", default=None,
                        help="with --multi-node: the node agent's subnet file (default /run/flannel/subnet.env); "
                             "its FLANNEL_MTU, when readable now, becomes the network's mtu")
    p_inst.add_argument("--worker", action="store_true",
                        help="link the plugins to the warm-start launcher: calls go to `cni-ignite worker` when "
                             "it runs (docs/WORKER.md)")
    p_uninst = sub.add_parser("uninstall", help="remove exactly what install put there")
    p_uninst.add_argument("--bin-dir", default=DEFAULT_BIN_DIR)
    p_status = sub.add_parser("status", help="what is installed, the default network, its leases and attachments")
    p_status.add_argument("--bin-dir", default=DEFAULT_BIN_DIR)
    p_status.add_argument("--conf-dir", default=DEFAULT_CONF_DIR)
    p_status.add_argument("--data-dir", default=None,
                          help=f"IPAM dataDir (default: the network's ipam.dataDir, else {DEFAULT_DATA_DIR})")
    p_status.add_argument("--worker-socket", default=None, help="where the warm-start worker listens "
                          "(default /run/cni-ignite/worker.sock)")
    p_status.add_argument("--state-dir", default=None,
                          help=f"firewall rule state (default: the network's stateDir, else {DEFAULT_STATE_DIR})")
    p_status.add_argument("--subnet-file", default=None,
                          help="the multi-node agent's subnet file (default: the network's ipam.subnetFile); shows "
                               "this host's subnet, the agent and the peers (from etcd if it answers)")
    p_gc = sub.add_parser("ignite-gc", help="remove the Go bridge/portmap/firewall rules of released attachments "
                                             "(made before install --take-over-ignite)")
    p_gc.add_argument("--network", default="ignite-cni-bridge")
    p_gc.add_argument("--data-dir", default=DEFAULT_DATA_DIR)
    p_gc.add_argument("--dry-run", action="store_true", help="print what would be removed")
    p_log = sub.add_parser("log", help="one container's / owner's / network's calls from the per-call log")
    p_log.add_argument("--file", default=None, help="the log (default: logFile of the default network in --conf-dir)")
    p_log.add_argument("--conf-dir", default=DEFAULT_CONF_DIR)
    which = p_log.add_mutually_exclusive_group()
    which.add_argument("--container", default="", help="a container ID or a prefix of one")
    which.add_argument("--owner", default="", help="IGNITE_OWNER / k8s:<namespace>/<pod>")
    which.add_argument("--network", default="")
    p_log.add_argument("--errors", action="store_true", help="failed calls only")
    p_log.add_argument("--follow", "-f", action="store_true", help="keep printing new calls (across rotations)")
    _identity_commands(sub, DEFAULT_CONF_DIR)
    sub.add_parser("version", help="print the cni-ignite version")
    return parser


def _identity_commands(sub: Any, conf_dir: str) -> None:
    """reserve, unreserve and gc: the stable-identity and dead-attachment commands."""
    p_res = sub.add_parser("reserve", help="pin an address (and a MAC) to an owner")
    p_res.add_argument("--conf-dir", default=conf_dir)
    p_res.add_argument("--ifname", default="eth0")
    p_res.add_argument("--mac", default="")
    p_res.add_argument("network")
    p_res.add_argument("owner")
    p_res.add_argument("address")
    p_unres = sub.add_parser("unreserve", help="drop an owner's run-time reservations")
    p_unres.add_argument("--conf-dir", default=conf_dir)
    p_unres.add_argument("--ifname", default="eth0")
    p_unres.add_argument("network")
    p_unres.add_argument("owner")
    p_unres.add_argument("address", nargs="?")
    p_dgc = sub.add_parser("gc", help="remove attachments whose network namespace is gone (leases, links, rules, "
                                      "state)")
    p_dgc.add_argument("--conf-dir", default=conf_dir)
    p_dgc.add_argument("--network", default=None)
    p_dgc.add_argument("--dry-run", action="store_true", help="list what would be removed")


def _run(args: argparse.Namespace) -> int:
    from . import __version__
    from .install import install, uninstall
    from .status import print_status

    if args.cmd == "leases":
        return print_leases(args.data_dir, args.network, sys.stdout)
    if args.cmd == "install":
        return install(args.source, args.bin_dir, args.conf_dir, write_conf=not args.no_conf, force=args.force,
                       out=sys.stdout, take_over_ignite=args.take_over_ignite, network=args.network_kind,
                       subnet_file=args.subnet_file, worker=args.worker)
    if args.cmd == "uninstall":
        return uninstall(args.bin_dir, sys.stdout)
    if args.cmd in ("log", "ignite-gc", "reserve", "unreserve", "gc"):
        return _run_more(args)
    if args.cmd == "status":
        rc = print_status(args.bin_dir, args.conf_dir, args.data_dir, args.state_dir, sys.stdout,
                          worker_socket=args.worker_socket)
        subnet_file = args.subnet_file or network_subnet_file(args.conf_dir)
        if subnet_file:
            from .node.status import print_node_status

            print_node_status(subnet_file, sys.stdout)
        return rc
    sys.stdout.write(f"{__version__}\n")  # version
    return 0


def _run_more(args: argparse.Namespace) -> int:
    if args.cmd in ("reserve", "unreserve"):
        from .reserve import find_network, reserve, unreserve

        net = find_network(args.conf_dir, args.network)
        if args.cmd == "reserve":
            r = reserve(net, args.owner, args.address, args.ifname, args.mac)
            sys.stdout.write(f"reserved {r.address} for {r.owner}/{r.ifname}{' mac ' + r.mac if r.mac else ''}\n")
        else:
            for ip in unreserve(net, args.owner, args.address, args.ifname):
                sys.stdout.write(f"unreserved {ip}\n")
        return 0
    if args.cmd == "gc":
        from .gc import run as gc_dead

        return gc_dead(args.conf_dir, args.network, dry_run=args.dry_run, out=sys.stdout)
    if args.cmd == "ignite-gc":
        from .leases import gc_go_rules

        return gc_go_rules(args.network, args.data_dir, sys.stdout, dry_run=args.dry_run)
    path = args.file or default_log_file(args.conf_dir)  # log
    if not path:
        raise CniError(f"no --file given and the default network in {args.conf_dir} sets no logFile")
    flt = LogFilter(container=args.container, owner=args.owner, network=args.network, errors=args.errors)
    try:
        return print_log(path, flt, sys.stdout, follow=args.follow)
    except KeyboardInterrupt:
        return 0


def main(argv: list[str]) -> int:
    if argv[:1] == ["node"]:  # the long-running agent has its own parser (and imports pyroute2)
        from .node import main as node_main

        return node_main(argv[1:])
    if argv[:1] == ["worker"]:  # warm start: a resident server of plugin calls (docs/WORKER.md)
        from .worker import main as worker_main

        return worker_main(argv[1:])
    args = _parser().parse_args(argv)
    try:
        return _run(args)
    except CniError as exc:
        sys.stderr.write(f"cni-ignite {args.cmd}: {exc.msg}{': ' + exc.details if exc.details else ''}\n")
    except OSError as exc:
        sys.stderr.write(f"cni-ignite {args.cmd}: {exc}\n")
    return 1


# ------------------------------------------------------------------------------------------------- log

class LogFilter(NamedTuple):
    container: str = ""  # a full ID or a prefix of one
    owner: str = ""
    network: str = ""
    errors: bool = False

    def matches(self, doc: dict[str, Any]) -> bool:
        return ((not self.container or str(doc.get("containerID", "")).startswith(self.container))
                and (not self.owner or doc.get("owner") == self.owner)
                and (not self.network or doc.get("network") == self.network)
                and (not self.errors or doc.get("level") == "error" or "code" in doc))


def network_subnet_file(conf_dir: str) -> str | None:
    """The default network's ``ipam.subnetFile`` (a multi-node network), if any."""
    from .status import _plugins, default_network

    found = default_network(conf_dir)
    if found is None:
        return None
    for plugin in _plugins(found[1]):
        ipam = plugin.get("ipam")
        if isinstance(ipam, dict) and isinstance(ipam.get("subnetFile"), str):
            return str(ipam["subnetFile"])
    return None


def default_log_file(conf_dir: str) -> str | None:
    """The ``logFile`` of the default network (the conf dir's first config, as libcni picks it): its plugins',
    or their ``ipam`` section's."""
    from .status import _plugins, default_network

    found = default_network(conf_dir)
    if found is None:
        return None
    for plugin in _plugins(found[1]):
        for section in (plugin, plugin.get("ipam")):
            if isinstance(section, dict) and isinstance(section.get("logFile"), str):
                return str(section["logFile"])
    return None


def _short(cid: str) -> str:
    return cid[:12] if len(cid) == 64 and all(c in "0123456789abcdef" for c in cid) else cid


def format_call(doc: dict[str, Any]) -> str:
    """One readable line: time verb network container ifname owner ms result-or-error."""
    cid = str(doc.get("containerID", ""))
    owner = str(doc.get("owner", ""))
    cells = [str(doc.get("time", "?")), f"{doc.get('plugin', '?')}", f"{doc.get('verb', '?'):<6}",
             str(doc.get("network", "")), _short(cid) or "-", str(doc.get("ifname", "")) or "-",
             f"owner={owner}" if owner and owner != cid else "", f"{doc.get('ms', '?')}ms"]
    if doc.get("level") == "error" or "code" in doc:
        details = doc.get("details")
        result = f"ERROR {doc.get('code', '?')}: {doc.get('msg', '')}{f' ({details})' if details else ''}"
    else:
        result = "ok"
        if doc.get("addresses"):
            result += " " + ",".join(map(str, doc["addresses"]))
        if doc.get("hostPorts"):
            result += " ports " + ",".join(map(str, doc["hostPorts"]))
    return " ".join(c for c in cells if c) + "  " + result


def _emit(text: str, flt: LogFilter, out: TextIO) -> None:
    try:
        doc = json.loads(text)
    except ValueError:
        out.write(f"(unreadable line) {text.strip()[:200]}\n")
        return
    if isinstance(doc, dict) and flt.matches(doc):
        out.write(format_call(doc) + "\n")


class _Tail:
    """Reads whole lines appended to a file, from its start; notices when the file was renamed away (rotated)."""

    def __init__(self, path: str) -> None:
        self.path = path
        self.file: BinaryIO | None = None
        self.pending = b""

    def lines(self) -> list[bytes]:
        if self.file is None:
            try:
                self.file = open(self.path, "rb")  # noqa: SIM115  (kept open across calls; close() closes it)
            except FileNotFoundError:
                return []
        self.pending += self.file.read()
        *done, self.pending = self.pending.split(b"\n")
        return done

    def rotated(self) -> bool:
        """The name now holds another file (or none): what was left in ours has been read; start again."""
        import os

        if self.file is None:
            return False
        try:
            if os.stat(self.path).st_ino == os.fstat(self.file.fileno()).st_ino:
                return False
        except FileNotFoundError:
            pass
        self.close()
        self.pending = b""
        return True

    def close(self) -> None:
        if self.file is not None:
            self.file.close()
            self.file = None


def print_log(path: str, flt: LogFilter, out: TextIO, *, follow: bool = False,
              stop: Callable[[], bool] | None = None, poll: float = 0.2) -> int:
    """Print the calls in ``<path>.1`` (the rotated generation) then ``<path>``; with `follow`, keep printing
    calls as they are appended, across rotations, until `stop()` (or forever: interrupt with Ctrl-C)."""
    import os
    import time

    if not follow and not os.path.exists(path) and not os.path.exists(path + ".1"):
        raise CniError(f"no log at {path}", "is logFile set in the network config, and has a call run yet?")
    try:
        with open(path + ".1", "rb") as f:
            for raw in f:
                _emit(raw.decode("utf-8", errors="replace"), flt, out)
    except FileNotFoundError:
        pass
    tail = _Tail(path)
    try:
        while True:
            lines = tail.lines()
            for raw in lines:
                _emit(raw.decode("utf-8", errors="replace"), flt, out)
            if not follow or (stop is not None and stop()):
                return 0
            out.flush()
            if not lines and tail.rotated():
                continue
            time.sleep(poll)
    finally:
        tail.close()
