"""ipMasq, port mappings and forward rules through ignite-bridge, in both backends, on the real kernel."""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor

import pytest
from bridgeenv import HostEnv, base_conf, container_ip
from nsutil import in_ns
from portmap_util import connect, serve, stop, wire_outside

pytestmark = pytest.mark.privileged
BACKENDS = ["iptables", "nftables"]


def mapped(env: HostEnv, backend: str, *mappings: dict, **extra: object) -> dict:
    conf = base_conf(env.data_dir, ipMasq=True, backend=backend, stateDir=env.data_dir + "/state", **extra)
    if mappings:
        conf["runtimeConfig"] = {"portMappings": list(mappings)}
    return conf


def attachment_rules(env: HostEnv, ip: str) -> list[str]:
    return [ln for ln in env.rules().splitlines() if ip in ln]


@pytest.mark.parametrize("backend", BACKENDS)
def test_masqueraded_traffic_reaches_outside_with_the_host_address(netns, backend):
    env = HostEnv(netns)
    outside, c1 = env.spaces.new("cnit-out"), env.container()
    wire_outside(env.host, outside)
    env.add(mapped(env, backend), "masq", c1)
    server = serve(outside, "tcp", "192.0.2.2", 7000)
    try:
        assert connect(c1, "tcp", "192.0.2.2", 7000) == "hello peer=192.0.2.1"
    finally:
        stop(server)


@pytest.mark.parametrize("backend", BACKENDS)
def test_mapped_ports_are_reached_from_outside_host_localhost_and_containers(netns, backend):
    env = HostEnv(netns)
    outside, c1, c2 = env.spaces.new("cnit-out"), env.container(), env.container()
    wire_outside(env.host, outside)
    conf = mapped(env, backend, {"hostPort": 8080, "containerPort": 80, "protocol": "tcp"},
                  {"hostPort": 5353, "containerPort": 53, "protocol": "udp"})
    r1 = env.add(conf, "web", c1)
    env.add(mapped(env, backend), "other", c2)
    ip1 = container_ip(r1)
    tcp, udp = serve(c1, "tcp", "0.0.0.0", 80, "web"), serve(c1, "udp", "0.0.0.0", 53)
    try:
        assert connect(outside, "tcp", "192.0.2.1", 8080).startswith("web peer=192.0.2.2")
        assert connect(outside, "udp", "192.0.2.1", 5353) == "echo:ping"
        assert connect(env.host, "tcp", "192.0.2.1", 8080).startswith("web")
        assert connect(env.host, "tcp", "127.0.0.1", 8080).startswith("web")
        assert connect(env.host, "udp", "10.61.0.1", 5353) == "echo:ping"
        assert connect(c2, "tcp", "10.61.0.1", 8080).startswith("web")
        assert connect(c1, "tcp", "10.61.0.1", 8080).startswith("web"), "hairpin to its own mapped port"
    finally:
        stop(tcp)
        stop(udp)
    env.run("CHECK", {**conf, "prevResult": r1}, "web", c1).ok()
    env.run("DEL", {k: v for k, v in conf.items() if k != "runtimeConfig"} | {"prevResult": r1}, "web", c1).ok()
    assert attachment_rules(env, ip1) == [], "DEL without portMappings must still remove the DNAT rules"


@pytest.mark.parametrize("backend", BACKENDS)
def test_host_ip_limits_the_mapping_to_that_address(netns, backend):
    env = HostEnv(netns)
    outside, c1 = env.spaces.new("cnit-out"), env.container()
    wire_outside(env.host, outside)
    env.add(mapped(env, backend, {"hostPort": 8081, "containerPort": 80, "protocol": "tcp",
                                  "hostIP": "192.0.2.1"}), "hostip", c1)
    tcp = serve(c1, "tcp", "0.0.0.0", 80, "web")
    try:
        assert connect(outside, "tcp", "192.0.2.1", 8081).startswith("web")
        assert connect(env.host, "tcp", "10.61.0.1", 8081) == ""
    finally:
        stop(tcp)


