"""The per-call log: one JSON line per call in logFile, never on stdout, never failing the call."""

from __future__ import annotations

import io
import json
import os
import subprocess
import sys
from ipaddress import ip_interface
from pathlib import Path
from typing import Any

from cni_ignite import skel
from cni_ignite.errors import InvalidConfig
from cni_ignite.identity import owner_of
from cni_ignite.result import IPConfig, Result

ENV = {"CNI_COMMAND": "ADD", "CNI_CONTAINERID": "c1", "CNI_NETNS": "/var/run/netns/x", "CNI_IFNAME": "eth0",
       "CNI_PATH": "/opt/cni/bin"}


def _handlers(fail: Exception | None = None) -> skel.Handlers:
    def add(args: skel.CmdArgs) -> Result:
        skel.step("veth")
        if fail is not None:
            raise fail
        skel.step("rules")
        return Result(ips=(IPConfig(address=ip_interface("10.61.0.2/16")),))

    def nothing(args: skel.CmdArgs) -> None:
        if fail is not None:
            raise fail

    return skel.Handlers(add=add, delete=nothing, check=nothing, gc=nothing, status=nothing)


def _call(log: Path | str, *, env: dict[str, str] | None = None, fail: Exception | None = None,
          **keys: Any) -> tuple[int, str, str]:
    skel._steps = None  # one call per process in real use
    doc = {"cniVersion": "1.0.0", "name": "net1", "type": "ignite-bridge", "logFile": str(log), **keys,
           "runtimeConfig": {"portMappings": [{"HostPort": 8080, "ContainerPort": 80, "Protocol": "udp"}]}}
    out, err = io.StringIO(), io.StringIO()
    rc = skel.run(_handlers(fail), env=env or ENV, stdin=io.BytesIO(json.dumps(doc).encode()), stdout=out,
                  stderr=err, about="test")
    return rc, out.getvalue(), err.getvalue()


def _lines(log: Path) -> list[dict[str, Any]]:
    return [json.loads(line) for line in log.read_text().splitlines()]


def test_an_add_writes_one_info_line_with_addresses_host_ports_and_duration(tmp_path: Path) -> None:
    log = tmp_path / "cni.log"
    rc, out, _ = _call(log, env={**ENV, "CNI_ARGS": "IgnoreUnknown=1;K8S_POD_NAMESPACE=default;K8S_POD_NAME=web"})
    assert rc == 0 and json.loads(out)["ips"][0]["address"] == "10.61.0.2/16"
    [line] = _lines(log)
    assert line["level"] == "info" and line["verb"] == "ADD" and line["network"] == "net1"
    assert (line["containerID"], line["ifname"], line["netns"]) == ("c1", "eth0", "/var/run/netns/x")
    assert line["owner"] == "k8s:default/web"
    assert line["addresses"] == ["10.61.0.2/16"] and line["hostPorts"] == ["udp/8080"]
    assert isinstance(line["ms"], float) and "steps" not in line
    assert "logFile" not in out and "cni.log" not in out  # nothing about the log on stdout


def test_a_failed_call_logs_its_code_and_message(tmp_path: Path) -> None:
    log = tmp_path / "cni.log"
    rc, _, _ = _call(log, fail=InvalidConfig("bad subnet", "x"), logLevel="error")
    assert rc == 1
    [line] = _lines(log)
    assert (line["level"], line["code"], line["msg"], line["details"]) == ("error", 7, "bad subnet", "x")


def test_error_level_skips_successful_calls(tmp_path: Path) -> None:
    log = tmp_path / "cni.log"
    assert _call(log, logLevel="error")[0] == 0
    assert not log.exists()


def test_debug_level_records_the_steps_with_timings(tmp_path: Path) -> None:
    log = tmp_path / "cni.log"
    _call(log, logLevel="debug")
    [line] = _lines(log)
    assert [s[0] for s in line["steps"]] == ["veth", "rules"] and all(s[1] >= 0 for s in line["steps"])


