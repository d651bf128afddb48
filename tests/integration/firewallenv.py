"""Topology and helpers for the firewall integration tests (no tests here; the name keeps it among the
files the firewall layer owns — it would be ``firewallenv.py`` next to ``bridgeenv.py``).

    outside ns  192.0.2.2/24 ──veth── 192.0.2.1/24  host ns  br0 10.99.0.1/24, fd99::1/64
                                                         ├──veth── c1 10.99.0.2/24 fd99::2/64
                                                         └──veth── c2 10.99.0.3/24 fd99::3/64

The firewall layer runs inside the host namespace through ``python -m cni_ignite.firewall``; servers
and clients run inside the namespaces with ``ip netns exec``; every process started here is killed by
PID, and the namespaces are removed by the ``netns`` fixture.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from dataclasses import dataclass, field
from typing import Any

from nsutil import Namespaces, in_ns, sh

PY = sys.executable
TCP_SERVER = """
import socket, sys
s = socket.socket(socket.AF_INET6); s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
s.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 0); s.bind(("::", int(sys.argv[1]))); s.listen(128)
print("ready", flush=True)
while True:
    c, a = s.accept(); c.sendall(("peer=" + a[0].removeprefix("::ffff:")).encode()); c.close()
"""
UDP_SERVER = """
import socket, sys
s = socket.socket(socket.AF_INET6, socket.SOCK_DGRAM); s.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 0)
s.bind(("::", int(sys.argv[1]))); print("ready", flush=True)
while True:
    d, a = s.recvfrom(100); s.sendto(("peer=" + a[0].removeprefix("::ffff:")).encode(), a)
