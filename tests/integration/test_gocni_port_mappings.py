"""Port mappings as containerd's CRI plugin sends them through go-cni (issue 12).

go-cni marshals its PortMapping struct without JSON tags, so the runtimeConfig holds
``{"HostPort": 8080, "ContainerPort": 80, "Protocol": "udp", "HostIP": ""}``. Go's encoding/json matches
keys ignoring case, so the Go plugins read these; a UDP mapping must stay UDP and HostIP be honoured.
A DEL must never fail on port mappings it cannot parse (else the sandbox can never be removed).
"""

from __future__ import annotations

import os
import re
import shutil

import pytest
from bridgeenv import HostEnv, base_conf, container_ip
from portmap_util import connect, serve, stop, wire_outside

pytestmark = pytest.mark.privileged
BACKENDS = ["iptables", "nftables"]
GO_CNI_UDP = {"HostPort": 8080, "ContainerPort": 80, "Protocol": "udp", "HostIP": ""}


def conf_with(env: HostEnv, backend: str, mappings: object = None) -> dict:
    conf = base_conf(env.data_dir, ipMasq=True, backend=backend, stateDir=env.data_dir + "/state")
    if mappings is not None:
        conf["runtimeConfig"] = {"portMappings": mappings}
    return conf


def records(env: HostEnv) -> list[str]:
    """State records and host port registry entries left in the attachment's stateDir."""
    root, out = env.data_dir + "/state", []
    for folder, _dirs, files in os.walk(root):
        out += [os.path.relpath(os.path.join(folder, f), root) for f in files if f not in {"lock", "iptables.lock"}]
    return sorted(out)


def dnat_lines(env: HostEnv, port: int) -> list[str]:
    """iptables DNAT rules of the port, or nft map elements `proto . port ... : target` (the map layout)."""
    return [ln for ln in env.rules().splitlines()
            if (f"dport {port}" in ln and "dnat" in ln.lower()) or re.search(rf"\b(tcp|udp|sctp) \. {port}\b.* : ", ln)]


@pytest.fixture
def env(netns):
    e = HostEnv(netns)
    try:
        yield e
    finally:
        shutil.rmtree(e.data_dir, ignore_errors=True)


@pytest.mark.parametrize("backend", BACKENDS)
def test_go_cni_capitalised_udp_mapping_is_udp_through_add_check_and_del(env, backend):
    outside, c1 = env.spaces.new("cnit-out"), env.container()
    wire_outside(env.host, outside)
    conf = conf_with(env, backend, [GO_CNI_UDP])
    result = env.add(conf, "gocni", c1)
    ip = container_ip(result)
    lines = dnat_lines(env, 8080)
    assert lines and all("udp" in ln and "tcp" not in ln for ln in lines), lines
    udp = serve(c1, "udp", "0.0.0.0", 80)
    try:
        assert connect(outside, "udp", "192.0.2.1", 8080) == "echo:ping", "a datagram to the host port"
        assert connect(env.host, "udp", "10.61.0.1", 8080) == "echo:ping"
    finally:
        stop(udp)
    env.run("CHECK", {**conf, "prevResult": result}, "gocni", c1).ok()
    assert records(env), "ADD keeps a state record and a registry entry"
    env.run("DEL", {**conf, "prevResult": result}, "gocni", c1).ok()
    assert dnat_lines(env, 8080) == [] and ip not in env.rules()
    assert records(env) == [] and env.leases() == []


@pytest.mark.parametrize("backend", BACKENDS)
def test_go_cni_host_ip_limits_the_mapping_to_that_address(env, backend):
    outside, c1 = env.spaces.new("cnit-out"), env.container()
    wire_outside(env.host, outside)
    mapping = {"HostPort": 8081, "ContainerPort": 80, "Protocol": "tcp", "HostIP": "192.0.2.1"}
    env.add(conf_with(env, backend, [mapping]), "gocni-ip", c1)
    assert all("192.0.2.1" in ln for ln in dnat_lines(env, 8081))
    tcp = serve(c1, "tcp", "0.0.0.0", 80, "web")
    try:
        assert connect(outside, "tcp", "192.0.2.1", 8081).startswith("web")
        assert connect(env.host, "tcp", "10.61.0.1", 8081) == ""
    finally:
        stop(tcp)


VALID_UDP = {"hostPort": 8080, "containerPort": 80, "protocol": "udp"}
GARBAGE = [
    [{"HostPort": 8080, "ContainerPort": 80, "Protocol": "tcp", "HostIP": "not an address"}],
    [{"HostPort": "8080"}],
    "portmappings",
    [7],
]


@pytest.mark.parametrize("garbage", GARBAGE, ids=["bad-hostip", "string-port", "not-a-list", "not-an-object"])
@pytest.mark.parametrize("backend", BACKENDS)
def test_del_with_unparsable_port_mappings_succeeds_and_removes_the_rules(env, backend, garbage):
    c1 = env.container()
    result = env.add(conf_with(env, backend, [VALID_UDP]), "garbage", c1)
    ip = container_ip(result)
    assert dnat_lines(env, 8080)
    bad = env.run("ADD", conf_with(env, backend, garbage), "garbage-2", env.container())
    assert bad.rc != 0 and bad.out is not None and bad.out["code"] == 7, bad.stdout
    env.run("DEL", conf_with(env, backend, garbage) | {"prevResult": result}, "garbage", c1).ok()
    assert dnat_lines(env, 8080) == [] and ip not in env.rules()
    assert records(env) == [] and env.leases() == []
    env.run("DEL", conf_with(env, backend, garbage) | {"prevResult": result}, "garbage", c1).ok()


@pytest.mark.parametrize("backend", BACKENDS)
def test_del_without_a_state_record_and_unparsable_port_mappings_removes_the_rules_by_key(env, backend):
    c1 = env.container()
    result = env.add(conf_with(env, backend, [VALID_UDP]), "norecord", c1)
    ip = container_ip(result)
    for rec in [r for r in records(env) if not r.startswith("ports/")]:
        os.unlink(os.path.join(env.data_dir, "state", rec))  # a record lost (e.g. a stateDir on tmpfs)
    env.run("DEL", conf_with(env, backend, [{"HostPort": -1}]) | {"prevResult": result}, "norecord", c1).ok()
    assert dnat_lines(env, 8080) == [] and ip not in env.rules()
