"""The frozen ignite-ipam on its own (ADD/CHECK/DEL with a temporary dataDir, as a runtime would start it)
and as the IPAM delegate of the reference Go bridge plugin inside throwaway namespaces."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path
from typing import Any

import pytest
from bundle import MINIMAL_PATH
from nsutil import Namespaces, in_ns, path

GO_BRIDGE = Path("/usr/lib/cni/bridge")


def run(plugin: Path, command: str, conf: dict[str, Any], *, cid: str = "c1", netns: str = "/var/run/netns/none",
        cni_path: str = "", host_ns: str | None = None, env_path: str = MINIMAL_PATH) -> tuple[int, Any]:
    env = {"PATH": env_path, "CNI_COMMAND": command, "CNI_CONTAINERID": cid, "CNI_NETNS": netns,
           "CNI_IFNAME": "eth0", "CNI_PATH": cni_path or str(plugin.parent)}
    argv = [str(plugin)] if host_ns is None else ["ip", "netns", "exec", host_ns, str(plugin)]
    res = subprocess.run(argv, input=json.dumps(conf).encode(), env=env, capture_output=True, timeout=60,
                         check=False, cwd="/")
    out = json.loads(res.stdout) if res.stdout.strip() else None
    return res.returncode, out if res.returncode == 0 else (out, res.stderr.decode())


@pytest.mark.parametrize("env_path", [MINIMAL_PATH, ""])
def test_ipam_add_check_del_with_temp_data_dir(plugin_dir: Path, tmp_path: Path, env_path: str) -> None:
    data = tmp_path / "data"
    conf = {"cniVersion": "0.4.0", "name": "frozen-net", "type": "ignite-ipam",
            "ipam": {"type": "ignite-ipam", "subnet": "10.97.0.0/24", "dataDir": str(data)}}
    ipam = plugin_dir / "ignite-ipam"
    rc, out = run(ipam, "ADD", conf, env_path=env_path)
    assert rc == 0, out
    assert out["ips"][0]["address"] == "10.97.0.2/24"
    assert out["ips"][0]["gateway"] == "10.97.0.1"
    lease = data / "frozen-net" / "10.97.0.2"
    assert lease.read_bytes() == b"c1\r\neth0"
    assert run(ipam, "CHECK", conf, env_path=env_path)[0] == 0
    assert run(ipam, "DEL", conf, env_path=env_path)[0] == 0
    assert not lease.exists()
    assert run(ipam, "DEL", conf, env_path=env_path)[0] == 0  # a second DEL succeeds


def test_ipam_error_is_a_cni_error_object(plugin_dir: Path, tmp_path: Path) -> None:
    conf = {"cniVersion": "1.0.0", "name": "bad", "type": "ignite-ipam",
            "ipam": {"type": "ignite-ipam", "subnet": "not-a-subnet", "dataDir": str(tmp_path)}}
    rc, (out, _) = run(plugin_dir / "ignite-ipam", "ADD", conf)
    assert rc == 1
    assert out["cniVersion"] == "1.0.0"
    assert isinstance(out["code"], int)
    assert out["msg"]


@pytest.mark.privileged
@pytest.mark.skipif(not GO_BRIDGE.exists(), reason="needs Debian's containernetworking-plugins (/usr/lib/cni/bridge)")
def test_go_bridge_delegates_to_frozen_ignite_ipam(plugin_dir: Path, tmp_path: Path, netns: Namespaces) -> None:
    """{"type": "bridge", "ipam": {"type": "ignite-ipam"}}: the Go bridge finds our frozen binary on CNI_PATH
    (next to its own plugins), runs it with its environment, and configures what it returns."""
    host, ctr = netns.new("cnit-host"), netns.new("cnit-ctr")
    data = tmp_path / "data"
    cni_path = f"{plugin_dir}:{GO_BRIDGE.parent}"
    conf = {"cniVersion": "0.4.0", "name": "gobr", "type": "bridge", "bridge": "cnitbr0", "isGateway": True,
            "ipam": {"type": "ignite-ipam", "subnet": "10.98.0.0/24", "dataDir": str(data)}}
    rc, out = run(GO_BRIDGE, "ADD", conf, cid="gobr-c1", netns=path(ctr), cni_path=cni_path, host_ns=host)
    assert rc == 0, out
    assert [ip["address"] for ip in out["ips"]] == ["10.98.0.2/24"]
    assert (data / "gobr" / "10.98.0.2").read_bytes() == b"gobr-c1\r\neth0"
    addrs = in_ns(ctr, ["ip", "-j", "addr", "show", "dev", "eth0"]).stdout
    assert "10.98.0.2" in [a["local"] for a in json.loads(addrs)[0]["addr_info"]]
    in_ns(ctr, ["busybox", "ping", "-c1", "-W2", "10.98.0.1"])  # traffic stays inside the two namespaces
    host_addrs = json.loads(in_ns(host, ["ip", "-j", "addr", "show", "dev", "cnitbr0"]).stdout)[0]["addr_info"]
    assert "10.98.0.1" in [a["local"] for a in host_addrs]

    rc, out = run(GO_BRIDGE, "DEL", conf, cid="gobr-c1", netns=path(ctr), cni_path=cni_path, host_ns=host)
    assert rc == 0, out
    assert not (data / "gobr" / "10.98.0.2").exists()
