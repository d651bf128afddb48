"""Bad input to the real ignite-ipam executable: the right CNI error code as one JSON object on
stdout, a non-zero exit, no traceback, and nothing written to disk."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

OURS = Path(os.environ.get("IGNITE_IPAM", str(Path(sys.executable).parent / "ignite-ipam")))
ENV = {"CNI_COMMAND": "ADD", "CNI_CONTAINERID": "c1", "CNI_NETNS": "/var/run/netns/x", "CNI_IFNAME": "eth0",
       "CNI_PATH": "/opt/cni/bin"}
DATA = "@DATA@"  # replaced by the test's temporary dataDir


def conf(ipam: dict[str, Any] | None = None, **top: Any) -> dict[str, Any]:
    return {"cniVersion": "1.0.0", "name": "net1", "type": "ignite-ipam",
            "ipam": {"type": "ignite-ipam", "dataDir": DATA, **(ipam or {})}, **top}


CASES: list[tuple[str, object, dict[str, str], int]] = [
    # (id, stdin (bytes, or a conf dict), env overrides, expected code)
    ("malformed json", b'{"cniVersion": "1.0.0", "name": ', {}, 6),
    ("empty stdin", b"", {}, 6),
    ("json array", b"[]", {}, 6),
    ("not utf-8", b"\xff\xfe\x00", {}, 6),
    ("unknown cniVersion", conf(cniVersion="0.5.0"), {}, 1),
    ("cniVersion 1.0.1", conf(cniVersion="1.0.1"), {}, 1),
    ("cniVersion not a string", conf(cniVersion=1.0), {}, 7),
    ("name not a string", conf(name=["net1"]), {}, 7),
    ("ipam not an object", {**conf(), "ipam": "host-local"}, {}, 7),
    ("subnet not a string", conf({"subnet": 167772160}), {}, 7),
    ("ranges not a list", conf({"ranges": {"subnet": "10.1.0.0/24"}}), {}, 7),
    ("runtimeConfig not an object", conf(runtimeConfig=["ips"]), {}, 7),
    ("routes not a list", conf({"routes": "0.0.0.0/0"}), {}, 7),
    ("dataDir not a string", {**conf(), "ipam": {"dataDir": ["/tmp"]}}, {}, 7),
    ("bad subnet host bits", conf({"subnet": "10.1.0.1/24"}), {}, 7),
    ("bad subnet text", conf({"subnet": "10.1.0.0/33"}), {}, 7),
    ("subnet too small", conf({"subnet": "10.1.0.0/31"}), {}, 7),
    ("rangeStart outside subnet", conf({"subnet": "10.1.0.0/24", "rangeStart": "10.2.0.1"}), {}, 7),
    ("rangeEnd before rangeStart", conf({"subnet": "10.1.0.0/24", "rangeStart": "10.1.0.9",
                                         "rangeEnd": "10.1.0.3"}), {}, 7),
    ("overlapping range sets", conf({"ranges": [[{"subnet": "10.1.0.0/24"}], [{"subnet": "10.1.0.0/16"}]]}), {}, 7),
    ("overlap with legacy subnet", conf({"subnet": "10.1.0.0/24", "ranges": [[{"subnet": "10.1.0.0/25"}]]}), {}, 7),
    ("mixed families in a set", conf({"ranges": [[{"subnet": "10.1.0.0/24"}, {"subnet": "fd00::/64"}]]}), {}, 7),
    ("requested ip garbage", conf(runtimeConfig={"ips": ["10.1.0.x"]}), {}, 7),
    ("dataDir traversal", {**conf(), "ipam": {"dataDir": DATA + "/../../escape"}}, {}, 7),
    ("dataDir relative", {**conf(), "ipam": {"dataDir": "relative"}}, {}, 7),
    ("network name traversal", conf(name="../escape"), {}, 7),
    ("network name with slash", conf(name="a/b"), {}, 7),
    ("network name dot dot", conf(name=".."), {}, 7),
    ("network name hidden", conf(name=".ignite-index"), {}, 7),
    ("network name newline", conf(name="net\n"), {}, 7),
    ("missing network name", {"cniVersion": "1.0.0", "ipam": {"dataDir": DATA}}, {}, 7),
    ("container id with slash", conf(), {"CNI_CONTAINERID": "a/b"}, 4),
    ("container id dot dot", conf(), {"CNI_CONTAINERID": ".."}, 4),
    ("container id traversal", conf(), {"CNI_CONTAINERID": "../../etc/passwd"}, 4),
    ("container id newline", conf(), {"CNI_CONTAINERID": "c1\neth9"}, 4),
    ("ifname with slash", conf(), {"CNI_IFNAME": "../eth0"}, 4),
    ("ifname too long", conf(), {"CNI_IFNAME": "eth0123456789012"}, 4),
    ("missing env", conf(), {"CNI_CONTAINERID": "", "CNI_NETNS": "", "CNI_IFNAME": ""}, 4),
    ("unknown command", conf(), {"CNI_COMMAND": "DELETE"}, 4),
    ("unknown CNI_ARGS key", conf(), {"CNI_ARGS": "K8S_POD_NAME=x"}, 4),
    ("CNI_ARGS bad pair", conf(), {"CNI_ARGS": "IP=1=2"}, 4),
    ("CHECK at 0.3.1", conf(cniVersion="0.3.1"), {"CNI_COMMAND": "CHECK"}, 1),
    ("GC at 1.0.0", conf(), {"CNI_COMMAND": "GC"}, 1),
    ("STATUS at 1.0.0", conf(), {"CNI_COMMAND": "STATUS"}, 1),
    ("GC bad attachments", {**conf(cniVersion="1.1.0"), "cni.dev/valid-attachments": "all"}, {"CNI_COMMAND": "GC"}, 7),
    ("DEL name traversal", conf(name="../escape"), {"CNI_COMMAND": "DEL"}, 7),
    # scoped addresses (a lease file distinct from the plain address) and hostile values
    ("scoped subnet", conf({"subnet": "fd00:96::%1/64"}), {}, 7),
    ("scoped gateway", conf({"subnet": "fd00:96::/64", "gateway": "fd00:96::1%eth0"}), {}, 7),
    ("scoped route gw", conf({"subnet": "fd00:96::/64", "routes": [{"dst": "::/0", "gw": "fd00:96::1%1"}]}), {}, 7),
    ("scoped requested ip", conf({"subnet": "fd00:96::/64"}, runtimeConfig={"ips": ["fd00:96::2%1"]}), {}, 7),
    ("scoped args.cni ip", conf({"subnet": "fd00:96::/64"}, args={"cni": {"ips": ["fd00:96::2%1"]}}), {}, 7),
    ("scoped CNI_ARGS IP", conf({"subnet": "fd00:96::/64"}), {"CNI_ARGS": "IP=fd00:96::2%1"}, 7),
    ("CNI_ARGS IP garbage", conf({"subnet": "10.1.0.0/24"}), {"CNI_ARGS": "IP=10.1.0.x"}, 7),
    ("scoped ipRanges", conf(runtimeConfig={"ipRanges": [[{"Subnet": "fd00:96::%1/64"}]]}), {}, 7),
    ("huge number as subnet", conf({"subnet": 10**400}), {}, 7),
    ("infinity as requested ip", conf({"subnet": "10.1.0.0/24"}, runtimeConfig={"ips": [float("inf")]}), {}, 7),
    ("bool as gateway", conf({"subnet": "10.1.0.0/24", "gateway": False}), {}, 7),
    ("gateway of the other family", conf({"subnet": "10.1.0.0/24", "gateway": "fd00::1"}), {}, 7),
    ("list as rangeEnd", conf({"subnet": "10.1.0.0/24", "rangeEnd": ["10.1.0.9"]}), {}, 7),
    ("object as route dst", conf({"routes": [{"dst": {"ip": "0.0.0.0"}}]}), {}, 7),
    ("dataDir with NUL", {**conf(), "ipam": {"dataDir": DATA + "/x\u0000y"}}, {}, 7),
    ("resolvConf with NUL", conf({"resolvConf": "/etc/resolv\u0000conf"}), {}, 7),
    ("ipRanges set of strings", conf(runtimeConfig={"ipRanges": [["10.1.0.0/24"]]}), {}, 7),
]


def files_under(root: Path) -> list[str]:
    return sorted(str(p.relative_to(root)) for p in root.rglob("*"))


@pytest.mark.parametrize(("stdin", "env", "code"), [c[1:] for c in CASES], ids=[c[0] for c in CASES])
def test_bad_input_gives_the_right_error_code_and_writes_nothing(tmp_path: Path, stdin: object,
                                                                 env: dict[str, str], code: int) -> None:
    root = tmp_path / "root"
    work = root / "cwd"
    data = root / "a" / "b" / "data"
    work.mkdir(parents=True)
    data.parent.mkdir(parents=True)
    raw = stdin if isinstance(stdin, bytes) else json.dumps(stdin).replace(DATA, str(data)).encode()
    before = files_under(root)
    proc = subprocess.run([str(OURS)], input=raw, env={"PATH": "/usr/bin:/bin", **ENV, **env}, cwd=work,
                          capture_output=True, timeout=30, check=False)
    assert proc.returncode != 0
    assert b"Traceback" not in proc.stdout
    assert b"Traceback" not in proc.stderr  # a spec error is not an internal error
    lines = proc.stdout.decode().splitlines()
    assert len(lines) == 1, proc.stdout
    doc = json.loads(lines[0])
    assert doc["code"] == code, doc
    assert set(doc) <= {"cniVersion", "code", "msg", "details"} and doc["msg"]
    assert files_under(root) == before, "something was written"


def test_error_when_data_dir_cannot_be_created_is_an_io_failure(tmp_path: Path) -> None:
    blocker = tmp_path / "file"
    blocker.write_text("not a folder")
    raw = json.dumps(conf({"dataDir": str(blocker / "data")}, cniVersion="1.1.0")).encode()
    proc = subprocess.run([str(OURS)], input=raw, env={"PATH": "/usr/bin:/bin", **ENV, "CNI_COMMAND": "DEL"},
                          capture_output=True, timeout=30, check=False)
    doc = json.loads(proc.stdout)
    assert proc.returncode != 0
    assert (doc["code"], doc["msg"]) == (5, f"cannot create IPAM data folder {blocker}/data/net1")
    assert b"Traceback" not in proc.stdout + proc.stderr
