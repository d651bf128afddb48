"""flannel's --iptables-forward-rules: on a host whose iptables FORWARD policy is DROP (Docker sets it so), VM
traffic across hosts is still forwarded: the agent accepts forwarding from and to the whole network in a chain of
its own (iptables filter CNI-IGNITE-NODE-FWD, one jump from FORWARD). flanneld does the same (FLANNEL-FWD) and
also flips the policy to ACCEPT; we leave the policy alone. --no-iptables-forward-rules removes the chain.
Found against a real flanneld (tests/node/FLANNEL-INTEROP.md): its host forwarded, ours dropped."""

from __future__ import annotations

import shutil
import signal
from typing import TYPE_CHECKING

import pytest
from multinode import ping, tcp_roundtrip, wait_until
from test_node_cluster import converged

from cni_ignite.node.forward import IPT_CHAIN

if TYPE_CHECKING:
    from multinode import Cluster, Host

pytestmark = [pytest.mark.privileged,
              pytest.mark.skipif(shutil.which("iptables") is None, reason="needs iptables (the FORWARD chain)")]


def forward_rules(host: Host) -> list[str]:
    out = host.sh("iptables", "-w", "-S", IPT_CHAIN, check=False)
    return [line for line in out.splitlines() if line.startswith("-A")]


@pytest.mark.parametrize("cluster", ["vxlan", "host-gw"], indirect=True)
def test_vm_traffic_crosses_hosts_whose_forward_policy_is_drop(cluster: Cluster) -> None:
    hosts = [cluster.add_host() for _ in range(2)]
    for h in hosts:
        h.sh("iptables", "-w", "-P", "FORWARD", "DROP")
        h.start_agent()
    wait_until("routes to every peer", lambda: converged(hosts, cluster.backend))
    (c1, ip1), (c2, ip2) = hosts[0].add_container(), hosts[1].add_container()  # after the subnet file: rules in
    assert ping(c1, ip2) and ping(c2, ip1)
    out = tcp_roundtrip(c1, c2, ip2)
    assert out.startswith(f"echo from {ip2} to {ip1}: xxx"), out
    assert all(len(forward_rules(h)) == 2 for h in hosts)
    net = str(hosts[0].wait_subnet().network)
    assert [r.split(" -m ")[0] for r in forward_rules(hosts[0])] == [f"-A {IPT_CHAIN} -s {net}",
                                                                     f"-A {IPT_CHAIN} -d {net}"]
    assert "-P FORWARD DROP" in hosts[0].sh("iptables", "-w", "-S", "FORWARD")  # the policy is left alone

    # SIGTERM leaves them (the data plane stays); --no-iptables-forward-rules removes them: the DROP policy wins
    assert hosts[1].stop_agent(signal.SIGTERM) == 0
    assert len(forward_rules(hosts[1])) == 2
    hosts[1].start_agent("--no-iptables-forward-rules")
    wait_until("the chain to go", lambda: hosts[1].sh("iptables", "-w", "-S", IPT_CHAIN, check=False) == "")
    assert IPT_CHAIN not in hosts[1].sh("iptables", "-w", "-S", "FORWARD")
    assert not ping(c1, ip2, wait=1)
