"""`cni-ignite log`: the per-call log written by the real ignite-ipam (console script, logFile and dataDir in a
temp dir, no root), read back as one line per call, filtered by container / owner / network / errors, across
the `.1` rotation, and followed while calls are appended and the file rotates."""

from __future__ import annotations

import io
import json
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

import pytest

from cni_ignite import admin

IPAM = Path(sys.executable).parent / "ignite-ipam"
ADMIN = Path(sys.executable).parent / "cni-ignite"


def conf(tmp: Path, **extra: Any) -> dict[str, Any]:
    return {"cniVersion": "1.0.0", "name": "lognet", "type": "ignite-ipam", "logFile": str(tmp / "cni.log"),
            "ipam": {"type": "ignite-ipam", "subnet": "10.99.0.0/29", "dataDir": str(tmp / "data")}, **extra}


def ipam(tmp: Path, command: str, cid: str, owner: str = "", **extra: Any) -> int:
    env = {"PATH": "/usr/bin:/bin", "CNI_COMMAND": command, "CNI_CONTAINERID": cid, "CNI_NETNS": "/var/run/netns/x",
           "CNI_IFNAME": "eth0", "CNI_PATH": str(IPAM.parent),
           "CNI_ARGS": f"IgnoreUnknown=1;IGNITE_OWNER={owner}" if owner else ""}
    return subprocess.run([str(IPAM)], input=json.dumps(conf(tmp, **extra)).encode(), env=env, capture_output=True,
                          timeout=60, check=False).returncode


def history(tmp: Path) -> None:
    """vm-web added, checked and deleted; vm-db added; then the range runs out for three more."""
    assert ipam(tmp, "ADD", "ctr-web", "vm-web") == 0
    assert ipam(tmp, "CHECK", "ctr-web", "vm-web") == 0
    assert ipam(tmp, "DEL", "ctr-web", "vm-web") == 0
    assert ipam(tmp, "ADD", "ctr-db", "vm-db") == 0


def show(tmp: Path, **flt: Any) -> list[str]:
    out = io.StringIO()
    assert admin.print_log(str(tmp / "cni.log"), admin.LogFilter(**flt), out) == 0
    return out.getvalue().splitlines()


@pytest.fixture(autouse=True)
def _needs_console_script() -> None:
    if not IPAM.exists():
        pytest.skip(f"{IPAM} is not installed (make setup)")


def test_log_prints_one_readable_line_per_call(tmp_path: Path) -> None:
    history(tmp_path)
    lines = show(tmp_path)
    assert len(lines) == 4
    t, plugin, verb, network, cid, ifname, owner, ms, *result = lines[0].split()
    assert t.endswith("Z") and plugin == "ignite-ipam" and (verb, network, cid, ifname) == ("ADD", "lognet",
                                                                                            "ctr-web", "eth0")
    assert owner == "owner=vm-web" and ms.endswith("ms") and float(ms[:-2]) > 0
    assert result == ["ok", "10.99.0.2/29"]
    assert [line.split()[2] for line in lines] == ["ADD", "CHECK", "DEL", "ADD"]


def test_log_container_filter_follows_one_container_by_id_or_prefix(tmp_path: Path) -> None:
    history(tmp_path)
    assert [line.split()[2] for line in show(tmp_path, container="ctr-web")] == ["ADD", "CHECK", "DEL"]
    assert [line.split()[4] for line in show(tmp_path, container="ctr-d")] == ["ctr-db"]


def test_log_owner_and_network_filters(tmp_path: Path) -> None:
    history(tmp_path)
    assert len(show(tmp_path, owner="vm-db")) == 1
    assert show(tmp_path, owner="vm-none") == []
    assert len(show(tmp_path, network="lognet")) == 4
    assert show(tmp_path, network="other") == []


