"""A VM or pod that died without DEL (weaveworks/ignite#660): the next ADD of its owner under another
container ID takes the dead attachment over (its address, MACs; nothing of it left), a live one is left
alone; ``cni-ignite gc`` (cni_ignite.gc) removes dead attachments, ``--dry-run`` only lists them."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest
from bridgeenv import HostEnv, base_conf, container_ip
from nsutil import in_ns

from cni_ignite.bridge.config import host_veth_name
from cni_ignite.firewall.naming import owner_key

pytestmark = pytest.mark.privileged
REPO = str(Path(__file__).resolve().parents[2])
OWNER = "IGNITE_OWNER=ignite/vm-7"


def conf_of(env: HostEnv, **extra: Any) -> dict[str, Any]:
    conf = base_conf(env.data_dir, ipMasq=True, guard=True, **extra)
    conf["ipam"]["sticky"] = {"hold": "1h"}
    conf["runtimeConfig"] = {"portMappings": [{"hostPort": 8080, "containerPort": 80, "protocol": "tcp"}]}
    return conf


def state_files(env: HostEnv) -> list[str]:
    root = Path(env.data_dir) / "ignite-state"
    return sorted(str(p.relative_to(root)) for p in root.rglob("*") if p.is_file() and p.name != "lock")


def leftovers(env: HostEnv, cid: str) -> list[str]:
    """What of attachment (testnet, cid, eth0) is still there: host veth, rules, guard, records, lease."""
    veth, key = host_veth_name("testnet", cid, "eth0"), owner_key("testnet", cid, "eth0")
    found = []
    if veth in env.links():
        found.append(f"host veth {veth}")
    if key in env.rules():
        found.append(f"rules with key {key}")
    if veth in env.host_sh("nft", "list", "table", "bridge", "cni_ignite_guard", check=False):
        found.append(f"guard elements of {veth}")
    found += [f"state file {f}" for f in state_files(env) if key in f]
    found += [f"lease {ip}" for ip in env.leases() if env.lease_holder(ip) == cid]
    return found


def test_dead_namespace_is_taken_over_by_the_next_add_of_its_owner(netns):
    env = HostEnv(netns)
    conf = conf_of(env)
    ns1 = env.container()
    first = env.add(conf, "vm-old", ns1, cni_args=OWNER)
    assert len(leftovers(env, "vm-old")) >= 4, leftovers(env, "vm-old")  # the check would see them
    subprocess.run(["ip", "netns", "del", ns1], check=True)  # the VM dies; no DEL is ever sent
    ns2 = env.container()
    second = env.add(conf, "vm-new", ns2, cni_args=OWNER)
    assert container_ip(second) == container_ip(first)
    assert second["interfaces"][2]["mac"] == first["interfaces"][2]["mac"]
    assert leftovers(env, "vm-old") == []
    assert env.leases() == [container_ip(second)] and env.lease_holder(container_ip(second)) == "vm-new"
    assert env.ping(env.host, container_ip(second))
    env.run("CHECK", {**conf, "prevResult": second}, "vm-new", ns2, cni_args=OWNER).ok()
    env.run("DEL", {**conf, "prevResult": second}, "vm-new", ns2, cni_args=OWNER).ok()
    assert leftovers(env, "vm-new") == [] and env.leases() == []


def test_dead_process_namespace_is_taken_over(netns):
    """Ignite's CNI_NETNS is /proc/<pid>/ns/net of the VM's sandbox process: its death is the namespace's."""
    env = HostEnv(netns)
    conf = conf_of(env)
    holder = subprocess.Popen(["ip", "netns", "exec", env.host, "unshare", "-n", "sleep", "60"])
    try:
        nspath = f"/proc/{holder.pid}/ns/net"
        host_link = in_ns(env.host, ["readlink", "/proc/self/ns/net"]).stdout.decode().strip()
        deadline = time.monotonic() + 5
        while os.readlink(nspath) == host_link:  # until unshare has made the namespace
            assert time.monotonic() < deadline
            time.sleep(0.02)
        first = env.add(conf, "vm-old", "", cni_args=OWNER, netns_path=nspath)
    finally:
        os.kill(holder.pid, signal.SIGKILL)
        holder.wait()
    ns2 = env.container()
    second = env.add(conf, "vm-new", ns2, cni_args=OWNER)
    assert container_ip(second) == container_ip(first)
    assert leftovers(env, "vm-old") == []


def test_live_namespace_is_left_alone_and_the_new_attachment_gets_another_address_and_mac(netns):
    env = HostEnv(netns)
    conf = conf_of(env)
    ns1, ns2 = env.container(), env.container()
    first = env.add(conf, "vm-a", ns1, cni_args=OWNER)
    conf2 = {**conf, "runtimeConfig": {}}  # the second one maps no port (the first holds 8080)
    second = env.add(conf2, "vm-b", ns2, cni_args=OWNER)
    assert container_ip(second) != container_ip(first)
    assert second["interfaces"][2]["mac"] != first["interfaces"][2]["mac"]
    assert host_veth_name("testnet", "vm-a", "eth0") in env.links()
    assert env.lease_holder(container_ip(first)) == "vm-a"
    assert env.ping(ns2, container_ip(first)) and env.ping(ns1, container_ip(second))
    env.run("CHECK", {**conf, "prevResult": first}, "vm-a", ns1, cni_args=OWNER).ok()


def gc(env: HostEnv, conf_dir: Path, *args: str) -> str:
    res = in_ns(env.host, [sys.executable, "-m", "cni_ignite.gc", "--conf-dir", str(conf_dir), *args],
                env={"PATH": "/usr/sbin:/usr/bin:/sbin:/bin", "PYTHONPATH": REPO}, check=False)
    assert res.returncode == 0, res.stdout.decode() + res.stderr.decode()
    return res.stdout.decode()


def test_gc_removes_attachments_whose_namespace_is_gone_and_dry_run_lists_them(netns, tmp_path):
    env = HostEnv(netns)
    conf = conf_of(env)
    conf.pop("runtimeConfig")
    conf_dir = tmp_path / "net.d"
    conf_dir.mkdir()
    plugin = {k: v for k, v in conf.items() if k not in ("cniVersion", "name")}
    (conf_dir / "10-test.conflist").write_text(json.dumps({"cniVersion": "1.0.0", "name": "testnet",
                                                           "plugins": [plugin]}))
    spaces = {cid: env.container() for cid in ("gc-dead-1", "gc-dead-2", "gc-alive")}
    results = {cid: env.add(conf, cid, ns, cni_args=f"IGNITE_OWNER=ignite/{cid}") for cid, ns in spaces.items()}
    for cid in ("gc-dead-1", "gc-dead-2"):
        subprocess.run(["ip", "netns", "del", spaces[cid]], check=True)

    listed = gc(env, conf_dir, "--dry-run")
    assert "would remove testnet gc-dead-1 eth0" in listed and "gc-dead-2" in listed and "gc-alive" not in listed
    assert leftovers(env, "gc-dead-1") != [] and len(env.leases()) == 3, "dry run changed nothing"

    removed = gc(env, conf_dir)
    assert "removed testnet gc-dead-1" in removed and "removed testnet gc-dead-2" in removed
    assert leftovers(env, "gc-dead-1") == [] and leftovers(env, "gc-dead-2") == []
    assert env.leases() == [container_ip(results["gc-alive"])]
    assert sorted(env.held()) == sorted(container_ip(results[c]) for c in ("gc-dead-1", "gc-dead-2"))
    assert env.ping(env.host, container_ip(results["gc-alive"]))
    assert "no dead attachments" in gc(env, conf_dir, "--network", "testnet")
