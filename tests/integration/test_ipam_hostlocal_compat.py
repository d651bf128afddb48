"""ignite-ipam and Debian's Go host-local on one dataDir: same files, same lock, each releases the
other's leases, no address given twice, alternately and concurrently.

No root needed: host-local only writes under its dataDir (a temporary folder here)."""

from __future__ import annotations

import fcntl
import json
import os
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import pytest

GO = Path("/usr/lib/cni/host-local")
OURS = Path(os.environ.get("IGNITE_IPAM", str(Path(sys.executable).parent / "ignite-ipam")))
NET = "mixed"

pytestmark = pytest.mark.skipif(not GO.exists(), reason="needs Debian's containernetworking-plugins")


class Plugins:
    def __init__(self, data_dir: Path, ipam: dict[str, Any]) -> None:
        self.data_dir = data_dir
        self.dir = data_dir / NET
        self.conf = {"cniVersion": "0.4.0", "name": NET, "type": "ignite-ipam",
                     "ipam": {"type": "host-local", "dataDir": str(data_dir), **ipam}}

    def run(self, binary: Path, command: str, cid: str, ifname: str = "eth0") -> tuple[int, dict[str, Any] | None]:
        env = {"PATH": "/usr/bin:/bin", "CNI_COMMAND": command, "CNI_CONTAINERID": cid, "CNI_NETNS": "/var/run/netns/x",
               "CNI_IFNAME": ifname, "CNI_PATH": "/usr/lib/cni"}
        proc = subprocess.run([str(binary)], input=json.dumps(self.conf).encode(), env=env, capture_output=True,
                              timeout=60, check=False)
        return proc.returncode, json.loads(proc.stdout) if proc.stdout.strip() else None

    def add(self, binary: Path, cid: str, ifname: str = "eth0") -> list[str]:
        rc, doc = self.run(binary, "ADD", cid, ifname)
        assert rc == 0 and doc is not None, (binary.name, cid, doc)
        return [ip["address"].split("/")[0] for ip in doc["ips"]]

    def ok(self, binary: Path, command: str, cid: str, ifname: str = "eth0") -> None:
        rc, doc = self.run(binary, command, cid, ifname)
        assert rc == 0, (binary.name, command, cid, doc)

    def leases(self) -> dict[str, bytes]:
        return {p.name: p.read_bytes() for p in self.dir.iterdir()
                if p.name not in ("lock",) and not p.name.startswith("last_reserved_ip.")}


@pytest.fixture
def single(tmp_path: Path) -> Plugins:
    return Plugins(tmp_path, {"subnet": "10.61.0.0/24"})


def test_alternating_plugins_continue_one_round_robin(single: Plugins) -> None:
    got = [single.add(GO if i % 2 == 0 else OURS, f"c{i}") for i in range(6)]
    assert got == [[f"10.61.0.{i}"] for i in range(2, 8)]
    assert single.leases() == {f"10.61.0.{i + 2}": f"c{i}\r\neth0".encode() for i in range(6)}
    assert (single.dir / "last_reserved_ip.0").read_bytes() == b"10.61.0.7"


def test_each_plugin_releases_the_others_leases(single: Plugins) -> None:
    for i in range(4):
        single.add(GO if i % 2 == 0 else OURS, f"c{i}")
    for i in range(4):
        single.ok(OURS if i % 2 == 0 else GO, "DEL", f"c{i}")  # the other plugin's lease
        assert f"10.61.0.{i + 2}" not in single.leases()
    assert single.leases() == {}


def test_each_plugin_checks_the_others_leases(single: Plugins) -> None:
    single.add(GO, "from-go")
    single.add(OURS, "from-ours")
    single.ok(OURS, "CHECK", "from-go")
    single.ok(GO, "CHECK", "from-ours")
    assert single.run(OURS, "CHECK", "nobody")[0] != 0
    assert single.run(GO, "CHECK", "nobody")[0] != 0


