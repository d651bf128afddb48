"""The network-wide masquerade, flannel's `--ip-masq`: traffic leaving the whole network is masqueraded, traffic
inside it never is (a VM keeps its own source address towards every other host's VMs).

flannel's rules (flannel-io/flannel, network/iptables.go MasqRules), in our own table so nobody else's rules are
touched:

    table ip cni_ignite_node
      chain postrouting  (nat, hook postrouting, priority srcnat)
        ip saddr N ip daddr N                       return      inside the network: keep the source
        ip saddr != N ip daddr S                    return      from outside to this host's subnet (port maps)
        ip saddr N ip daddr != 224.0.0.0/4          masquerade fully-random     leaving the network
        ip saddr != N ip daddr N                    masquerade fully-random     the host to other hosts' VMs

N = the whole network (FLANNEL_NETWORK), S = this host's subnet. With nftables the table is replaced in one
transaction; without nft, iptables' nat table gets a chain CNI-IGNITE-NODE (filled by iptables-restore
--noflush, also atomic) and one jump from POSTROUTING. The agent installs it after each lease (the subnet may
change), leaves it in place on SIGTERM like the rest of the data plane, and removes it when started with
--no-ip-masq.
"""

from __future__ import annotations

import logging
import shutil
import subprocess
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import ipaddress

__all__ = ["IPT_CHAIN", "NFT_TABLE", "install", "remove", "rules_nft"]

log = logging.getLogger("cni_ignite.node")

NFT_TABLE = "cni_ignite_node"
IPT_CHAIN = "CNI-IGNITE-NODE"
COMMENT = "cni-ignite node masq"
MULTICAST = "224.0.0.0/4"
_ENV = {"PATH": "/usr/sbin:/usr/bin:/sbin:/bin"}


class MasqError(RuntimeError):
    pass


def backend() -> str:
    return "nftables" if shutil.which("nft", path=_ENV["PATH"]) else "iptables"


def _run(argv: list[str], stdin: str = "", check: bool = True) -> subprocess.CompletedProcess[str]:
    done = subprocess.run(argv, input=stdin, capture_output=True, text=True, env=_ENV, check=False)
    if check and done.returncode != 0:
        raise MasqError(f"{' '.join(argv[:3])}: {done.stderr.strip() or done.returncode}")
    return done


def rules_nft(network: ipaddress.IPv4Network, subnet: ipaddress.IPv4Network) -> str:
    """The nft batch that replaces our table (add + delete + create: atomic, works whether it exists or not)."""
    n, s = str(network), str(subnet)
    return (f"add table ip {NFT_TABLE}\ndelete table ip {NFT_TABLE}\n"
            f"table ip {NFT_TABLE} {{\n"
            "  chain postrouting {\n"
            "    type nat hook postrouting priority srcnat; policy accept;\n"
            f"    ip saddr {n} ip daddr {n} return comment \"inside the network\"\n"
            f"    ip saddr != {n} ip daddr {s} return comment \"to this host's subnet\"\n"
            f"    ip saddr {n} ip daddr != {MULTICAST} masquerade fully-random comment \"leaving the network\"\n"
            f"    ip saddr != {n} ip daddr {n} masquerade fully-random comment \"host to other hosts' VMs\"\n"
            "  }\n}\n")


def rules_iptables(network: ipaddress.IPv4Network, subnet: ipaddress.IPv4Network) -> str:
    n, s = str(network), str(subnet)
    c = f'-m comment --comment "{COMMENT}"'
    return (f"*nat\n:{IPT_CHAIN} - [0:0]\n"
            f"-A {IPT_CHAIN} -s {n} -d {n} {c} -j RETURN\n"
            f"-A {IPT_CHAIN} ! -s {n} -d {s} {c} -j RETURN\n"
            f"-A {IPT_CHAIN} -s {n} ! -d {MULTICAST} {c} -j MASQUERADE --random-fully\n"
            f"-A {IPT_CHAIN} ! -s {n} -d {n} {c} -j MASQUERADE --random-fully\n"
            "COMMIT\n")


def has_iptables() -> bool:
    return shutil.which("iptables", path=_ENV["PATH"]) is not None


def ipt_install_chain(table: str, restore: str, jump: list[str]) -> None:
    """Fill our chain of iptables `table` atomically (`restore`: iptables-restore --noflush text) and put its
    `jump` (``[<base chain>, <match...>, "-j", <our chain>]``) first in the base chain unless it is there."""
    _run(["iptables-restore", "-w", "--noflush"], restore)
    if _run(["iptables", "-w", "-t", table, "-C", *jump], check=False).returncode != 0:
        _run(["iptables", "-w", "-t", table, "-I", *jump])


def ipt_remove_chain(table: str, chain: str, jump: list[str]) -> None:
    """Remove every `jump` to our `chain` of iptables `table`, then the chain, if it exists."""
    if not has_iptables() or _run(["iptables", "-w", "-t", table, "-S", chain], check=False).returncode != 0:
        return
    while _run(["iptables", "-w", "-t", table, "-D", *jump], check=False).returncode == 0:
        pass
    _run(["iptables", "-w", "-t", table, "-F", chain], check=False)
    _run(["iptables", "-w", "-t", table, "-X", chain], check=False)


_JUMP = ["POSTROUTING", "-m", "comment", "--comment", COMMENT, "-j", IPT_CHAIN]


def install(network: ipaddress.IPv4Network, subnet: ipaddress.IPv4Network) -> str:
    """Put the masquerade for `network` (this host: `subnet`) in place; returns the backend used."""
    kind = backend()
    if kind == "nftables":
        _run(["nft", "-f", "-"], rules_nft(network, subnet))
        return kind
    ipt_install_chain("nat", rules_iptables(network, subnet), _JUMP)
    return kind


def remove() -> None:
    """Remove our masquerade (both backends: a host may have switched), if present."""
    if shutil.which("nft", path=_ENV["PATH"]):
        _run(["nft", "-f", "-"], f"add table ip {NFT_TABLE}\ndelete table ip {NFT_TABLE}\n", check=False)
    ipt_remove_chain("nat", IPT_CHAIN, _JUMP)
