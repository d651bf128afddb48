"""The reported IPAM cases through the real ignite-ipam executable, side by side with Debian's Go
host-local where it is installed: a scoped requested address, a range at the top of the IPv6 space, and
go-cni's capitalised ipRanges keys. No root needed: everything happens under a temporary dataDir."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

GO = Path("/usr/lib/cni/host-local")
OURS = Path(os.environ.get("IGNITE_IPAM", str(Path(sys.executable).parent / "ignite-ipam")))
NET = "net1"
TOP = "ffff:ffff:ffff:ffff:ffff:ffff:ffff"
BINARIES = [pytest.param(OURS, id="ours"),
            pytest.param(GO, id="go", marks=pytest.mark.skipif(not GO.exists(), reason="needs host-local"))]


def run(binary: Path, conf: dict[str, Any], command: str, cid: str, args: str = "") -> tuple[int, dict[str, Any]]:
    env = {"PATH": "/usr/bin:/bin", "CNI_COMMAND": command, "CNI_CONTAINERID": cid, "CNI_NETNS": "/var/run/netns/x",
           "CNI_IFNAME": "eth0", "CNI_PATH": "/usr/lib/cni", "CNI_ARGS": args}
    proc = subprocess.run([str(binary)], input=json.dumps(conf).encode(), env=env, capture_output=True, timeout=60,
                          check=False)
    assert b"Traceback" not in proc.stdout + proc.stderr
    return proc.returncode, json.loads(proc.stdout) if proc.stdout.strip() else {}


def conf(data: Path, ipam: dict[str, Any], **top: Any) -> dict[str, Any]:
    return {"cniVersion": "1.0.0", "name": NET, "type": "ignite-ipam",
            "ipam": {"type": "host-local", "dataDir": str(data), **ipam}, **top}


def files(data: Path) -> dict[str, bytes]:
    return {p.name: p.read_bytes() for p in sorted((data / NET).iterdir())}


@pytest.mark.parametrize("binary", BINARIES)
def test_scoped_requested_address_is_refused_and_not_leased_twice(tmp_path: Path, binary: Path) -> None:
    c = conf(tmp_path, {"subnet": "fd00:96::/64"})
    rc, doc = run(binary, c, "ADD", "first")
    assert (rc, [ip["address"] for ip in doc["ips"]]) == (0, ["fd00:96::2/64"])
    rc, doc = run(binary, c, "ADD", "second", "IP=fd00:96::2%1")
    assert rc != 0 and "fd00:96::2%1" in json.dumps(doc), doc
    if binary == OURS:
        assert doc["code"] == 7  # host-local says 999 for any error
    assert files(tmp_path) == {"fd00:96::2": b"first\r\neth0", "last_reserved_ip.0": b"fd00:96::2", "lock": b""}


def test_two_set_add_with_a_full_range_at_the_top_of_the_space_leaks_nothing(tmp_path: Path) -> None:
    c = conf(tmp_path, {"ranges": [[{"subnet": "10.88.0.0/24"}],
                                   [{"subnet": "ffff:ffff:ffff:ffff::/64", "rangeStart": f"{TOP}:fffd"}]]})
    for i in range(3):
        assert run(OURS, c, "ADD", f"c{i}")[0] == 0
    before = files(tmp_path)
    for cid in ("late", "later"):
        rc, doc = run(OURS, c, "ADD", cid)
        assert (rc, doc["msg"]) == (1, f"no IP addresses available in range set: {TOP}:fffd-{TOP}:ffff")
        assert files(tmp_path) == before
    assert run(OURS, c, "DEL", "c1")[0] == 0
    rc, doc = run(OURS, c, "ADD", "late")
    assert [ip["address"] for ip in doc["ips"]] == ["10.88.0.5/24", f"{TOP}:fffe/64"]
    assert (tmp_path / NET / f"{TOP}:fffe").read_bytes() == b"late\r\neth0"


GO_CNI_RUNTIME = {"ipRanges": [[{"Subnet": "10.22.0.0/16", "RangeStart": "10.22.0.10", "RangeEnd": "10.22.0.20",
                                 "Gateway": "10.22.0.1"}]]}


@pytest.mark.parametrize("binary", BINARIES)
def test_go_cni_ip_ranges_with_go_field_names_lease_from_the_runtime_range(tmp_path: Path, binary: Path) -> None:
    c = conf(tmp_path, {}, capabilities={"ipRanges": True}, runtimeConfig=GO_CNI_RUNTIME)
    got = [run(binary, c, "ADD", f"c{i}")[1]["ips"] for i in range(2)]
    assert got == [[{"address": "10.22.0.10/16", "gateway": "10.22.0.1"}],
                   [{"address": "10.22.0.11/16", "gateway": "10.22.0.1"}]]
    assert files(tmp_path) == {"10.22.0.10": b"c0\r\neth0", "10.22.0.11": b"c1\r\neth0",
                               "last_reserved_ip.0": b"10.22.0.11", "lock": b""}
