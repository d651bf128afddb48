"""Servers and clients for port-mapping tests, each bounded in time and run inside a namespace."""

from __future__ import annotations

import subprocess
import sys
import time

from nsutil import in_ns

TCP_SERVER = """
import socket, sys, time
s = socket.socket(socket.AF_INET6 if ':' in sys.argv[1] else socket.AF_INET, socket.SOCK_STREAM)
s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
s.bind((sys.argv[1], int(sys.argv[2]))); s.listen(16); s.settimeout(0.5)
print('ready', flush=True)
end = time.monotonic() + float(sys.argv[3])
while time.monotonic() < end:
    try:
        c, peer = s.accept()
    except socket.timeout:
        continue
    c.sendall(f'{sys.argv[4]} peer={peer[0]}\\n'.encode()); c.close()
"""

UDP_ECHO = """
import socket, sys, time
s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
s.bind((sys.argv[1], int(sys.argv[2]))); s.settimeout(0.5)
print('ready', flush=True)
end = time.monotonic() + float(sys.argv[3])
while time.monotonic() < end:
    try:
        data, peer = s.recvfrom(2048)
    except socket.timeout:
        continue
    s.sendto(b'echo:' + data, peer)
"""

CLIENT = """
import socket, sys
fam = socket.AF_INET6 if ':' in sys.argv[2] else socket.AF_INET
if sys.argv[1] == 'tcp':
    c = socket.create_connection((sys.argv[2], int(sys.argv[3])), timeout=3)
    print(c.recv(200).decode().strip())
else:
    c = socket.socket(fam, socket.SOCK_DGRAM); c.settimeout(3)
    c.sendto(b'ping', (sys.argv[2], int(sys.argv[3]))); print(c.recvfrom(200)[0].decode())
"""


def serve(ns: str, kind: str, addr: str, port: int, tag: str = "hello", seconds: float = 30) -> subprocess.Popen[str]:
    code = TCP_SERVER if kind == "tcp" else UDP_ECHO
    proc = subprocess.Popen(["ip", "netns", "exec", ns, sys.executable, "-c", code, addr, str(port), str(seconds), tag],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    assert proc.stdout is not None
    line = proc.stdout.readline()
    assert line.strip() == "ready", (proc.stderr.read() if proc.stderr else "")
    return proc


def stop(proc: subprocess.Popen[str]) -> None:
    proc.kill()
    proc.communicate()


def connect(ns: str, kind: str, addr: str, port: int) -> str:
    """The server's answer, or '' when the connection fails."""
    res = in_ns(ns, [sys.executable, "-c", CLIENT, kind, addr, str(port)], check=False, timeout=10)
    return res.stdout.decode().strip() if res.returncode == 0 else ""


def wire_outside(host: str, outside: str) -> None:
    """An "outside" namespace on 192.0.2.0/24 behind the host namespace (which routes for it)."""
    subprocess.run(["ip", "link", "add", "out-h", "netns", host, "type", "veth", "peer", "name", "out-o",
                    "netns", outside], check=True)
    for ns, dev, addr in ((host, "out-h", "192.0.2.1/24"), (outside, "out-o", "192.0.2.2/24")):
        in_ns(ns, ["ip", "addr", "add", addr, "dev", dev])
        in_ns(ns, ["ip", "link", "set", dev, "up"])
    in_ns(host, ["sysctl", "-qw", "net.ipv4.ip_forward=1"])
    time.sleep(0.05)
