"""Unprivileged checks of tests/vm/guest.py: the vmconf logic on CNI results, the cpio writer, parsing, the
host side of the control channel (against a fake guest)."""

from __future__ import annotations

import base64
import copy
import json
import socket
import subprocess
import threading
import time
from typing import TYPE_CHECKING, Any

import pytest

from vm import guest

if TYPE_CHECKING:
    from pathlib import Path

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


def _fake_guest(server: socket.socket) -> None:
    """The guest side of the control channel (init's ctl_loop), in Python: noise, answers in pieces."""
    conn, _ = server.accept()
    with conn, conn.makefile("rb") as lines:
        for line in lines:
            token, b64 = line.decode().rstrip("\n").split(" ", 1)
            script = base64.b64decode(b64).decode()
            if script == "hang":
                continue
            res = subprocess.run(["sh", "-c", script], capture_output=True, check=False)
            answer = (b"stray output\n@@BEGIN " + token.encode() + b"\n" + res.stdout + res.stderr
                      + b"@@END " + token.encode() + b" %d\n" % res.returncode)
            for i in range(0, len(answer), 7):
                conn.sendall(answer[i:i + 7])
                time.sleep(0.001)


def test_run_over_the_control_channel(tmp_path: Path) -> None:
    ctl = tmp_path / "ctl" / "ctl"
    ctl.parent.mkdir()
    server = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    server.bind(str(ctl))
    server.listen(1)
    threading.Thread(target=_fake_guest, args=(server,), daemon=True).start()
    console = tmp_path / "console.log"
    console.write_text(f"{guest.MARK} init started\n{guest.MARK} CTL ready\n")
    fake_qemu = subprocess.Popen(["sleep", "60"])  # stands in for QEMU: alive() polls it; stop() kills it by PID
    vm = guest.VM(fake_qemu, "ns", "tap0", "02:00:00:00:00:01", "ip=10.0.0.2::10.0.0.1:255.0.0.0::eth0:off:::",
                  console, "tcg", "test", time.monotonic(), [], control_path=ctl)
    try:
        script = "echo hi; echo err >&2; exit 3"
        assert vm.run(script) == guest.GuestRun(3, "hi\nerr\n", script)
        assert vm.sh("printf 'a b\\n'; echo \"$((6 * 7))\"") == "a b\n42\n"
        with pytest.raises(guest.GuestError, match="exited 1"):
            vm.sh("false")
        assert vm.snmp("Icmp")["InEchos"] >= 0  # the host's own /proc/net/snmp, through the same path
        started = time.monotonic()
        with pytest.raises(guest.GuestNotReady, match="no answer from the guest"):
            vm.run("hang", timeout=1)
        assert time.monotonic() - started < 5
    finally:
        vm.stop()
        server.close()
    assert fake_qemu.returncode is not None and not ctl.parent.exists()


def test_run_refuses_a_guest_without_control_channel(tmp_path: Path) -> None:
    console = tmp_path / "console.log"
    console.write_text(f"{guest.MARK} CTL unavailable\n")
    fake_qemu = subprocess.Popen(["sleep", "60"])
    vm = guest.VM(fake_qemu, "ns", "tap0", "m", "ip=", console, "tcg", "test", time.monotonic(), [],
                  control_path=tmp_path / "nothing" / "ctl")
    try:
        with pytest.raises(guest.GuestNotReady, match="no /dev/ttyS1"):
            vm.run("true", timeout=2)
    finally:
        vm.stop()


def test_qemu_gets_the_control_port_as_second_serial_line(tmp_path: Path) -> None:
    image = guest.GuestImage(tmp_path / "vmlinuz", tmp_path / "initrd", tmp_path)
    argv = guest._qemu_argv("tcg", image, "tap0", "02:00:00:00:00:01", "console=ttyS0", tmp_path / "c.log", 256,
                            tmp_path / "ctl")
    serials = [argv[i + 1] for i, a in enumerate(argv) if a == "-serial"]
    assert serials == [f"file:{tmp_path / 'c.log'}", "chardev:ctl"]  # ttyS0 = console, ttyS1 = control
    assert f"socket,id=ctl,path={tmp_path / 'ctl'},server=on,wait=off" in argv
    assert "exec 3<>/dev/ttyS1" in guest.INIT_SCRIPT and 'say "CTL ready"' in guest.INIT_SCRIPT
