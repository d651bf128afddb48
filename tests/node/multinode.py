"""A throwaway multi-host cluster: an underlay bridge in its own namespace, etcd in another, and "hosts" (one
namespace each, per-host state folders) that run the node agent; containers get our ignite-bridge plugin with
an ipam range from the host's subnet file. Nothing here touches the root namespace or the machine's CNI folders.
"""

from __future__ import annotations

import contextlib
import json
import signal
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from cnirun import call, source_bin_dir
from nsutil import in_ns, path, sh

from cni_ignite.node.subnetfile import SubnetFile, read_subnet_file

if TYPE_CHECKING:
    from collections.abc import Callable

    from nsutil import Namespaces

UNDERLAY = "192.168.61"
ETCD_ADDR = f"{UNDERLAY}.2"
PREFIX = "/coreos.com/network"
HAND_MADE_MAC = "02:00:00:00:00:"
OUTSIDE_ADDR = f"{UNDERLAY}.100"
MULTINODE_CONFLIST = Path(__file__).resolve().parents[2] / "conf" / "30-ignite-multinode.conflist"


def wait_until(what: str, check: Callable[[], Any], timeout: float = 15.0, interval: float = 0.1) -> Any:
    deadline = time.monotonic() + timeout
    while True:
        value = check()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout} s waiting for {what}")
        time.sleep(interval)


def _stop(proc: subprocess.Popen[bytes] | None, sig: int = signal.SIGTERM, timeout: float = 10) -> int | None:
    """Stop a process we started, by its PID only."""
    if proc is None or proc.poll() is not None:
        return None if proc is None else proc.returncode
    proc.send_signal(sig)
    try:
        return proc.wait(timeout)
    except subprocess.TimeoutExpired:
        proc.kill()
        return proc.wait(5)


@dataclass
class Pki:
    """A throwaway CA, an etcd server certificate for ETCD_ADDR and a client certificate (openssl)."""

    folder: Path

    def __post_init__(self) -> None:
        f = self.folder
        f.mkdir(parents=True, exist_ok=True)
        ssl = ["openssl"]
        sh([*ssl, "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1", "-subj", "/CN=cnit-ca",
            "-keyout", str(f / "ca.key"), "-out", str(self.ca)])
        # clientAuth too: etcd 3.4's JSON gateway dials etcd's own gRPC port with the server certificate.
        for name, ext in (("server", f"subjectAltName=IP:{ETCD_ADDR}\nextendedKeyUsage=serverAuth,clientAuth"),
                          ("client", "extendedKeyUsage=clientAuth")):
            sh([*ssl, "req", "-newkey", "rsa:2048", "-nodes", "-subj", f"/CN=cnit-{name}",
                "-keyout", str(f / f"{name}.key"), "-out", str(f / f"{name}.csr")])
            (f / f"{name}.ext").write_text(ext + "\n")
            sh([*ssl, "x509", "-req", "-in", str(f / f"{name}.csr"), "-CA", str(self.ca), "-CAkey", str(f / "ca.key"),
                "-CAcreateserial", "-days", "1", "-extfile", str(f / f"{name}.ext"), "-out", str(f / f"{name}.crt")])

    @property
    def ca(self) -> Path:
        return self.folder / "ca.crt"

    @property
    def server_cert(self) -> Path:
        return self.folder / "server.crt"

    @property
    def server_key(self) -> Path:
        return self.folder / "server.key"

    @property
    def client_cert(self) -> Path:
        return self.folder / "client.crt"

    @property
    def client_key(self) -> Path:
        return self.folder / "client.key"