def test_freed_address_is_not_reused_by_either_plugin_before_the_wrap(single: Plugins) -> None:
    assert single.add(OURS, "a") == ["10.61.0.2"]
    single.ok(GO, "DEL", "a")
    assert single.add(GO, "b") == ["10.61.0.3"]
    single.ok(OURS, "DEL", "b")
    assert single.add(OURS, "c") == ["10.61.0.4"]


def test_our_repeated_add_returns_a_lease_made_by_go(single: Plugins) -> None:
    assert single.add(GO, "a") == ["10.61.0.2"]
    assert single.add(OURS, "a") == ["10.61.0.2"]
    assert single.leases() == {"10.61.0.2": b"a\r\neth0"}


def test_dual_stack_files_are_identical_for_both_plugins(tmp_path: Path) -> None:
    ipam = {"ranges": [[{"subnet": "10.61.0.0/24"}], [{"subnet": "fd00:61::/64"}]]}
    go, ours = Plugins(tmp_path / "go", ipam), Plugins(tmp_path / "ours", ipam)
    assert go.add(GO, "c1") == ours.add(OURS, "c1") == ["10.61.0.2", "fd00:61::2"]
    names = ("10.61.0.2", "fd00:61::2", "last_reserved_ip.0", "last_reserved_ip.1")
    assert {n: (go.dir / n).read_bytes() for n in names} == {n: (ours.dir / n).read_bytes() for n in names}
    ours.ok(GO, "DEL", "c1")
    go.ok(OURS, "DEL", "c1")
    assert go.leases() == ours.leases() == {}


def test_go_host_local_waits_for_our_lock(single: Plugins) -> None:
    single.add(OURS, "a")
    env = {"CNI_COMMAND": "ADD", "CNI_CONTAINERID": "b", "CNI_NETNS": "/x", "CNI_IFNAME": "eth0",
           "CNI_PATH": "/usr/lib/cni"}
    fd = os.open(single.dir / "lock", os.O_RDWR)
    fcntl.flock(fd, fcntl.LOCK_EX)
    with subprocess.Popen([str(GO)], stdin=subprocess.PIPE, stdout=subprocess.PIPE, env=env) as go:
        try:
            assert go.stdin is not None
            go.stdin.write(json.dumps(single.conf).encode())
            go.stdin.close()
            time.sleep(0.5)
            assert go.poll() is None, "host-local did not wait for the flock on <dir>/lock"
            assert set(single.leases()) == {"10.61.0.2"}
        finally:
            os.close(fd)
        assert go.stdout is not None
        out = go.stdout.read()
        assert go.wait(timeout=30) == 0
    assert "10.61.0.3" in out.decode()


def test_64_parallel_adds_then_64_parallel_dels_mixed_leave_nothing_behind(tmp_path: Path) -> None:
    plugins = Plugins(tmp_path, {"subnet": "10.61.0.0/25"})  # 125 addresses: wraps during the rounds
    seen_rounds: list[list[str]] = []
    with ThreadPoolExecutor(max_workers=64) as pool:
        for rnd in range(3):
            jobs = [(GO if i % 2 else OURS, f"r{rnd}-c{i}") for i in range(64)]
            got = list(pool.map(lambda j: plugins.add(j[0], j[1]), jobs))
            flat = [ip for ips in got for ip in ips]
            assert len(flat) == 64 and len(set(flat)) == 64, "an address was given twice"
            leases = plugins.leases()
            assert {ip: leases[ip] for ip in flat} == {ips[0]: f"{cid}\r\neth0".encode()
                                                       for ips, (_, cid) in zip(got, jobs, strict=True)}
            # Every lease is released by the other plugin than the one that made it.
            list(pool.map(lambda j: plugins.ok(OURS if j[0] == GO else GO, "DEL", j[1]), jobs))
            assert plugins.leases() == {}
            seen_rounds.append(flat)
    assert sorted(p.name for p in plugins.dir.iterdir()) == ["last_reserved_ip.0", "lock"]
    assert len(set(seen_rounds[0]) & set(seen_rounds[1])) < 64  # round robin moved on
