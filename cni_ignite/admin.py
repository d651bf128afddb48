"""`cni-ignite`: the operator's command (not on any plugin's hot path, so it may use filelock and netaddr).

    cni-ignite install [--bin-dir /opt/cni/bin] [--conf-dir /etc/cni/net.d] [--from dist/] [--no-conf] [--force]
                       [--take-over-ignite]         replace Ignite's own default 10-ignite.conflist (kept, restored)
    cni-ignite uninstall [--bin-dir /opt/cni/bin]   removes exactly what install put there
    cni-ignite status [--bin-dir B] [--conf-dir C] [--data-dir D] [--state-dir S]
                                                    installed version, the default network, leases, attachments
    cni-ignite leases [--data-dir D] [NETWORK]      a table of leases: address, container, ifname, age
    cni-ignite ignite-gc [--network N] [--data-dir D] [--dry-run]
                                                    after --take-over-ignite: remove the Go chain's iptables rules
                                                    of attachments our DEL released
    cni-ignite version
"""

from __future__ import annotations

import argparse
import sys

from .ipam.config import DEFAULT_DATA_DIR
from .leases import print_leases


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
    p_uninst = sub.add_parser("uninstall", help="remove exactly what install put there")
    p_uninst.add_argument("--bin-dir", default=DEFAULT_BIN_DIR)
    p_status = sub.add_parser("status", help="what is installed, the default network, its leases and attachments")
    p_status.add_argument("--bin-dir", default=DEFAULT_BIN_DIR)
    p_status.add_argument("--conf-dir", default=DEFAULT_CONF_DIR)
    p_status.add_argument("--data-dir", default=None,
                          help=f"IPAM dataDir (default: the network's ipam.dataDir, else {DEFAULT_DATA_DIR})")
    p_status.add_argument("--state-dir", default=None,
                          help=f"firewall rule state (default: the network's stateDir, else {DEFAULT_STATE_DIR})")
    p_gc = sub.add_parser("ignite-gc", help="remove the Go bridge/portmap/firewall rules of released attachments "
                                             "(made before install --take-over-ignite)")
    p_gc.add_argument("--network", default="ignite-cni-bridge")
    p_gc.add_argument("--data-dir", default=DEFAULT_DATA_DIR)
    p_gc.add_argument("--dry-run", action="store_true", help="print what would be removed")
    sub.add_parser("version", help="print the cni-ignite version")
    return parser


def _run(args: argparse.Namespace) -> int:
    from . import __version__
    from .install import install, uninstall
    from .status import print_status

    if args.cmd == "leases":
        return print_leases(args.data_dir, args.network, sys.stdout)
    if args.cmd == "install":
        return install(args.source, args.bin_dir, args.conf_dir, write_conf=not args.no_conf, force=args.force,
                       out=sys.stdout, take_over_ignite=args.take_over_ignite)
    if args.cmd == "uninstall":
        return uninstall(args.bin_dir, sys.stdout)
    if args.cmd == "ignite-gc":
        from .leases import gc_go_rules

        return gc_go_rules(args.network, args.data_dir, sys.stdout, dry_run=args.dry_run)
    if args.cmd == "status":
        return print_status(args.bin_dir, args.conf_dir, args.data_dir, args.state_dir, sys.stdout)
    sys.stdout.write(f"{__version__}\n")  # version
    return 0


def main(argv: list[str]) -> int:
    from .errors import CniError

    args = _parser().parse_args(argv)
    try:
        return _run(args)
    except CniError as exc:
        sys.stderr.write(f"cni-ignite {args.cmd}: {exc.msg}{': ' + exc.details if exc.details else ''}\n")
    except OSError as exc:
        sys.stderr.write(f"cni-ignite {args.cmd}: {exc}\n")
    return 1
