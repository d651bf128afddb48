"""The per-call log of a real ignite-bridge call (the whole network: veth, in-process IPAM, guard, rules)."""

from __future__ import annotations

import json
from typing import TYPE_CHECKING

import pytest
from bridgeenv import HostEnv, base_conf

if TYPE_CHECKING:
    from pathlib import Path

pytestmark = pytest.mark.privileged


def test_a_debug_level_add_and_del_log_the_steps_taken_with_their_timings(netns, tmp_path: Path) -> None:
    env = HostEnv(netns)
    log = tmp_path / "cni.log"
    conf = base_conf(env.data_dir, ipMasq=True, guard=True, logFile=str(log), logLevel="debug",
                     runtimeConfig={"portMappings": [{"hostPort": 8080, "containerPort": 80, "protocol": "tcp"}]})
    ctr = env.container()
    env.add(conf, "ctr-log", ctr)
    env.run("DEL", conf, "ctr-log", ctr).ok()
    add, delete = (json.loads(line) for line in log.read_text().splitlines())
    assert [s[0] for s in add["steps"]] == ["config", "bridge and veth", "ipam config", "ipam lease", "ipam",
                                           "record, guard, rules, port", "container and gateway", "link up, result"]
    assert [s[0] for s in delete["steps"]] == ["container side", "host veth", "rules, guard", "ipam release", "ipam"]
    for line in (add, delete):
        assert all(isinstance(ms, float) and 0 <= ms <= line["ms"] for _, ms in line["steps"])
        assert sum(ms for _, ms in line["steps"]) <= line["ms"] + 0.01
    assert add["addresses"] and add["hostPorts"] == ["tcp/8080"]


def test_an_info_level_call_logs_no_steps(netns, tmp_path: Path) -> None:
    env = HostEnv(netns)
    log = tmp_path / "cni.log"
    conf = base_conf(env.data_dir, logFile=str(log))
    ctr = env.container()
    env.add(conf, "ctr-info", ctr)
    env.run("DEL", conf, "ctr-info", ctr).ok()
    lines = [json.loads(line) for line in log.read_text().splitlines()]
    assert [x["verb"] for x in lines] == ["ADD", "DEL"] and not any("steps" in x for x in lines)
