"""UDP host ports: a client already sending to the port before the mapping existed reaches the container
once the mapping is added (its stale conntrack entry, made without DNAT, is deleted over ctnetlink)."""

from __future__ import annotations

import subprocess
import sys

import pytest
from bridgeenv import HostEnv, base_conf, container_ip
from nsutil import in_ns
from portmap_util import serve, stop, wire_outside

pytestmark = pytest.mark.privileged

# One socket with a fixed source port, so every datagram belongs to the same conntrack entry.
SENDER = """
import socket, sys, time
s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
s.bind(('192.0.2.2', 40000)); s.settimeout(0.1)
print('ready', flush=True)
end = time.monotonic() + float(sys.argv[1])
while time.monotonic() < end:
    try:
        s.sendto(b'ping', ('192.0.2.1', 5353))
        print(s.recvfrom(200)[0].decode(), flush=True)
        sys.exit(0)
    except (socket.timeout, ConnectionRefusedError):
        continue
sys.exit(1)
"""


def _udp_entries(ns: str, port: int) -> int:
    code = ("from pyroute2 import Conntrack\n"
            f"print(sum(1 for e in Conntrack().dump_entries() if e.tuple_orig.dport == {port}))")
    return int(in_ns(ns, [sys.executable, "-c", code]).stdout)


@pytest.mark.parametrize("backend", ["iptables", "nftables"])
def test_a_client_sending_before_the_mapping_existed_reaches_the_container(netns, backend):
    env = HostEnv(netns)
    outside, early, c1 = env.spaces.new("cnit-out"), env.container(), env.container()
    wire_outside(env.host, outside)
    conf = base_conf(env.data_dir, ipMasq=True, backend=backend, stateDir=env.data_dir + "/state")
    env.add(conf, "early", early)  # the host's nat hooks (and conntrack) exist before the client starts
    sender = subprocess.Popen(["ip", "netns", "exec", outside, sys.executable, "-c", SENDER, "20"],
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    echo = None
    try:
        assert sender.stdout is not None and sender.stdout.readline().strip() == "ready"
        subprocess.run(["sleep", "0.5"], check=True)
        assert _udp_entries(env.host, 5353) == 1, "the client's datagrams made one conntrack entry (no DNAT)"
        mapped = {**conf, "runtimeConfig": {"portMappings": [
            {"HostPort": 5353, "ContainerPort": 53, "Protocol": "udp", "HostIP": ""}]}}
        r1 = env.add(mapped, "web", c1)
        echo = serve(c1, "udp", container_ip(r1), 53)
        out, err = sender.communicate(timeout=30)
        assert sender.returncode == 0, f"the early client never reached the container: {err}"
        assert out.strip() == "echo:ping"
    finally:
        if sender.poll() is None:
            sender.kill()
            sender.communicate()
        if echo is not None:
            stop(echo)


def test_tcp_only_mappings_leave_conntrack_alone(netns):
    env = HostEnv(netns)
    c1 = env.container()
    conf = base_conf(env.data_dir, ipMasq=True, backend="nftables", stateDir=env.data_dir + "/state")
    in_ns(env.host, ["nft", "add table ip t; add chain ip t c { type filter hook output priority 0; }; "
                                "add rule ip t c ct state new accept"])
    in_ns(env.host, ["bash", "-c", "echo hi > /dev/udp/127.0.0.1/8080"], check=False)
    assert _udp_entries(env.host, 8080) == 1
    env.add({**conf, "runtimeConfig": {"portMappings": [{"hostPort": 8080, "containerPort": 80}]}}, "web", c1)
    assert _udp_entries(env.host, 8080) == 1
