"""Stable identity (issue 10), end to end through ignite-bridge on the real kernel: a VM restarted under its
VM ID, or a pod under a new sandbox ID, comes back with the same address, the same container MAC and (VM
modes) the same guest MAC; the host, another container and a mapped port reach it as before.

The VM is tests/guest_standin.py on the tap (ARP + ICMP); QEMU guests are not part of this round.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from bridgeenv import HostEnv, base_conf, container_ip
from portmap_util import connect, serve, stop, wire_outside

pytestmark = pytest.mark.privileged
STANDIN = str(Path(__file__).resolve().parent.parent / "guest_standin.py")
K8S = "K8S_POD_UID={uid};IgnoreUnknown=1;K8S_POD_NAMESPACE=ns;K8S_POD_NAME=web;K8S_POD_INFRA_CONTAINER_ID={cid}"


def sticky_conf(env: HostEnv, **extra: Any) -> dict[str, Any]:
    conf = base_conf(env.data_dir, **extra)
    conf["ipam"]["sticky"] = {"hold": "1h"}
    return conf


def macs(result: dict[str, Any], cid: str, ifname: str = "eth0") -> tuple[str, str]:
    """(container interface MAC, guest MAC or "")."""
    cont = next(i["mac"] for i in result["interfaces"] if i["name"] == ifname and i.get("sandbox", "").startswith("/"))
    guest = next((i["mac"] for i in result["interfaces"] if i.get("sandbox") == cid), "")
    return cont, guest


def start_guest(ns: str, mac: str, ip: str) -> subprocess.Popen[str]:
    proc = subprocess.Popen(["ip", "netns", "exec", ns, sys.executable, STANDIN, "tap0", mac, ip, "15"],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    assert proc.stdout is not None
    line = proc.stdout.readline()
    assert line.startswith("attached"), line + (proc.stderr.read() if proc.stderr else "")
    return proc


def reachable(env: HostEnv, other: str, ns: str, result: dict[str, Any], cid: str, mode: str) -> None:
    """The host and another container reach the attachment (the guest stand-in in VM modes)."""
    ip = container_ip(result)
    guest = start_guest(ns, macs(result, cid)[1], ip) if mode != "none" else None
    try:
        assert env.ping(other, ip, 2), f"another container cannot reach {ip}"
        assert env.ping(env.host, ip, 2), f"the host cannot reach {ip}"
    finally:
        if guest is not None:
            guest.kill()
            out = guest.communicate()[0]
            assert "answered icmp" in out, out


def is_local_unicast(mac: str) -> bool:
    first = int(mac[:2], 16)
    return bool(first & 0x02) and not first & 0x01


@pytest.mark.parametrize("mode", ["none", "tc-redirect", "bridge"])
def test_vm_restarted_under_its_id_comes_back_with_its_address_and_macs(netns, mode):
    env = HostEnv(netns)
    conf = sticky_conf(env, vm={"mode": mode}) if mode != "none" else sticky_conf(env)
    other = env.container()
    env.add(sticky_conf(env), "plain-other", other)
    ns1 = env.container()
    first = env.add(conf, "vm-1", ns1)
    mac1 = macs(first, "vm-1")
    assert is_local_unicast(mac1[0]) and (mode == "none" or is_local_unicast(mac1[1]))
    if mode == "tc-redirect":
        assert mac1[1] == mac1[0], "tc-redirect: the guest uses the veth's MAC"
    reachable(env, other, ns1, first, "vm-1", mode)

    env.run("DEL", {**conf, "prevResult": first}, "vm-1", ns1).ok()  # ignite stop
    assert container_ip(first) in env.held()
    subprocess.run(["ip", "netns", "del", ns1], check=True)  # the stopped VM's namespace is gone
    ns2 = env.container()  # ignite start: a new sandbox process, the same VM ID
    second = env.add(conf, "vm-1", ns2)
    assert container_ip(second) == container_ip(first)
    assert macs(second, "vm-1") == mac1
    assert env.ns_sh(ns2, "cat", "/sys/class/net/eth0/address").strip() == mac1[0]
    reachable(env, other, ns2, second, "vm-1", mode)
    env.run("DEL", {**conf, "prevResult": second}, "vm-1", ns2).ok()


def test_pod_under_a_new_sandbox_id_keeps_address_mac_and_mapped_port(netns):
    env = HostEnv(netns)
    outside = env.spaces.new("cnit-out")
    wire_outside(env.host, outside)
    conf = sticky_conf(env, ipMasq=True, runtimeConfig={"portMappings": [
        {"hostPort": 8080, "containerPort": 80, "protocol": "tcp"}]})
    other = env.container()
    env.add(sticky_conf(env), "plain-other", other)
    results = []
    for sandbox in ("sandbox-aaaa", "sandbox-bbbb"):  # kubelet: the pod's sandbox is recreated
        ns = env.container()
        res = env.add(conf, sandbox, ns, cni_args=K8S.format(uid="u-1", cid=sandbox))
        results.append(res)
        ip = container_ip(res)
        assert env.ping(other, ip) and env.ping(env.host, ip)
        server = serve(ns, "tcp", "0.0.0.0", 80, tag="web")
        try:
            assert connect(outside, "tcp", "192.0.2.1", 8080).startswith("web peer=")
        finally:
            stop(server)
        env.run("DEL", {**conf, "prevResult": res}, sandbox, ns, cni_args=K8S.format(uid="u-1", cid=sandbox)).ok()
    assert container_ip(results[0]) == container_ip(results[1])
    assert macs(results[0], "sandbox-aaaa")[0] == macs(results[1], "sandbox-bbbb")[0]


def test_ignite_owner_arg_is_accepted_and_names_the_identity(netns):
    env = HostEnv(netns)
    conf = sticky_conf(env)
    a, b = env.container(), env.container()
    first = env.add(conf, "cid-1", a, cni_args="IGNITE_OWNER=ignite/my-vm")
    env.run("DEL", {**conf, "prevResult": first}, "cid-1", a, cni_args="IGNITE_OWNER=ignite/my-vm").ok()
    second = env.add(conf, "cid-2", b, cni_args="IGNITE_OWNER=ignite/my-vm")
    assert container_ip(first) == container_ip(second)
    assert macs(first, "cid-1")[0] == macs(second, "cid-2")[0]
    bad = env.run("ADD", conf, "cid-3", env.container(), cni_args="IGNITE_OWNER=bad\tname")
    assert bad.rc == 1 and bad.out is not None and bad.out["code"] == 4, bad.stdout
    assert env.leases() == [container_ip(second)]


@pytest.mark.parametrize("mode", ["none", "bridge"])
def test_reserved_mac_is_the_container_mac_or_in_vm_bridge_mode_the_guest_mac(netns, mode):
    env = HostEnv(netns)
    conf = sticky_conf(env, **({"vm": {"mode": mode}} if mode != "none" else {}))
    conf["ipam"]["reservations"] = [{"owner": "ignite/res-vm", "address": "10.61.5.5", "mac": "02:aa:bb:cc:dd:05"}]
    ns = env.container()
    res = env.add(conf, "cid-r", ns, cni_args="IGNITE_OWNER=ignite/res-vm")
    cont, guest = macs(res, "cid-r")
    assert container_ip(res) == "10.61.5.5"
    if mode == "none":
        assert cont == "02:aa:bb:cc:dd:05"
    else:
        assert guest == "02:aa:bb:cc:dd:05" and cont != guest


def test_runtime_mac_wins_over_the_derived_one(netns):
    env = HostEnv(netns)
    conf = sticky_conf(env, args={"cni": {"mac": "02:12:34:56:78:9a"}})
    res = env.add(conf, "cid-m", env.container())
    assert macs(res, "cid-m")[0] == "02:12:34:56:78:9a"
