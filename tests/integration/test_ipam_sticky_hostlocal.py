"""Sticky addresses and reservations through the real ignite-ipam executable, beside Debian's Go host-local on
the same dataDir: host-local never hands out a held or reserved address (alternately and concurrently),
and reservations hold under 64 concurrent ADDs of mixed owners (64 processes).

No root needed: both plugins only write under the dataDir (a temporary folder)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import pytest

GO = Path("/usr/lib/cni/host-local")
OURS = Path(os.environ.get("IGNITE_IPAM", str(Path(sys.executable).parent / "ignite-ipam")))
NET = "sticky"

pytestmark = pytest.mark.skipif(not GO.exists(), reason="needs Debian's containernetworking-plugins")


def cri_args(ns: str, name: str, cid: str) -> str:
    """What containerd's CRI plugin sends."""
    return (f"IgnoreUnknown=1;K8S_POD_NAMESPACE={ns};K8S_POD_NAME={name};K8S_POD_INFRA_CONTAINER_ID={cid};"
            f"K8S_POD_UID=0f2b7c1e-{len(name):04d}-4000-8000-000000000000")


class Plugins:
    def __init__(self, data_dir: Path, ipam: dict[str, Any]) -> None:
        self.dir = data_dir / NET
        self.conf = {"cniVersion": "0.4.0", "name": NET, "type": "ignite-ipam",
                     "ipam": {"type": "host-local", "dataDir": str(data_dir), **ipam}}

    def run(self, binary: Path, command: str, cid: str, args: str = "") -> tuple[int, dict[str, Any] | None]:
        env = {"PATH": "/usr/bin:/bin", "CNI_COMMAND": command, "CNI_CONTAINERID": cid,
               "CNI_NETNS": "/var/run/netns/x", "CNI_IFNAME": "eth0", "CNI_PATH": "/usr/lib/cni", "CNI_ARGS": args}
        proc = subprocess.run([str(binary)], input=json.dumps(self.conf).encode(), env=env, capture_output=True,
                              timeout=120, check=False)
        return proc.returncode, json.loads(proc.stdout) if proc.stdout.strip() else None

    def add(self, binary: Path, cid: str, args: str = "") -> str | None:
        rc, doc = self.run(binary, "ADD", cid, args)
        if rc != 0:
            assert doc is not None and "no IP addresses available" in doc["msg"], (binary.name, cid, doc)
            return None
        assert doc is not None
        return str(doc["ips"][0]["address"].split("/")[0])

    def ok(self, binary: Path, command: str, cid: str, args: str = "") -> None:
        rc, doc = self.run(binary, command, cid, args)
        assert rc == 0, (binary.name, command, cid, doc)

    def leases(self) -> dict[str, bytes]:
        return {p.name: p.read_bytes() for p in self.dir.iterdir()
                if p.name != "lock" and not p.name.startswith("last_reserved_ip.")}


def test_host_local_never_hands_out_a_held_or_reserved_address(tmp_path: Path) -> None:
    p = Plugins(tmp_path, {"subnet": "10.61.0.0/28", "sticky": {"hold": "1h"},
                           "reservations": [{"owner": "k8s:prod/db", "address": "10.61.0.14"}]})
    ours = {f"web{i}": p.add(OURS, f"sb-web{i}", cri_args("prod", f"web{i}", f"sb-web{i}")) for i in range(6)}
    for i in range(6):
        p.ok(OURS, "DEL", f"sb-web{i}", cri_args("prod", f"web{i}", f"sb-web{i}"))
    taken = set(ours.values()) | {"10.61.0.14"}
    go = [p.add(GO, f"go{i}") for i in range(12)]
    got = [ip for ip in go if ip is not None]
    assert len(got) == 13 - len(taken) and not set(got) & taken, got  # .2-.14 minus the held and reserved
    for i in range(12):
        p.ok(GO, "DEL", f"go{i}")  # host-local's DEL removes its own leases, never our placeholders
    assert set(p.leases()) == taken
    assert all(v.startswith(b"_ignite_") for v in p.leases().values())
    for name, ip in ours.items():  # each pod comes back on a new sandbox to the address it had
        assert p.add(OURS, f"sb2-{name}", cri_args("prod", name, f"sb2-{name}")) == ip
    assert p.add(OURS, "sb-db", cri_args("prod", "db", "sb-db")) == "10.61.0.14"
    p.ok(GO, "CHECK", "sb-db")  # an address back in use is a plain host-local lease again


