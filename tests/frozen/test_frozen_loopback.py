"""The frozen bundle started as `loopback` (as `cni-ignite install` links it) in throwaway namespaces, the way
containerd's CRI calls it on every pod: env -i plus the CNI variables, lo as CNI_IFNAME."""

from __future__ import annotations

import json
import subprocess
from typing import TYPE_CHECKING, Any

import pytest
from bundle import MINIMAL_PATH
from nsutil import in_ns, path

if TYPE_CHECKING:
    from pathlib import Path

    from nsutil import Namespaces

pytestmark = pytest.mark.privileged


def call(plugin: Path, command: str, ns: str, version: str = "1.0.0") -> subprocess.CompletedProcess[bytes]:
    env = {"PATH": MINIMAL_PATH, "CNI_COMMAND": command, "CNI_CONTAINERID": "frozen-lo", "CNI_NETNS": path(ns),
           "CNI_IFNAME": "lo", "CNI_PATH": str(plugin.parent)}
    conf: dict[str, Any] = {"cniVersion": version, "name": "cni-loopback", "type": "loopback"}
    return subprocess.run(["env", "-i", *(f"{k}={v}" for k, v in env.items()), str(plugin)],
                          input=json.dumps(conf).encode(), capture_output=True, timeout=60, check=False, cwd="/")


def lo_up(ns: str) -> bool:
    return bool(int(in_ns(ns, ["cat", "/sys/class/net/lo/flags"]).stdout, 16) & 1)


@pytest.mark.parametrize("version", ["0.4.0", "1.0.0", "1.1.0"])
def test_frozen_loopback_add_check_del(plugin_dir: Path, netns: Namespaces, version: str) -> None:
    ns = netns.new("cnit-flo")
    in_ns(ns, ["ip", "link", "set", "lo", "down"])
    loopback = plugin_dir / "loopback"
    add = call(loopback, "ADD", ns, version)
    assert add.returncode == 0, add.stdout + add.stderr
    result = json.loads(add.stdout)
    assert result["cniVersion"] == version
    assert result["interfaces"] == [{"name": "lo", "mac": "00:00:00:00:00:00", "sandbox": path(ns)}]
    assert [ip["address"] for ip in result["ips"]] == ["127.0.0.1/8", "::1/128"]
    assert lo_up(ns)
    check = call(loopback, "CHECK", ns, version)
    assert check.returncode == 0, check.stdout
    delete = call(loopback, "DEL", ns, version)
    assert delete.returncode == 0, delete.stdout
    assert not lo_up(ns)
    netns.cleanup()
    assert call(loopback, "DEL", ns, version).returncode == 0  # the namespace is gone: still success
