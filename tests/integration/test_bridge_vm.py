"""VM mode: a TAP in the container namespace joined to the veth, with a guest stand-in on the tap."""

from __future__ import annotations

import subprocess
import sys
import time
from pathlib import Path

import pytest
from bridgeenv import HostEnv, base_conf, container_ip

pytestmark = pytest.mark.privileged
STANDIN = str(Path(__file__).resolve().parent.parent / "guest_standin.py")


def start_guest(ns: str, tap: str, mac: str, ip: str) -> subprocess.Popen[str]:
    proc = subprocess.Popen(["ip", "netns", "exec", ns, sys.executable, STANDIN, tap, mac, ip, "15"],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    assert proc.stdout is not None
    line = proc.stdout.readline()
    assert line.startswith("attached"), line + (proc.stderr.read() if proc.stderr else "")
    return proc


def vm_iface(result: dict, vm_id: str) -> tuple[int, dict]:
    found = [(i, x) for i, x in enumerate(result["interfaces"]) if x.get("sandbox") == vm_id]
    assert len(found) == 1, result
    return found[0]


@pytest.mark.parametrize("mode", ["tc-redirect", "bridge"])
def test_vm_guest_on_the_tap_is_reachable_from_host_and_other_containers(netns, mode):
    env = HostEnv(netns)
    conf = base_conf(env.data_dir, vm={"mode": mode})
    vm_ns, other = env.container(), env.container()
    result = env.add(conf, "vm-1", vm_ns)
    idx, pseudo = vm_iface(result, "vm-1")
    tap = result["interfaces"][idx - 1]
    assert tap["name"] == pseudo["name"] == "tap0" and tap["sandbox"] == f"/var/run/netns/{vm_ns}"
    vm_ips = [ip for ip in result["ips"] if ip["interface"] == idx]
    assert len(vm_ips) == 1 and vm_ips[0]["gateway"] == "10.61.0.1"  # firecracker-go-sdk's vmconf needs one
    veth_mac = result["interfaces"][2]["mac"]
    if mode == "tc-redirect":
        assert pseudo["mac"] == veth_mac
        assert "mirred" in env.ns_sh(vm_ns, "tc", "filter", "show", "dev", "tap0", "ingress")
    else:
        assert pseudo["mac"] != veth_mac
        assert all(ip["interface"] == idx for ip in result["ips"]), "the veth no longer holds the address"
        assert vm_ips[0]["address"] not in env.ns_sh(vm_ns, "ip", "-o", "addr", "show", "eth0")
    link = env.ns_sh(vm_ns, "ip", "-d", "link", "show", "tap0")
    assert "tun type tap" in link and "multi_queue" not in link

    guest = start_guest(vm_ns, "tap0", pseudo["mac"], container_ip(result))
    try:
        env.add(base_conf(env.data_dir), "ctr-2", other)  # a plain container on the same bridge
        vm_ip = container_ip(result)
        assert env.ping(other, vm_ip, 2), "another container cannot reach the VM"
        assert env.ping(env.host, vm_ip, 2), "the host cannot reach the VM"
    finally:
        guest.kill()
        out = guest.communicate()[0]
    assert "answered icmp" in out, out
    env.run("CHECK", {**conf, "prevResult": result}, "vm-1", vm_ns).ok()
    env.run("DEL", {**conf, "prevResult": result}, "vm-1", vm_ns).ok()
    assert "tap0" not in env.ns_sh(vm_ns, "ip", "-o", "link")


def test_tap_name_and_owner_come_from_cni_args_as_tc_redirect_tap_takes_them(netns):
    env = HostEnv(netns)
    conf = base_conf(env.data_dir, vm={"mode": "tc-redirect"})
    vm_ns = env.container()
    result = env.add(conf, "vm-args", vm_ns,
                     cni_args="IgnoreUnknown=1;TC_REDIRECT_TAP_NAME=fc-tap7;TC_REDIRECT_TAP_UID=4242;"
                              "TC_REDIRECT_TAP_GID=4343")
    assert any(i["name"] == "fc-tap7" for i in result["interfaces"])
    assert env.ns_sh(vm_ns, "cat", "/sys/class/net/fc-tap7/owner").strip() == "4242"
    assert env.ns_sh(vm_ns, "cat", "/sys/class/net/fc-tap7/group").strip() == "4343"


def test_check_reports_a_missing_tc_redirect(netns):
    env = HostEnv(netns)
    conf = base_conf(env.data_dir, vm={"mode": "tc-redirect"})
    vm_ns = env.container()
    result = env.add(conf, "vm-chk", vm_ns)
    env.ns_sh(vm_ns, "tc", "qdisc", "del", "dev", "eth0", "ingress")
    res = env.run("CHECK", {**conf, "prevResult": result}, "vm-chk", vm_ns)
    assert res.rc != 0 and "tc redirect" in res.out["msg"] + res.out.get("details", "")


def test_time_from_add_to_guest_reachable_is_short(netns):
    env = HostEnv(netns)
    conf = base_conf(env.data_dir, vm={"mode": "tc-redirect"})
    vm_ns = env.container()
    t0 = time.monotonic()
    result = env.add(conf, "vm-fast", vm_ns)
    guest = start_guest(vm_ns, "tap0", vm_iface(result, "vm-fast")[1]["mac"], container_ip(result))
    try:
        assert env.ping(env.host, container_ip(result), 1)
    finally:
        guest.kill()
        guest.communicate()
    assert time.monotonic() - t0 < 10
