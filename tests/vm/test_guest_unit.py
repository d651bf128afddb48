"""Unprivileged checks of tests/vm/guest.py: the vmconf logic on CNI results, the cpio writer, parsing."""

from __future__ import annotations

import copy
import json
import subprocess
from typing import Any

import pytest

from vm import guest

VM_ID = "vm-1"
NS = "/var/run/netns/cnit-abc"

# tc-redirect-tap's result shape (awslabs/tc-redirect-tap, chained after bridge).
RESULT: dict[str, Any] = {
    "cniVersion": "1.0.0",
    "interfaces": [
        {"name": "br0", "mac": "02:00:00:00:00:01"},
        {"name": "veth1234", "mac": "02:00:00:00:00:02"},
        {"name": "eth0", "mac": "aa:bb:cc:dd:ee:ff", "sandbox": NS},
        {"name": "tap0", "mac": "02:00:00:00:00:03", "sandbox": NS},
        {"name": "tap0", "mac": "aa:bb:cc:dd:ee:ff", "sandbox": VM_ID},
    ],
    "ips": [{"address": "10.88.0.5/16", "gateway": "10.88.0.1", "interface": 4}],
    "dns": {"nameservers": ["10.0.0.53", "10.0.0.54", "10.0.0.55"]},
}


def test_ip_boot_param_and_mac_follow_go_sdk() -> None:
    assert guest.ip_boot_param(RESULT, VM_ID) == "ip=10.88.0.5::10.88.0.1:255.255.0.0::eth0:off:10.0.0.53:10.0.0.54:"
    assert guest.ip_boot_param(json.dumps(RESULT), VM_ID, vm_ifname="") == (
        "ip=10.88.0.5::10.88.0.1:255.255.0.0:::off:10.0.0.53:10.0.0.54:")
    assert guest.guest_mac(RESULT, VM_ID) == "aa:bb:cc:dd:ee:ff"
    conf = guest.vm_net_conf(RESULT, VM_ID)
    assert (conf.tap_name, conf.netns_path) == ("tap0", NS)
    no_dns = dict(RESULT, dns={})
    assert guest.ip_boot_param(no_dns, VM_ID) == "ip=10.88.0.5::10.88.0.1:255.255.0.0::eth0:off:::"


def _broken(change: str) -> dict[str, Any]:
    res = copy.deepcopy(RESULT)
    if change == "no-vm-iface":
        res["interfaces"][4]["sandbox"] = "other"
    elif change == "two-vm-ifaces":
        res["interfaces"].append({"name": "tap1", "mac": "aa:aa:aa:aa:aa:aa", "sandbox": VM_ID})
    elif change == "no-tap":
        res["interfaces"][3]["name"] = "tapX"
    elif change == "two-ips":
        res["ips"].append({"address": "10.88.0.6/16", "gateway": "10.88.0.1", "interface": 4})
    elif change == "ip-on-veth":
        res["ips"][0]["interface"] = 2
    elif change == "ipv6":
        res["ips"][0] = {"address": "fd00::5/64", "gateway": "fd00::1", "interface": 4}
    elif change == "no-gateway":
        del res["ips"][0]["gateway"]
    return res


@pytest.mark.parametrize(("change", "message"), [
    ("no-vm-iface", "no pseudo-device"),
    ("two-vm-ifaces", "at most 1 interface in sandbox"),
    ("no-tap", "exactly 1 interface named 'tap0'"),
    ("two-ips", "expected to find 1 IP"),
    ("ip-on-veth", "expected to find 1 IP"),
    ("ipv6", "not IPv4"),
    ("no-gateway", "no gateway"),
])
def test_vm_net_conf_rejects_what_go_sdk_rejects(change: str, message: str) -> None:
    with pytest.raises(guest.GuestError, match=message):
        guest.vm_net_conf(_broken(change), VM_ID)


def test_cpio_writer_is_readable_by_cpio(tmp_path: Any) -> None:
    if subprocess.run(["which", "busybox"], capture_output=True, check=False).returncode != 0:
        pytest.skip("busybox not installed")
    c = guest._Cpio()
    c.dir("etc")
    c.file("etc/hello", b"hello world\n")
    c.add("etc/link", 0o120777, b"hello")
    c.chardev("console", 5, 1)
    archive = c.finish()
    assert len(archive) % 4 == 0
    listing = subprocess.run(["busybox", "cpio", "-t", "-v"], input=archive, capture_output=True, check=True).stdout
    text = listing.decode()
    for name in ("etc", "etc/hello", "etc/link -> hello", "console"):
        assert name in text
    out = subprocess.run(["busybox", "cpio", "-i", "--to-stdout", "etc/hello"], input=archive, capture_output=True,
                         check=True).stdout
    assert out == b"hello world\n"


def test_remote_addr_normalises_mapped_ipv4() -> None:
    assert guest.remote_addr("REMOTE_ADDR=[::ffff:10.5.0.1]\nRESULT ok\n") == "10.5.0.1"
    assert guest.remote_addr("REMOTE_ADDR=10.5.0.1\n") == "10.5.0.1"
    assert guest.remote_addr("nothing") is None
