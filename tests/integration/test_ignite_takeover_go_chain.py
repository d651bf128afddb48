"""Taking over an Ignite host with the real reference plugins (/usr/lib/cni) in a throwaway host namespace:
VMs attached by Ignite's Go chain (bridge + host-local -> portmap -> firewall, Ignite's exact default conflist,
dataDir redirected to a temp dir), then `install --take-over-ignite`, then their DEL through our conflist with
the Go chain's cached result as prevResult, as libcni/go-cni sends it.

Our DEL removes the veth and the host-local lease. The Go plugins' iptables rules (bridge ipMasq chain
CNI-<hash>, portmap CNI-DN-<hash>, firewall CNI-FORWARD accepts) are not ours to find on DEL: they stay until
`cni-ignite ignite-gc` removes exactly those of released attachments; an attachment still leased keeps its
rules."""

from __future__ import annotations

import io
import json
import os
import subprocess
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest
from cnirun import GO_PLUGINS, call, source_bin_dir
from nsutil import in_ns, path

from cni_ignite import install as inst
from cni_ignite.leases import go_chain

if TYPE_CHECKING:
    from nsutil import Namespaces

pytestmark = [pytest.mark.privileged,
              pytest.mark.skipif(not (GO_PLUGINS / "portmap").exists(), reason="needs containernetworking-plugins")]

REPO = Path(__file__).resolve().parent.parent.parent
IGNITE = (REPO / "tests" / "unit" / "fixtures" / "ignite-default-10-ignite.conflist").read_bytes()
NET = "ignite-cni-bridge"


def run_chain(command: str, conflist: dict[str, Any], host: str, cid: str, netns: str, cni_path: str,
              *, prev: dict[str, Any] | None = None, port_mappings: list[dict[str, Any]] | None = None,
              ) -> dict[str, Any] | None:
    """As libcni: ADD through the plugins in order, each given the previous result; DEL in reverse, each given
    the cached result of the ADD."""
    plugins = conflist["plugins"] if command == "ADD" else list(reversed(conflist["plugins"]))
    result = prev
    for plugin in plugins:
        conf = {"cniVersion": conflist["cniVersion"], "name": conflist["name"], **plugin}
        if plugin.get("capabilities", {}).get("portMappings") and port_mappings:
            conf["runtimeConfig"] = {"portMappings": port_mappings}
        if result is not None:
            conf["prevResult"] = result
        res = call(Path(cni_path) / plugin["type"], command, conf, host_ns=host, container_id=cid, netns=netns,
                   cni_path=cni_path)
        assert res.rc == 0, (plugin["type"], command, res.stdout, res.stderr)
        if command == "ADD":
            result = res.out
    return result


def rules(host: str) -> str:
    return "\n".join(line for table in ("nat", "filter")
                     for line in in_ns(host, ["iptables-save", "-t", table]).stdout.decode().splitlines()
                     if line.startswith(("-A", ":")))


