"""The frozen `cni-ignite install` of the real bundle into temporary folders (never /opt/cni or /etc/cni):
the installed plugins run through their links; status and uninstall work from the installed bundle."""

from __future__ import annotations

import json
import os
import subprocess
from typing import TYPE_CHECKING

from bundle import EXE, MINIMAL_PATH

if TYPE_CHECKING:
    from pathlib import Path


def admin(*args: str, exe: str = str(EXE)) -> str:
    res = subprocess.run([exe, *args], capture_output=True, env={"PATH": MINIMAL_PATH}, timeout=120, check=False,
                         cwd="/")
    assert res.returncode == 0, res.stderr.decode() + res.stdout.decode()
    return res.stdout.decode()


def test_install_run_status_uninstall(tmp_path: Path) -> None:
    bin_dir, conf_dir, data = tmp_path / "opt-cni-bin", tmp_path / "etc-cni-net.d", tmp_path / "data"
    bin_dir.mkdir()
    (bin_dir / "bridge").write_text("stand-in for the Go plugin")
    admin("install", "--bin-dir", str(bin_dir), "--conf-dir", str(conf_dir))  # --from: the running bundle

    conflist = json.loads((conf_dir / "10-ignite.conflist").read_text())
    assert conflist["name"] == "ignite-cni-bridge"
    assert os.readlink(bin_dir / "loopback") == "cni-ignite.d/cni-ignite"  # the bin dir had none
    for name in ("ignite-bridge", "ignite-ipam", "loopback"):
        res = subprocess.run(["env", "-i", "CNI_COMMAND=VERSION", str(bin_dir / name)], capture_output=True,
                             timeout=30, check=True, cwd="/")
        assert "1.1.0" in json.loads(res.stdout)["supportedVersions"]

    # The installed ignite-ipam hands out an address of the default network (dataDir redirected to tmp).
    ipam_conf = {**conflist["plugins"][0]["ipam"], "dataDir": str(data)}
    conf = {"cniVersion": conflist["cniVersion"], "name": conflist["name"], "type": "ignite-ipam", "ipam": ipam_conf}
    env = {"CNI_COMMAND": "ADD", "CNI_CONTAINERID": "ctr-frozen", "CNI_NETNS": "/var/run/netns/x",
           "CNI_IFNAME": "eth0", "CNI_PATH": str(bin_dir), "PATH": MINIMAL_PATH}
    res = subprocess.run([str(bin_dir / "ignite-ipam")], input=json.dumps(conf).encode(), env=env,
                         capture_output=True, timeout=30, check=False)
    assert res.returncode == 0, res.stdout + res.stderr
    assert json.loads(res.stdout)["ips"][0]["address"] == "10.61.0.2/16"

    installed_exe = str(bin_dir / "cni-ignite.d" / "cni-ignite")
    status = admin("status", "--bin-dir", str(bin_dir), "--conf-dir", str(conf_dir), "--data-dir", str(data),
                   "--state-dir", str(tmp_path / "state"), exe=installed_exe)
    assert "ignite-ipam -> cni-ignite.d/cni-ignite  ok" in status
    assert "loopback -> cni-ignite.d/cni-ignite  ok" in status
    assert "default network: ignite-cni-bridge" in status
    assert "10.61.0.2" in status and "ctr-frozen" in status

    # Installing again (e.g. an upgrade run) is idempotent; then uninstall leaves only foreign files.
    assert "already present" in admin("install", "--bin-dir", str(bin_dir), "--conf-dir", str(conf_dir))
    admin("uninstall", "--bin-dir", str(bin_dir))
    assert sorted(os.listdir(bin_dir)) == ["bridge"]
    assert not conf_dir.exists()  # created by install, empty again


def test_install_leaves_the_hosts_own_loopback_alone(tmp_path: Path) -> None:
    bin_dir = tmp_path / "opt-cni-bin"
    bin_dir.mkdir()
    (bin_dir / "loopback").write_text("stand-in for the Go loopback")
    out = admin("install", "--bin-dir", str(bin_dir), "--conf-dir", str(tmp_path / "net.d"), "--force")
    assert "loopback exists (not installed by cni-ignite): left alone" in out
    assert (bin_dir / "loopback").read_text() == "stand-in for the Go loopback"
    admin("uninstall", "--bin-dir", str(bin_dir))
    assert sorted(os.listdir(bin_dir)) == ["loopback"]
