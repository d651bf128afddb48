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

import shutil
from typing import TYPE_CHECKING

from .masq import _ENV, _run

if TYPE_CHECKING:
    import ipaddress

__all__ = ["COMMENT", "IPT_CHAIN", "available", "install", "remove", "rules_iptables"]

IPT_CHAIN = "CNI-IGNITE-NODE-FWD"
COMMENT = "cni-ignite node forward"
_JUMP = ["FORWARD", "-m", "comment", "--comment", COMMENT, "-j", IPT_CHAIN]


def available() -> bool:
    return shutil.which("iptables", path=_ENV["PATH"]) is not None


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
    _run(["iptables-restore", "-w", "--noflush"], rules_iptables(network))
    if _run(["iptables", "-w", "-C", *_JUMP], check=False).returncode != 0:
        _run(["iptables", "-w", "-I", *_JUMP])
    return True


def remove() -> None:
    """Remove our chain and its jump, if present."""
    if not available() or _run(["iptables", "-w", "-S", IPT_CHAIN], check=False).returncode != 0:
        return
    while _run(["iptables", "-w", "-D", *_JUMP], check=False).returncode == 0:
        pass
    _run(["iptables", "-w", "-F", IPT_CHAIN], check=False)
    _run(["iptables", "-w", "-X", IPT_CHAIN], check=False)