def test_log_errors_shows_failed_calls_with_code_and_message(tmp_path: Path) -> None:
    history(tmp_path)
    for i in range(6):  # a /29 has 5 addresses for containers: ctr-db holds one
        ipam(tmp_path, "ADD", f"ctr-x{i}", "vm-x")
    errors = show(tmp_path, errors=True)
    assert len(errors) == 2
    assert all("ERROR 999: no IP addresses available in range set: 10.99.0.1-10.99.0.6" in e for e in errors)
    assert {e.split()[4] for e in errors} == {"ctr-x4", "ctr-x5"}


def test_log_reads_the_rotated_generation_first(tmp_path: Path) -> None:
    for i in range(20):  # ~300 bytes a line: rotates once past 4096 bytes
        assert ipam(tmp_path, "ADD" if i % 2 == 0 else "DEL", f"ctr-{i // 2:02d}", logMaxBytes=4096) == 0
    assert (tmp_path / "cni.log.1").exists()
    lines = show(tmp_path)
    assert len(lines) == 20  # nothing lost: .1 then the current file
    assert [line.split()[4] for line in lines] == [f"ctr-{i // 2:02d}" for i in range(20)]
    times = [line.split()[0] for line in lines]
    assert times == sorted(times)


def test_log_follow_prints_new_calls_across_a_rotation(tmp_path: Path) -> None:
    assert ipam(tmp_path, "ADD", "ctr-before", logMaxBytes=4096) == 0
    out = io.StringIO()
    done = threading.Event()
    reader = threading.Thread(target=admin.print_log, args=(str(tmp_path / "cni.log"), admin.LogFilter(), out),
                              kwargs={"follow": True, "stop": done.is_set, "poll": 0.05})
    reader.start()
    try:
        for i in range(24):
            assert ipam(tmp_path, "ADD" if i % 2 == 0 else "DEL", f"ctr-f{i // 2}", logMaxBytes=4096) == 0
        assert (tmp_path / "cni.log.1").exists()  # rotated while followed
        deadline = time.monotonic() + 10
        while out.getvalue().count("\n") < 25 and time.monotonic() < deadline:
            time.sleep(0.05)
    finally:
        done.set()
        reader.join(10)
    cids = [line.split()[4] for line in out.getvalue().splitlines()]
    assert cids == ["ctr-before", *[f"ctr-f{i // 2}" for i in range(24)]]


def test_log_default_file_is_the_default_networks_log_file(tmp_path: Path) -> None:
    conf_dir = tmp_path / "net.d"
    conf_dir.mkdir()
    (conf_dir / "10-ignite.conflist").write_text(json.dumps({
        "cniVersion": "1.0.0", "name": "lognet",
        "plugins": [{"type": "ignite-bridge", "logFile": str(tmp_path / "cni.log")}]}))
    history(tmp_path)
    res = subprocess.run([str(ADMIN), "log", "--conf-dir", str(conf_dir), "--owner", "vm-web"], capture_output=True,
                         timeout=60, check=False)
    assert res.returncode == 0, res.stderr.decode()
    assert [line.split()[2] for line in res.stdout.decode().splitlines()] == ["ADD", "CHECK", "DEL"]


def test_log_without_file_or_log_file_is_a_clear_error(tmp_path: Path) -> None:
    (tmp_path / "net.d").mkdir()
    (tmp_path / "net.d" / "10-x.conflist").write_text('{"name": "x", "plugins": [{"type": "bridge"}]}')
    res = subprocess.run([str(ADMIN), "log", "--conf-dir", str(tmp_path / "net.d")], capture_output=True,
                         timeout=60, check=False)
    assert res.returncode == 1
    assert "no --file given and the default network" in res.stderr.decode()
    res = subprocess.run([str(ADMIN), "log", "--file", str(tmp_path / "none.log")], capture_output=True,
                         timeout=60, check=False)
    assert res.returncode == 1 and f"no log at {tmp_path / 'none.log'}" in res.stderr.decode()


def test_log_container_owner_network_filters_are_exclusive() -> None:
    res = subprocess.run([str(ADMIN), "log", "--file", "/nonexistent", "--container", "a", "--owner", "b"],
                         capture_output=True, timeout=60, check=False)
    assert res.returncode == 2 and "not allowed with argument" in res.stderr.decode()