@dataclass
class EtcdServer:
    ns: str
    data_dir: Path
    log: Path
    url: str = f"http://{ETCD_ADDR}:2379"
    proc: subprocess.Popen[bytes] | None = None
    tls: Pki | None = None

    def use_tls(self, pki: Pki) -> None:
        """Serve https with client-certificate auth (call before start)."""
        self.tls = pki
        self.url = f"https://{ETCD_ADDR}:2379"

    def start(self) -> None:
        tls: list[str] = []
        if self.tls is not None:
            tls = ["--cert-file", str(self.tls.server_cert), "--key-file", str(self.tls.server_key),
                   "--trusted-ca-file", str(self.tls.ca), "--client-cert-auth"]
        argv = ["ip", "netns", "exec", self.ns, "etcd", "--name", "n1", "--data-dir", str(self.data_dir), *tls,
                "--listen-client-urls", self.url, "--advertise-client-urls", self.url,
                "--listen-peer-urls", f"http://{ETCD_ADDR}:2380",
                "--initial-advertise-peer-urls", f"http://{ETCD_ADDR}:2380",
                "--initial-cluster", f"n1=http://{ETCD_ADDR}:2380", "--log-level", "warn", "--logger", "zap"]
        with self.log.open("ab") as out:
            self.proc = subprocess.Popen(argv, stdout=out, stderr=subprocess.STDOUT)
        wait_until("etcd to answer", lambda: self.ctl("endpoint", "health", check=False).returncode == 0, 20, 0.2)

    def stop(self) -> None:
        _stop(self.proc)
        self.proc = None

    def ctl(self, *args: str, check: bool = True) -> subprocess.CompletedProcess[bytes]:
        tls = [] if self.tls is None else [f"--cacert={self.tls.ca}", f"--cert={self.tls.client_cert}",
                                           f"--key={self.tls.client_key}"]
        return in_ns(self.ns, ["etcdctl", f"--endpoints={self.url}", "--dial-timeout=2s", *tls, *args], check=check,
                     env={"ETCDCTL_API": "3", "PATH": "/usr/sbin:/usr/bin:/sbin:/bin"})

    def get_prefix(self, prefix: str = PREFIX) -> dict[str, str]:
        lines = self.ctl("get", "--prefix", prefix).stdout.decode().splitlines()
        return dict(zip(lines[::2], lines[1::2], strict=True))

    def subnets(self) -> dict[str, dict[str, Any]]:
        return {k.rsplit("/", 1)[1]: json.loads(v) for k, v in self.get_prefix(f"{PREFIX}/subnets/").items()}


@dataclass
class Host:
    cluster: Cluster
    name: str
    ns: str
    ip: str
    state: Path
    proc: subprocess.Popen[bytes] | None = None
    containers: list[str] = field(default_factory=list)

    @property
    def subnet_file(self) -> Path:
        return self.state / "subnet.env"

    @property
    def log(self) -> Path:
        return self.state / "agent.log"

    def start_agent(self, *extra: str, ttl: int | None = None) -> None:
        argv = ["ip", "netns", "exec", self.ns, sys.executable, "-m", "cni_ignite.node",
                "--etcd-endpoints", self.cluster.etcd.url, "--iface", "eth0", "--subnet-file", str(self.subnet_file),
                "--backend", self.cluster.backend, "--subnet-ttl", str(ttl or self.cluster.ttl), "--log-level", "debug",
                *extra]
        with self.log.open("ab") as out:
            self.proc = subprocess.Popen(argv, stdout=out, stderr=subprocess.STDOUT)

    def stop_agent(self, sig: int = signal.SIGTERM) -> int | None:
        rc = _stop(self.proc, sig)
        self.proc = None
        return rc

    def wait_subnet(self, timeout: float = 15) -> SubnetFile:
        return wait_until(f"{self.name}'s subnet file", lambda: read_subnet_file(str(self.subnet_file)), timeout)  # type: ignore[no-any-return]

    def sh(self, *argv: str, check: bool = True) -> str:
        return in_ns(self.ns, argv, check=check).stdout.decode()

    def routes(self) -> dict[str, dict[str, Any]]:
        """Our routes (protocol 61) by destination."""
        return {r["dst"]: r for r in json.loads(self.sh("ip", "-j", "route", "show", "proto", "61") or "[]")}

    def neighbours(self, dev: str = "flannel.1") -> dict[str, str]:
        """Our neighbour entries (protocol 61) on the VXLAN device."""
        out = self.sh("ip", "-j", "neigh", "show", "dev", dev, "nud", "permanent", "proto", "61", check=False) or "[]"
        return {n["dst"]: n.get("lladdr", "") for n in json.loads(out)}

    def fdb(self, dev: str = "flannel.1") -> dict[str, str]:
        """FDB entries with a remote on the VXLAN device, less those a test made by hand (02:00:00:00:00:xx)."""
        out = self.sh("bridge", "-j", "fdb", "show", "dev", dev, check=False) or "[]"
        return {f["mac"]: f.get("dst", "") for f in json.loads(out)
                if f.get("dst") and not f["mac"].startswith(HAND_MADE_MAC)}

    def network_conf(self, **overrides: Any) -> dict[str, Any]:
        """The shipped multi-node network (conf/30-ignite-multinode.conflist) as one plugin config for this host:
        ipam.subnetFile = this host's subnet file; dataDir and stateDir in the host's temp folder."""
        doc = json.loads(MULTINODE_CONFLIST.read_text())
        conf = {"cniVersion": doc["cniVersion"], "name": doc["name"], **doc["plugins"][0]}
        conf.pop("capabilities", None)
        conf["stateDir"] = str(self.state / "cni-state")
        conf["ipam"] = {**conf["ipam"], "subnetFile": str(self.subnet_file), "dataDir": str(self.state / "ipam")}
        conf.update(overrides)
        return conf

    def add_container(self, **overrides: Any) -> tuple[str, str]:
        """A container namespace attached by our ignite-bridge with the shipped multi-node network."""
        self.wait_subnet()
        ctr = self.cluster.spaces.new("cnit-ctr")
        self.containers.append(ctr)
        bindir = source_bin_dir()
        res = call(bindir / "ignite-bridge", "ADD", self.network_conf(**overrides), host_ns=self.ns,
                   container_id=f"{ctr}-id",
                   netns=path(ctr), cni_path=str(bindir)).ok()
        assert res.out is not None
        return ctr, res.out["ips"][0]["address"].split("/")[0]


