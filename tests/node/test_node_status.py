"""`cni-ignite status` on a multi-node host: this host's subnet, the agent, the peers and their state; it keeps
answering (from the kernel's routes) when etcd does not."""

from __future__ import annotations

import io
import json
import re
import sys
import time
from pathlib import Path
from typing import TYPE_CHECKING

import pytest
from multinode import MULTINODE_CONFLIST, wait_until
from nsutil import in_ns
from test_node_cluster import converged

from cni_ignite.node.status import print_node_status

if TYPE_CHECKING:
    from multinode import Cluster, Host

ADMIN = Path(sys.executable).parent / "cni-ignite"


def status(host: Host, tmp: Path) -> tuple[int, str]:
    conf_dir = tmp / f"{host.name}-net.d"
    if not conf_dir.exists():
        conf_dir.mkdir()
        doc = json.loads(MULTINODE_CONFLIST.read_text())
        doc["plugins"][0]["ipam"]["subnetFile"] = str(host.subnet_file)
        (conf_dir / MULTINODE_CONFLIST.name).write_text(json.dumps(doc))
    res = in_ns(host.ns, [str(ADMIN), "status", "--bin-dir", str(tmp / "bin"), "--conf-dir", str(conf_dir),
                          "--data-dir", str(host.state / "ipam"), "--state-dir", str(host.state / "cni-state")],
                check=False, timeout=30)
    return res.returncode, res.stdout.decode() + res.stderr.decode()


@pytest.mark.privileged
def test_status_shows_subnet_agent_and_peers_and_survives_etcd_down(cluster: Cluster, tmp_path: Path) -> None:
    hosts = [cluster.add_host() for _ in range(3)]
    for h in hosts:
        h.start_agent()
    wait_until("routes to every peer", lambda: converged(hosts, cluster.backend))
    subs = [str(h.wait_subnet().subnet) for h in hosts]
    rc, out = status(hosts[0], tmp_path)
    assert rc == 0, out
    assert f"multi-node: {subs[0]} of 10.61.0.0/16 (gateway " in out
    assert "mtu 1450, agent masquerades leaving traffic" in out
    assert hosts[0].proc is not None
    assert f"agent: pid {hosts[0].proc.pid} running, vxlan, public IP {hosts[0].ip}, etcd {cluster.etcd.url}" in out
    assert "peers (etcd): 2" in out
    for h, s in zip(hosts[1:], subs[1:], strict=True):
        line = next(ln for ln in out.splitlines() if ln.strip().startswith(s + " "))
        assert h.ip in line and "vxlan" in line and line.endswith("routed"), line
        ttl = int(re.search(r"lease (\d+) s", line)[1])  # type: ignore[index]
        assert 0 < ttl <= cluster.ttl

    # a host's route removed behind the agent's back shows as NOT ROUTED
    hosts[0].sh("ip", "route", "del", subs[2], "proto", "61")
    rc, out = status(hosts[0], tmp_path)
    assert rc == 0 and re.search(rf"{re.escape(subs[2])} .* NOT ROUTED", out), out

    # etcd down: status still answers, quickly, with the kernel's view
    cluster.etcd.stop()
    t0 = time.monotonic()
    rc, out = status(hosts[0], tmp_path)
    assert rc == 0, out
    assert time.monotonic() - t0 < 15
    assert "etcd unreachable" in out
    assert "peers (from the kernel's routes, protocol 61): 1" in out and subs[1] in out

    # the agent stopped: said so
    hosts[0].stop_agent()
    rc, out = status(hosts[0], tmp_path)
    assert rc == 0 and "NOT RUNNING" in out, out


def test_node_status_without_an_agent_never_fails(tmp_path: Path) -> None:
    out = io.StringIO()
    print_node_status(str(tmp_path / "missing.env"), out)
    text = out.getvalue()
    assert "multi-node: subnet file" in text and "does not exist" in text
    assert "agent: no state file" in text
    env = tmp_path / "subnet.env"
    env.write_text("FLANNEL_NETWORK=10.61.0.0/16\nFLANNEL_SUBNET=10.61.7.1/24\nFLANNEL_MTU=1450\nFLANNEL_IPMASQ=false\n")
    (tmp_path / "subnet.env.cni-ignite-node.json").write_text(json.dumps(
        {"pid": 2**22 + 12345, "endpoints": ["http://127.0.0.1:1"], "prefix": "/coreos.com/network"}))
    out = io.StringIO()
    print_node_status(str(env), out)
    text = out.getvalue()
    assert "multi-node: 10.61.7.0/24 of 10.61.0.0/16 (gateway 10.61.7.1, mtu 1450, agent does not masquerade" in text
    assert "NOT RUNNING" in text and "etcd unreachable" in text