@pytest.mark.parametrize("backend", ["iptables", "auto"])
def test_forward_policy_drop_still_lets_attachment_traffic_through(netns, backend):
    """Docker sets FORWARD policy DROP through iptables; `auto` must then pick iptables (an accept in an
    nftables table of our own cannot override a drop in iptables' table: nftables needs every hook to accept)."""
    env = HostEnv(netns)
    outside, c1 = env.spaces.new("cnit-out"), env.container()
    wire_outside(env.host, outside)
    in_ns(env.host, ["iptables", "-P", "FORWARD", "DROP"])
    r1 = env.add(mapped(env, backend, {"hostPort": 8082, "containerPort": 80, "protocol": "tcp"}), "drop", c1)
    assert container_ip(r1) in env.host_sh("iptables-save")
    tcp, out = serve(c1, "tcp", "0.0.0.0", 80, "web"), serve(outside, "tcp", "192.0.2.2", 7001)
    try:
        assert connect(outside, "tcp", "192.0.2.1", 8082).startswith("web")
        assert connect(c1, "tcp", "192.0.2.2", 7001) == "hello peer=192.0.2.1"
    finally:
        stop(tcp)
        stop(out)


@pytest.mark.parametrize("backend", BACKENDS)
def test_a_host_port_taken_by_another_attachment_is_refused_and_nothing_is_left(netns, backend):
    env = HostEnv(netns)
    conf = mapped(env, backend, {"hostPort": 9090, "containerPort": 80, "protocol": "tcp"})
    env.add(conf, "first", env.container())
    second = env.run("ADD", conf, "second", env.container())
    assert second.rc != 0 and "9090" in second.out["msg"] + second.out.get("details", "")
    assert len(env.leases()) == 1 and "10.61.0.3" not in env.rules()


@pytest.mark.parametrize("backend", BACKENDS)
def test_del_after_namespace_is_gone_without_port_mappings_leaves_no_rule(netns, backend):
    env = HostEnv(netns)
    c1 = env.container()
    conf = mapped(env, backend, {"hostPort": 8083, "containerPort": 80, "protocol": "tcp"})
    result = env.add(conf, "gone", c1)
    ip = container_ip(result)
    assert attachment_rules(env, ip)
    env.spaces.made.remove(c1)
    in_ns(env.host, ["true"])
    import subprocess

    subprocess.run(["ip", "netns", "del", c1], check=True)
    env.run("DEL", base_conf(env.data_dir, ipMasq=True, backend=backend, stateDir=env.data_dir + "/state"),
            "gone", c1).ok()
    assert attachment_rules(env, ip) == [] and "8083" not in env.rules()


@pytest.mark.parametrize("backend", BACKENDS)
def test_32_concurrent_adds_with_mappings_are_all_reachable(netns, backend):
    env = HostEnv(netns)
    spaces = [env.container() for _ in range(32)]

    def add(i: int) -> dict:
        return env.add(mapped(env, backend, {"hostPort": 10000 + i, "containerPort": 80, "protocol": "tcp"}),
                       f"par-{i}", spaces[i])

    with ThreadPoolExecutor(32) as pool:
        results = list(pool.map(add, range(32)))
    assert len({container_ip(r) for r in results}) == 32
    for i in (0, 17, 31):
        tcp = serve(spaces[i], "tcp", "0.0.0.0", 80, f"c{i}")
        try:
            assert connect(env.host, "tcp", "127.0.0.1", 10000 + i).startswith(f"c{i}")
        finally:
            stop(tcp)
    with ThreadPoolExecutor(32) as pool:
        list(pool.map(lambda i: env.run("DEL", mapped(env, backend) | {"prevResult": results[i]}, f"par-{i}",
                                        spaces[i]).ok(), range(32)))
    assert "10.61." not in env.rules() and env.leases() == []