@dataclass
class Cluster:
    spaces: Namespaces
    tmp: Path
    backend: str = "vxlan"
    ttl: int = 60
    hosts: list[Host] = field(default_factory=list)
    underlay: str = ""
    etcd: EtcdServer = field(init=False)

    def __post_init__(self) -> None:
        self.underlay = self.spaces.new("cnit-ul")
        in_ns(self.underlay, ["ip", "link", "add", "br0", "type", "bridge"])
        in_ns(self.underlay, ["ip", "link", "set", "br0", "up"])
        etcd_ns = self._attach("etcd", ETCD_ADDR)
        (self.tmp / "etcd").mkdir()
        self.etcd = EtcdServer(etcd_ns, self.tmp / "etcd" / "data", self.tmp / "etcd" / "etcd.log")

    def _attach(self, name: str, addr: str) -> str:
        ns = self.spaces.new(f"cnit-{name}")
        port = f"p-{ns[-8:]}"
        in_ns(self.underlay, ["ip", "link", "add", port, "type", "veth", "peer", "name", "eth0", "netns", ns])
        in_ns(self.underlay, ["ip", "link", "set", port, "master", "br0", "up"])
        in_ns(ns, ["ip", "addr", "add", f"{addr}/24", "dev", "eth0"])
        in_ns(ns, ["ip", "link", "set", "eth0", "up"])
        return ns

    def add_host(self) -> Host:
        i = len(self.hosts) + 1
        name = f"host{i}"
        ns = self._attach(name, f"{UNDERLAY}.{10 + i}")
        in_ns(ns, ["sysctl", "-qw", "net.ipv4.ip_forward=1"])
        state = self.tmp / name
        state.mkdir()
        host = Host(self, name, ns, f"{UNDERLAY}.{10 + i}", state)
        self.hosts.append(host)
        return host

    def add_outside(self) -> str:
        """A computer outside the network on the underlay (OUTSIDE_ADDR), with no route to the network."""
        return self._attach("out", OUTSIDE_ADDR)

    def stop(self) -> None:
        for host in self.hosts:
            host.stop_agent(signal.SIGKILL)
        self.etcd.stop()

    def logs(self) -> str:
        parts = []
        for host in self.hosts:
            with contextlib.suppress(OSError):
                parts.append(f"--- {host.name} ({host.ip}) agent log ---\n{host.log.read_text()[-6000:]}")
        with contextlib.suppress(OSError):
            parts.append(f"--- etcd log ---\n{self.etcd.log.read_text()[-3000:]}")
        return "\n".join(parts)


def ping(ns: str, target: str, count: int = 1, wait: float = 2) -> bool:
    return in_ns(ns, ["ping", "-c", str(count), "-W", str(wait), "-i", "0.2", target], check=False).returncode == 0


def tcp_roundtrip(client_ns: str, server_ns: str, server_ip: str, port: int = 7070,
                  via: tuple[str, int] | None = None) -> str:
    """Run a one-shot TCP echo server in server_ns and send a line from client_ns (to `via`, a mapped host port,
    when given); returns what came back."""
    server = subprocess.Popen(["ip", "netns", "exec", server_ns, sys.executable, "-c", _ECHO, server_ip, str(port)],
                              stdout=subprocess.PIPE, stderr=subprocess.DEVNULL)
    try:
        assert server.stdout is not None
        assert server.stdout.readline().strip() == b"ready"
        dst, dport = via or (server_ip, port)
        out = in_ns(client_ns, [sys.executable, "-c", _SEND, dst, str(dport)], timeout=15).stdout.decode()
        return out.strip()
    finally:
        _stop(server, signal.SIGKILL)
        if server.stdout is not None:
            server.stdout.close()


_ECHO = """
import socket, sys
s = socket.socket(); s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
s.bind((sys.argv[1], int(sys.argv[2]))); s.listen(1); print("ready", flush=True)
c, peer = s.accept(); data = c.recv(65536)
c.sendall(b"echo from " + sys.argv[1].encode() + b" to " + peer[0].encode() + b": " + data); c.close()
"""
_SEND = """
import socket, sys
c = socket.create_connection((sys.argv[1], int(sys.argv[2])), timeout=10); c.sendall(b"x" * 3000)
data = b""
while chunk := c.recv(65536):
    data += chunk
print(data[:60].decode(), len(data))
"""