def test_vm_attached_by_ignite_go_chain_is_removed_by_our_del_after_take_over(netns: Namespaces,
                                                                              tmp_path: Path) -> None:
    host, vm_a, vm_b = netns.new("cnit-host"), netns.new("cnit-ctr"), netns.new("cnit-ctr")
    data = tmp_path / "cni-networks"
    go_conf = json.loads(IGNITE)
    go_conf["plugins"][0]["ipam"]["dataDir"] = str(data)

    # Two VMs started by Ignite before the switch, each with a host port.
    ra = run_chain("ADD", go_conf, host, "ignite-aaaa", path(vm_a), str(GO_PLUGINS),
                   port_mappings=[{"hostPort": 8080, "containerPort": 80, "protocol": "tcp"}])
    rb = run_chain("ADD", go_conf, host, "ignite-bbbb", path(vm_b), str(GO_PLUGINS),
                   port_mappings=[{"hostPort": 8081, "containerPort": 80, "protocol": "tcp"}])
    assert ra is not None and rb is not None
    ip_a = ra["ips"][0]["address"].split("/")[0]
    ip_b = rb["ips"][0]["address"].split("/")[0]
    host_veth_a = next(i["name"] for i in ra["interfaces"] if "sandbox" not in i and i["name"] != "ignite0")
    before = rules(host)
    assert go_chain(NET, "ignite-aaaa") in before and go_chain(NET, "ignite-aaaa", "DN-") in before
    assert f"-A CNI-FORWARD -s {ip_a}/32 -j ACCEPT" in before

    # The switch: Ignite's 10-ignite.conflist is taken over (a temp conf dir holding Ignite's exact bytes).
    conf_dir, bin_dir = tmp_path / "net.d", tmp_path / "bin"
    conf_dir.mkdir()
    (conf_dir / "10-ignite.conflist").write_bytes(IGNITE)
    bundle = tmp_path / "bundle" / "cni-ignite"
    (bundle / "_internal" / "conf").mkdir(parents=True)
    (bundle / "cni-ignite").write_text("#!/bin/sh\necho 0.1.0\n")
    (bundle / "cni-ignite").chmod(0o755)
    (bundle / "_internal" / "conf" / "10-ignite.conflist").write_bytes((REPO / "conf" / "10-ignite.conflist")
                                                                       .read_bytes())
    inst.install(str(bundle), str(bin_dir), str(conf_dir), write_conf=True, force=False, out=io.StringIO(),
                 take_over_ignite=True)
    ours = json.loads((conf_dir / "10-ignite.conflist").read_text())
    assert ours["name"] == NET and [p["type"] for p in ours["plugins"]] == ["ignite-bridge"]
    ours["plugins"][0]["ipam"]["dataDir"] = str(data)  # same redirect as the Go chain had
    ours["plugins"][0]["stateDir"] = str(tmp_path / "state")

    # VM a is removed after the switch: its DEL reaches our plugin, with the Go chain's result as prevResult.
    run_chain("DEL", ours, host, "ignite-aaaa", path(vm_a), str(source_bin_dir()), prev=ra)
    assert host_veth_a not in in_ns(host, ["ip", "-o", "link"]).stdout.decode()  # veth gone (both ends)
    assert "eth0" not in in_ns(vm_a, ["ip", "-o", "link"]).stdout.decode()
    files = {p.name: p.read_bytes() for p in (data / NET).iterdir() if p.name[0].isdigit()}
    leases = sorted(name for name, data_ in files.items() if not data_.startswith(b"_ignite_"))
    assert leases == [ip_b]  # a's host-local lease released by ignite-ipam; b's kept
    assert files[ip_a].startswith(b"_ignite_held_")  # our default network keeps a's address for its owner
    # What our DEL cannot see: the Go plugins' rules of VM a are all still there (documented in README).
    assert rules(host) == before

    # `cni-ignite ignite-gc` removes exactly them; b (still leased) keeps its rules.
    env = {**os.environ, "PATH": f"{Path(sys.executable).parent}:/usr/sbin:/usr/bin:/sbin:/bin"}
    dry = subprocess.run(["ip", "netns", "exec", host, "cni-ignite", "ignite-gc", "--data-dir", str(data),
                          "--dry-run"], capture_output=True, env=env, timeout=60, check=True).stdout.decode()
    assert "ignite-aaaa" in dry and "ignite-bbbb" not in dry and rules(host) == before
    out = subprocess.run(["ip", "netns", "exec", host, "cni-ignite", "ignite-gc", "--data-dir", str(data)],
                         capture_output=True, env=env, timeout=60, check=False)
    assert out.returncode == 0, out.stdout.decode() + out.stderr.decode()
    after = rules(host)
    for gone in (go_chain(NET, "ignite-aaaa"), go_chain(NET, "ignite-aaaa", "DN-"), f"{ip_a}/32", "ignite-aaaa",
                 "--dport 8080"):
        assert gone not in after, gone
    kept = [line for line in before.splitlines() if not any(
        s in line for s in (go_chain(NET, "ignite-aaaa"), go_chain(NET, "ignite-aaaa", "DN-"), f"{ip_a}/32"))]
    assert after.splitlines() == kept  # nothing else touched: b's rules and the shared chains remain
    assert f"-A CNI-FORWARD -s {ip_b}/32 -j ACCEPT" in after
    again = subprocess.run(["ip", "netns", "exec", host, "cni-ignite", "ignite-gc", "--data-dir", str(data)],
                           capture_output=True, env=env, timeout=60, check=True).stdout.decode()
    assert "no rules of released" in again

    # VM b, removed later, the same way; then uninstall puts Ignite's conflist back.
    run_chain("DEL", ours, host, "ignite-bbbb", path(vm_b), str(source_bin_dir()), prev=rb)
    subprocess.run(["ip", "netns", "exec", host, "cni-ignite", "ignite-gc", "--data-dir", str(data)],
                   capture_output=True, env=env, timeout=60, check=True)
    assert not [line for line in rules(host).splitlines() if "ignite-" in line or "10.61.0." in line]
    inst.uninstall(str(bin_dir), io.StringIO())
    assert (conf_dir / "10-ignite.conflist").read_bytes() == IGNITE