"""
TCP_CLIENT = """
import socket, sys
s = socket.create_connection((sys.argv[1], int(sys.argv[2])), timeout=2); print(s.recv(100).decode())
"""
UDP_CLIENT = """
import socket, sys
fam = socket.AF_INET6 if ":" in sys.argv[1] else socket.AF_INET
s = socket.socket(fam, socket.SOCK_DGRAM); s.settimeout(2); s.sendto(b"x", (sys.argv[1], int(sys.argv[2])))
print(s.recvfrom(100)[0].decode())
"""


@dataclass
class Topo:
    spaces: Namespaces
    state_dir: str
    host: str = ""
    outside: str = ""
    c1: str = ""
    c2: str = ""
    procs: list[subprocess.Popen[bytes]] = field(default_factory=list)

    def build(self) -> Topo:
        self.host, self.outside = self.spaces.new("cnit-fwh"), self.spaces.new("cnit-fwo")
        self.c1, self.c2 = self.spaces.new("cnit-fc1"), self.spaces.new("cnit-fc2")
        h = self.host
        for cmd in (["ip", "link", "add", "br0", "type", "bridge"], ["ip", "addr", "add", "10.99.0.1/24", "dev", "br0"],
                    ["ip", "addr", "add", "fd99::1/64", "dev", "br0", "nodad"], ["ip", "link", "set", "br0", "up"],
                    ["sysctl", "-qw", "net.ipv4.ip_forward=1"], ["sysctl", "-qw", "net.ipv6.conf.all.forwarding=1"]):
            in_ns(h, cmd)
        for i, ns in ((2, self.c1), (3, self.c2)):
            in_ns(h, ["ip", "link", "add", f"hv{i}", "type", "veth", "peer", "name", "eth0", "netns", ns])
            in_ns(h, ["ip", "link", "set", f"hv{i}", "master", "br0", "up"])
            in_ns(h, ["ip", "link", "set", f"hv{i}", "type", "bridge_slave", "hairpin", "on"])
            for cmd in (["ip", "addr", "add", f"10.99.0.{i}/24", "dev", "eth0"],
                        ["ip", "addr", "add", f"fd99::{i}/64", "dev", "eth0", "nodad"],
                        ["ip", "link", "set", "eth0", "up"],
                        ["ip", "route", "add", "default", "via", "10.99.0.1"],
                        ["ip", "-6", "route", "add", "default", "via", "fd99::1"]):
                in_ns(ns, cmd)
        in_ns(h, ["ip", "link", "add", "up0", "type", "veth", "peer", "name", "eth0", "netns", self.outside])
        for cmd in (["ip", "addr", "add", "192.0.2.1/24", "dev", "up0"],
                    ["ip", "addr", "add", "2001:db8::1/64", "dev", "up0", "nodad"], ["ip", "link", "set", "up0", "up"]):
            in_ns(h, cmd)
        for cmd in (["ip", "addr", "add", "192.0.2.2/24", "dev", "eth0"],
                    ["ip", "addr", "add", "2001:db8::2/64", "dev", "eth0", "nodad"],
                    ["ip", "link", "set", "eth0", "up"]):
            in_ns(self.outside, cmd)
        for ns, addr in ((self.c1, "fd99::1"), (self.c2, "fd99::1"), (self.outside, "2001:db8::1")):
            in_ns(ns, ["ping", "-6", "-c1", "-W2", addr], check=False)  # settle neighbour discovery
        return self

    def second_bridge(self, bridge: str = "br1", port: int = 82) -> str:
        """A second bridge with the SAME subnet as br0 (10.99.0.1/24) and a container c3 at 10.99.0.2,
        like c1. TCP packets to or from port ``port`` (DNAT'd to c3's server, or an outside server's replies
        to c3) are routed to the second bridge by policy routing (table 100): nothing else can tell the
        two subnets apart. Returns c3's namespace."""
        h, c3 = self.host, self.spaces.new("cnit-fc3")
        for cmd in (["ip", "link", "add", bridge, "type", "bridge"],
                    ["ip", "addr", "add", "10.99.0.1/24", "dev", bridge],
                    ["ip", "link", "set", bridge, "up"],
                    ["ip", "link", "add", "hv9", "type", "veth", "peer", "name", "eth0", "netns", c3],
                    ["ip", "link", "set", "hv9", "master", bridge, "up"],
                    ["ip", "route", "add", "10.99.0.0/24", "dev", bridge, "table", "100"],
                    ["ip", "rule", "add", "ipproto", "tcp", "dport", str(port), "lookup", "100"],
                    ["ip", "rule", "add", "ipproto", "tcp", "sport", str(port), "lookup", "100"]):
            in_ns(h, cmd)
        for cmd in (["ip", "addr", "add", "10.99.0.2/24", "dev", "eth0"], ["ip", "link", "set", "eth0", "up"],
                    ["ip", "route", "add", "default", "via", "10.99.0.1"]):
            in_ns(c3, cmd)
        return c3

    # ----------------------------------------------------------------------------------- firewall
    def fw(self, *reqs: dict[str, Any], check: bool = True, path: str = "/usr/bin:/bin") -> list[dict[str, Any]]:
        """Run requests through the firewall layer in the host namespace; path: its PATH (a folder of
        fake tools first on it simulates a failing iptables/nft)."""
        res = sh(["ip", "netns", "exec", self.host, PY, "-m", "cni_ignite.firewall"],
                 input=json.dumps(list(reqs)).encode(), check=False, env={**os.environ, "PATH": path})
        out = [json.loads(line) for line in res.stdout.decode().splitlines()]
        if check:
            assert all("error" not in o for o in out), (out, res.stderr.decode())
        return out

    def conf(self, backend: str, **extra: Any) -> dict[str, Any]:
        return {"backend": backend, "ipMasq": True, "stateDir": self.state_dir, **extra}

    def req(self, verb: str, conf: dict[str, Any], cid: str = "c1", addrs: tuple[str, ...] = ("10.99.0.2/24",),
            network: str = "net1", **extra: Any) -> dict[str, Any]:
        return {"verb": verb, "conf": conf, "network": network, "containerID": cid, "ifname": "eth0",
                "addresses": list(addrs), "hostIface": "br0", **extra}

    def add(self, conf: dict[str, Any], cid: str = "c1", addrs: tuple[str, ...] = ("10.99.0.2/24",),
            network: str = "net1") -> dict[str, Any]:
        out = self.fw(self.req("add", conf, cid, addrs, network))[0]
        for iface in out["routeLocalnet"]:  # the caller's job: write the sysctl the firewall asks for
            in_ns(self.host, ["sysctl", "-qw", f"net.ipv4.conf.{iface}.route_localnet=1"])
        return out

    # -------------------------------------------------------------------------------------- traffic
    def serve(self, ns: str, proto: str, port: int) -> None:
        p = subprocess.Popen(["ip", "netns", "exec", ns, PY, "-u", "-c", TCP_SERVER if proto == "tcp" else UDP_SERVER,
                              str(port)], stdout=subprocess.PIPE, stderr=subprocess.DEVNULL)
        self.procs.append(p)
        assert p.stdout is not None and p.stdout.readline().strip() == b"ready"

    def reach(self, ns: str, proto: str, addr: str, port: int) -> str | None:
        """The peer address the server saw, or None when the connection failed."""
        res = in_ns(ns, [PY, "-c", TCP_CLIENT if proto == "tcp" else UDP_CLIENT, addr, str(port)], check=False,
                    timeout=10)
        out = res.stdout.decode().strip()
        return out.removeprefix("peer=") if res.returncode == 0 and out.startswith("peer=") else None

    def stop(self) -> None:
        for p in self.procs:
            p.kill()
            p.wait()
            if p.stdout is not None:
                p.stdout.close()
        self.procs.clear()

    # ----------------------------------------------------------------------------------- snapshots
    def ruleset(self) -> str:
        out = []
        for tool in ("iptables-save", "ip6tables-save"):
            text = in_ns(self.host, [tool]).stdout.decode()
            out += [line.split(" [")[0] for line in text.splitlines() if not line.startswith("#")]
        nft = in_ns(self.host, ["nft", "list", "ruleset"]).stdout.decode()
        out += re.sub(r"counter packets \d+ bytes \d+", "counter", nft).splitlines()
        return "\n".join(out)
