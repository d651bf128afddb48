"""`cni-ignite node`: the multi-node agent (flanneld's job for the default network, flannel-compatible).

    python -m cni_ignite.node --etcd-endpoints http://10.0.0.1:2379 [--iface eth0] [--backend vxlan|host-gw] ...

Long-running and never imported by the plugins: it may use dataclasses, threads and pyroute2's IPRoute.
The plugins only read the subnet file it writes (see subnetfile.py).
"""

from __future__ import annotations

import argparse
import logging
import signal
import sys
from typing import TYPE_CHECKING

from .netconfig import BACKENDS
from .subnetfile import DEFAULT_SUBNET_FILE

if TYPE_CHECKING:
    from types import FrameType

__all__ = ["main", "parser"]


def parser(prog: str = "cni-ignite node") -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog=prog, description="Lease this host's subnet of the default network in etcd "
                                "and route to every other host's subnet (VXLAN or host-gw), like flanneld.")
    p.add_argument("--etcd-endpoints", default="http://127.0.0.1:2379",
                   help="comma-separated etcd client URLs (http:// or https://)")
    p.add_argument("--etcd-prefix", default="/coreos.com/network", help="etcd key prefix (flannel's default)")
    p.add_argument("--etcd-cafile", help="CA bundle to verify etcd's server certificate")
    p.add_argument("--etcd-certfile", help="client certificate for etcd (TLS client auth)")
    p.add_argument("--etcd-keyfile", help="client certificate's private key")
    p.add_argument("--network", default="10.61.0.0/16", help="written to <prefix>/config when absent")
    p.add_argument("--subnet-len", type=int, default=24, help="per-host subnet length, when writing the config")
    p.add_argument("--backend", choices=BACKENDS, default="vxlan", help="when writing the config")
    p.add_argument("--vni", type=int, default=1, help="VXLAN network id, when writing the config")
    p.add_argument("--port", type=int, default=8472, help="VXLAN UDP port, when writing the config")
    p.add_argument("--iface", help="underlay interface (default: the one holding --public-ip, else the default "
                   "route's)")
    p.add_argument("--public-ip", help="this host's address that the other hosts reach (default: --iface's)")
    p.add_argument("--subnet-file", default=DEFAULT_SUBNET_FILE, help="where to write FLANNEL_* for the plugins")
    p.add_argument("--subnet-ttl", type=int, default=24 * 3600,
                   help="seconds a stopped host keeps its subnet (etcd lease TTL; flannel's is 24 h)")
    p.add_argument("--ip-masq", action=argparse.BooleanOptionalAction, default=True,
                   help="masquerade traffic leaving the whole network, never traffic inside it (flannel's --ip-masq; "
                   "the multi-node conflist sets the bridge's ipMasq to false and relies on it). --no-ip-masq "
                   "removes what an earlier run installed")
    p.add_argument("--iptables-forward-rules", action=argparse.BooleanOptionalAction, default=True,
                   help="accept forwarding from and to the whole network in iptables' FORWARD chain, which a DROP "
                   "policy (Docker's) would otherwise stop (flannel's flag of that name; the policy is left alone). "
                   "--no-iptables-forward-rules removes what an earlier run installed")
    p.add_argument("--log-level", default="info", choices=("debug", "info", "warning", "error"))
    return p


def main(argv: list[str] | None = None) -> int:
    args = parser().parse_args(sys.argv[1:] if argv is None else argv)
    logging.basicConfig(level=logging.WARNING, stream=sys.stderr, format="%(asctime)s %(levelname)s %(message)s")
    logging.getLogger("cni_ignite.node").setLevel(args.log_level.upper())  # not pyroute2's debug chatter
    from pyroute2 import IPRoute

    from .agent import Agent, Options
    from .etcd import TlsFiles

    if bool(args.etcd_certfile) != bool(args.etcd_keyfile):
        print("cni-ignite node: --etcd-certfile and --etcd-keyfile go together", file=sys.stderr)
        return 2
    opts = Options(endpoints=[e.strip() for e in args.etcd_endpoints.split(",") if e.strip()],
                   prefix=args.etcd_prefix, network=args.network, subnet_len=args.subnet_len, backend=args.backend,
                   vni=args.vni, port=args.port, iface=args.iface, public_ip=args.public_ip,
                   subnet_file=args.subnet_file, ttl=args.subnet_ttl, ip_masq=args.ip_masq,
                   forward_rules=args.iptables_forward_rules,
                   tls=TlsFiles(args.etcd_cafile, args.etcd_certfile, args.etcd_keyfile))
    with IPRoute() as ipr:
        try:
            agent = Agent(opts, ipr)
        except ValueError as exc:
            print(f"cni-ignite node: {exc}", file=sys.stderr)
            return 2

        def on_signal(signum: int, _frame: FrameType | None) -> None:
            logging.getLogger("cni_ignite.node").info("signal %d: stopping", signum)
            agent.stop()

        signal.signal(signal.SIGTERM, on_signal)
        signal.signal(signal.SIGINT, on_signal)
        try:
            agent.run()
        except ValueError as exc:  # underlay not found and the like: a configuration error, not transient
            print(f"cni-ignite node: {exc}", file=sys.stderr)
            return 2
    return 0