def test_host_local_running_concurrently_never_takes_a_held_or_reserved_address(tmp_path: Path) -> None:
    reserved = {f"k8s:res/r{i}": f"10.61.0.{200 + i}" for i in range(8)}
    p = Plugins(tmp_path, {"subnet": "10.61.0.0/24", "sticky": {"hold": "1h"},
                           "reservations": [{"owner": o, "address": a} for o, a in reserved.items()]})
    held = {}
    for i in range(20):
        held[f"h{i}"] = p.add(OURS, f"old-h{i}", cri_args("held", f"h{i}", f"old-h{i}"))
        p.ok(OURS, "DEL", f"old-h{i}", cri_args("held", f"h{i}", f"old-h{i}"))

    def job(k: int) -> tuple[str, str | None]:
        if k % 2 == 0:
            return f"go{k}", p.add(GO, f"go{k}")
        return f"ours{k}", p.add(OURS, f"new{k}", cri_args("new", f"p{k}", f"new{k}"))

    with ThreadPoolExecutor(8) as pool:
        results = list(pool.map(job, range(80)))
    got = [ip for _, ip in results if ip is not None]
    assert len(got) == len(set(got)) == 80  # no address twice
    assert not set(got) & (set(held.values()) | set(reserved.values()))
    leases = p.leases()
    assert all(leases[ip].startswith(b"_ignite_held_") for ip in held.values() if ip is not None)


def test_reservations_hold_under_64_concurrent_adds_of_mixed_owners(tmp_path: Path) -> None:
    reserved = {f"k8s:db/r{i}": f"10.61.0.{40 + i}" for i in range(8)}
    p = Plugins(tmp_path, {"subnet": "10.61.0.0/26", "sticky": {"hold": 600},
                           "reservations": [{"owner": o, "address": a} for o, a in reserved.items()]})
    # 8 reserved owners (k8s pods), 8 explicit owners, 48 plain container IDs: 64 ADDs at once, in 64
    # processes; 10.61.0.0/26 has 62 usable addresses, so the last ADDs of unreserved owners may find none.
    calls: list[tuple[str, str]] = []
    calls += [(f"sb-r{i}", cri_args("db", f"r{i}", f"sb-r{i}")) for i in range(8)]
    calls += [(f"vm{i}", f"IGNITE_OWNER=ignite/vm{i}") for i in range(8)]
    calls += [(f"ctr{i}", "") for i in range(48)]
    env = {"PATH": "/usr/bin:/bin", "CNI_COMMAND": "ADD", "CNI_NETNS": "/var/run/netns/x", "CNI_IFNAME": "eth0",
           "CNI_PATH": "/usr/lib/cni"}
    procs = [subprocess.Popen([str(OURS)], stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                              env={**env, "CNI_CONTAINERID": cid, "CNI_ARGS": args}) for cid, args in calls]
    outs = [proc.communicate(json.dumps(p.conf).encode(), timeout=300)[0] for proc in procs]
    got: dict[str, str] = {}
    for (cid, _), proc, out in zip(calls, procs, outs, strict=True):
        doc = json.loads(out)
        if proc.returncode == 0:
            got[cid] = doc["ips"][0]["address"].split("/")[0]
        else:
            assert "no IP addresses available" in doc["msg"] and not cid.startswith("sb-r"), doc
    assert len(got) == len(set(got.values())) >= 61 - 8 + 8
    for i in range(8):
        assert got[f"sb-r{i}"] == reserved[f"k8s:db/r{i}"]
    others = {ip for cid, ip in got.items() if not cid.startswith("sb-r")}
    assert not others & set(reserved.values())
    leases = p.leases()
    assert all(leases[ip] == f"{cid}\r\neth0".encode() for cid, ip in got.items())