def test_an_unwritable_log_never_fails_the_call_and_says_so_on_stderr(tmp_path: Path) -> None:
    rc, out, err = _call(tmp_path / "missing-dir" / "cni.log")
    assert rc == 0 and json.loads(out)["cniVersion"] == "1.0.0"
    assert "cannot write log" in err


def test_a_relative_log_path_is_ignored_with_a_note(tmp_path: Path) -> None:
    rc, _, err = _call("relative.log")
    assert rc == 0 and "absolute path" in err and not Path("relative.log").exists()


def test_the_log_rotates_past_its_size_limit(tmp_path: Path) -> None:
    log = tmp_path / "cni.log"
    log.write_bytes(b"x" * 5000 + b"\n")
    _call(log, logMaxBytes=4096)
    assert (tmp_path / "cni.log.1").read_bytes().startswith(b"xxx")
    assert len(_lines(log)) == 1


WRITER = """
import io, json, sys
from cni_ignite import skel
from cni_ignite.result import Result
h = skel.Handlers(add=lambda a: Result(), delete=lambda a: None, check=lambda a: None, gc=lambda a: None,
                  status=lambda a: None)
doc = {"cniVersion": "1.0.0", "name": "net1", "type": "t", "logFile": sys.argv[1], "logMaxBytes": 20000,
       "padding": "p" * 2000}
env = {"CNI_COMMAND": "DEL", "CNI_CONTAINERID": "c" + sys.argv[2], "CNI_IFNAME": "eth0"}
for i in range(int(sys.argv[3])):
    skel.run(h, env=env, stdin=io.BytesIO(json.dumps(doc).encode()), stdout=io.StringIO(), stderr=sys.stderr,
             about="t")
"""


def test_concurrent_calls_never_interleave_lines_even_while_rotating(tmp_path: Path) -> None:
    log = tmp_path / "cni.log"
    procs = [subprocess.Popen([sys.executable, "-c", WRITER, str(log), str(i), "300"],
                              cwd=Path(__file__).parents[2]) for i in range(4)]
    for p in procs:
        assert p.wait(timeout=120) == 0
    lines = []
    for path in (log, tmp_path / "cni.log.1"):
        if path.exists():
            lines += path.read_text().splitlines()
    assert lines and all(json.loads(line)["verb"] == "DEL" for line in lines)
    assert os.path.getsize(log) < 20000 + 4 * 1024 and (tmp_path / "cni.log.1").exists()


def test_the_owner_is_explicit_then_the_pod_then_the_container() -> None:
    k8s = "IgnoreUnknown=1;K8S_POD_NAMESPACE=ns;K8S_POD_NAME=p;K8S_POD_INFRA_CONTAINER_ID=c1"
    assert owner_of("c1", k8s) == "k8s:ns/p"
    assert owner_of("c1", k8s + ";IGNITE_OWNER=vm-7") == "vm-7"
    assert owner_of("c1", k8s, {"owner": "vm-8"}) == "vm-8"
    assert owner_of("c1", "K8S_POD_NAME=p") == "c1"
    assert owner_of("c1", "IGNITE_OWNER=bad\nname") == "c1"


def test_a_real_ipam_add_and_del_at_debug_level_log_their_steps(tmp_path: Path) -> None:
    from ipamenv import Ipam

    ipam = Ipam(tmp_path / "data")
    log = tmp_path / "cni.log"
    conf = ipam.conf({"subnet": "10.61.7.0/24"}, logFile=str(log), logLevel="debug")
    skel._steps = None
    assert ipam("ADD", conf).ips == ["10.61.7.2/24"]
    skel._steps = None
    assert ipam("DEL", conf).rc == 0
    add, delete = _lines(log)
    assert [s[0] for s in add["steps"]] == ["ipam config", "ipam lease"]
    assert [s[0] for s in delete["steps"]] == ["ipam release"]
    assert all(isinstance(s[1], float) and s[1] >= 0 for s in add["steps"] + delete["steps"])
