"""flannel's `--iptables-forward-rules`: forwarding from and to the whole network is accepted even where the
iptables FORWARD policy is DROP (Docker sets it so), so VM traffic crosses this host to and from other hosts.

flannel's rules (flannel-io/flannel, network/iptables.go ForwardRules), in a chain of our own:

    iptables -t filter
      FORWARD                -m comment --comment "cni-ignite node forward" -j CNI-IGNITE-NODE-FWD   (first)
      CNI-IGNITE-NODE-FWD    -s N ... -j ACCEPT
                             -d N ... -j ACCEPT

N = the whole network. Unlike flanneld we leave the FORWARD policy as it is. iptables, not our own nft table:
an accept in one nftables base chain does not overrule a drop in another (the iptables-nft `ip filter` table
where Docker's policy lives), while a rule in that same chain does; with iptables-legacy it is the only way.
Without iptables there is no iptables policy to get past, and nothing is installed. The chain is filled by
iptables-restore --noflush (atomic), left in place on SIGTERM like the rest of the data plane, and removed when
the agent starts with --no-iptables-forward-rules.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from .masq import has_iptables, ipt_install_chain, ipt_remove_chain

if TYPE_CHECKING:
    import ipaddress

__all__ = ["COMMENT", "IPT_CHAIN", "available", "install", "remove", "rules_iptables"]

IPT_CHAIN = "CNI-IGNITE-NODE-FWD"
COMMENT = "cni-ignite node forward"
_JUMP = ["FORWARD", "-m", "comment", "--comment", COMMENT, "-j", IPT_CHAIN]


def available() -> bool:
    return has_iptables()


def rules_iptables(network: ipaddress.IPv4Network) -> str:
    n = str(network)
    c = f'-m comment --comment "{COMMENT}"'
    return (f"*filter\n:{IPT_CHAIN} - [0:0]\n"
            f"-A {IPT_CHAIN} -s {n} {c} -j ACCEPT\n"
            f"-A {IPT_CHAIN} -d {n} {c} -j ACCEPT\n"
            "COMMIT\n")


def install(network: ipaddress.IPv4Network) -> bool:
    """Accept forwarding from and to `network`; False when there is no iptables (nothing to get past)."""
    if not available():
        return False
    ipt_install_chain("filter", rules_iptables(network), _JUMP)
    return True


def remove() -> None:
    """Remove our chain and its jump, if present."""
    ipt_remove_chain("filter", IPT_CHAIN, _JUMP)
