"""Crafted frames for the isolation guard's tests: pure builders, and a CLI that sends or counts them on an
interface through an AF_PACKET raw socket, meant to run inside a throwaway namespace:

    ip netns exec NS python attack.py send IFACE HEXFRAME [HEXFRAME ...]
    ip netns exec NS python attack.py sniff IFACE HEXMARKER SECONDS  prints "ready", then the count of
                                                                      received frames that carry the marker
    ip netns exec NS python attack.py sniff-eof IFACE HEXMARKER GRACE  the same, counting until its standard
                                                                      input closes, then GRACE seconds more
    ip netns exec NS python attack.py vlan-offload IFACE [rxvlan=on|off] [txvlan=on|off]
                                           sets the 802.1Q offloads (ethtool -K IFACE rxvlan/txvlan) and
                                           prints both as JSON
Nothing here touches the root namespace; the test runs both commands in its namespaces.
"""

from __future__ import annotations

import ipaddress
import select
import socket
import struct
import sys
import time
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from collections.abc import Callable

ETH_P_ALL = 0x0003
ETH_IP, ETH_ARP, ETH_IP6, ETH_VLAN = 0x0800, 0x0806, 0x86DD, 0x8100
ETH_QINQ = 0x88A8  # 802.1ad service tag
BROADCAST = "ff:ff:ff:ff:ff:ff"

# The guard tests' lab on one bridge (test_guard_attacks, test_guard_vlan): gateway, attacker A, victim B.
GW_MAC, A_MAC, B_MAC = "02:61:00:00:00:01", "02:61:00:00:00:02", "02:61:00:00:00:03"
GW, A, B = "10.61.0.1", "10.61.0.2", "10.61.0.3"
GW6, A6, B6 = "fd00:61::1", "fd00:61::2", "fd00:61::3"
A_LL = "fe80::61:ff:fe00:2"  # A's EUI-64 link-local (allowed by the guard)
EVIL_MAC = "02:66:66:66:66:66"


def count_while(ns: str, listener: list[str], act: Callable[[], object], timeout: float = 10) -> int:
    """Run `listener` in netns `ns` (a command that prints "ready", then a count: ``attack.py sniff ...`` or a
    socket reader), call `act` once it is ready, and return the count it printed. For the tests (the process
    is stopped by its PID whatever happens)."""
    import subprocess  # the tests' side only: the sending and sniffing CLI below needs none of it

    proc = subprocess.Popen(["ip", "netns", "exec", ns, *listener], stdout=subprocess.PIPE, text=True)
    try:
        assert proc.stdout is not None and proc.stdout.readline().strip() == "ready"
        act()
        out, _ = proc.communicate(timeout=timeout)
        return int(out.strip())
    finally:
        if proc.poll() is None:
            proc.kill()
        proc.communicate()


def count_around(ns: str, iface: str, marker: bytes, act: Callable[[], object], grace: float = 0.3) -> int:
    """How many received frames carrying `marker` arrive on `iface` in netns `ns` from just before `act` runs
    until `grace` seconds after it returned (``sniff-eof``): unlike a fixed window (``count_while`` with
    ``sniff``), a slow start of the sender under load cannot push its frames past the count."""
    import subprocess

    proc = subprocess.Popen(["ip", "netns", "exec", ns, sys.executable, __file__, "sniff-eof", iface, marker.hex(),
                             str(grace)], stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    try:
        assert proc.stdout is not None and proc.stdout.readline().strip() == "ready"
        act()
        out, _ = proc.communicate(input="", timeout=30)
        return int(out.strip())
    finally:
        if proc.poll() is None:
            proc.kill()
        proc.communicate()


def mac_bytes(mac: str) -> bytes:
    return bytes.fromhex(mac.replace(":", ""))


def eth(dst: str, src: str, ethertype: int, payload: bytes, vlan: int | None = None) -> bytes:
    tag = struct.pack("!HH", ETH_VLAN, vlan) if vlan is not None else b""
    frame = mac_bytes(dst) + mac_bytes(src) + tag + struct.pack("!H", ethertype) + payload
    return frame + bytes(max(0, 60 - len(frame)))


def tagged(frame: bytes, vid: int, tpid: int = ETH_VLAN) -> bytes:
    """`frame` with one more VLAN tag (TPID `tpid`, VID `vid`) right after the MACs, outside any it has:
    ``tagged(tagged(f, 200), 100)`` is QinQ with outer VID 100, ``tagged(f, 100, ETH_QINQ)`` an 802.1ad frame."""
    return frame[:12] + struct.pack("!HH", tpid, vid) + frame[12:]


def arp(op: int, sha: str, spa: str, tha: str, tpa: str) -> bytes:
    """ARP for Ethernet/IPv4; op 1 request, 2 reply."""
    return (struct.pack("!HHBBH", 1, ETH_IP, 6, 4, op) + mac_bytes(sha) + ipaddress.IPv4Address(spa).packed
            + mac_bytes(tha) + ipaddress.IPv4Address(tpa).packed)


def _csum(data: bytes) -> int:
    if len(data) % 2:
        data += b"\0"
    s = sum(struct.unpack(f"!{len(data) // 2}H", data))
    while s >> 16:
        s = (s & 0xFFFF) + (s >> 16)
    return ~s & 0xFFFF


def ipv4(src: str, dst: str, proto: int, payload: bytes, ttl: int = 64) -> bytes:
    hdr = struct.pack("!BBHHHBBH4s4s", 0x45, 0, 20 + len(payload), 0x1234, 0, ttl, proto, 0,
                      ipaddress.IPv4Address(src).packed, ipaddress.IPv4Address(dst).packed)
    return hdr[:10] + struct.pack("!H", _csum(hdr)) + hdr[12:] + payload


def udp4(src: str, dst: str, sport: int, dport: int, payload: bytes) -> bytes:
    seg = struct.pack("!HHHH", sport, dport, 8 + len(payload), 0) + payload  # checksum 0: none (IPv4)
    return ipv4(src, dst, 17, seg)


def ipv6(src: str, dst: str, next_header: int, payload: bytes, hop_limit: int = 255) -> bytes:
    return (struct.pack("!IHBB", 6 << 28, len(payload), next_header, hop_limit)
            + ipaddress.IPv6Address(src).packed + ipaddress.IPv6Address(dst).packed + payload)


def _l4_csum6(src: str, dst: str, proto: int, body: bytes) -> int:
    pseudo = (ipaddress.IPv6Address(src).packed + ipaddress.IPv6Address(dst).packed
              + struct.pack("!IxxxB", len(body), proto))
    return _csum(pseudo + body)


def icmp6(src: str, dst: str, icmp_type: int, code: int, body: bytes) -> bytes:
    msg = struct.pack("!BBH", icmp_type, code, 0) + body
    c = _l4_csum6(src, dst, 58, msg)
    return ipv6(src, dst, 58, msg[:2] + struct.pack("!H", c) + msg[4:])


def udp6(src: str, dst: str, sport: int, dport: int, payload: bytes) -> bytes:
    seg = struct.pack("!HHHH", sport, dport, 8 + len(payload), 0) + payload
    c = _l4_csum6(src, dst, 17, seg)
    return ipv6(src, dst, 17, seg[:6] + struct.pack("!H", c) + seg[8:], hop_limit=64)


def neighbor_advert(src: str, dst: str, target: str, mac: str, *, override: bool = True) -> bytes:
    flags = 0x20000000 if override else 0
    body = struct.pack("!I", flags) + ipaddress.IPv6Address(target).packed + bytes((2, 1)) + mac_bytes(mac)
    return icmp6(src, dst, 136, 0, body)


def neighbor_solicit(src: str, dst: str, target: str, mac: str | None) -> bytes:
    opt = bytes((1, 1)) + mac_bytes(mac) if mac else b""
    return icmp6(src, dst, 135, 0, bytes(4) + ipaddress.IPv6Address(target).packed + opt)


def router_advert(src: str, mac: str, prefix: str, lifetime: int = 1800) -> bytes:
    body = struct.pack("!BBHII", 64, 0, lifetime, 0, 0)
    body += bytes((1, 1)) + mac_bytes(mac)  # source link-layer address
    net = ipaddress.IPv6Network(prefix)
    body += struct.pack("!BBBBIII", 3, 4, net.prefixlen, 0xC0, 86400, 14400, 0) + net.network_address.packed
    return icmp6(src, "ff02::1", 134, 0, body)


def bootp(op: int, mac: str, marker: bytes, yiaddr: str = "0.0.0.0", msg_type: int = 1) -> bytes:
    """A BOOTP/DHCP message (op 1 request, 2 reply) with a DHCP message type and `marker` in sname."""
    sname = marker.ljust(64, b"\0")[:64]
    fixed = struct.pack("!BBBBIHH4s4s4s4s16s64s128s", op, 1, 6, 0, 0x1234ABCD, 0, 0x8000, bytes(4),
                        ipaddress.IPv4Address(yiaddr).packed, bytes(4), bytes(4),
                        mac_bytes(mac).ljust(16, b"\0"), sname, bytes(128))
    return fixed + b"\x63\x82\x53\x63" + bytes((53, 1, msg_type, 255))


# ------------------------------------------------------------------------------------------ the CLI

def send(iface: str, frames: list[bytes]) -> None:
    with socket.socket(socket.AF_PACKET, socket.SOCK_RAW, socket.htons(ETH_P_ALL)) as s:
        s.bind((iface, 0))
        for frame in frames:
            s.send(frame)


def sniff(iface: str, marker: bytes, seconds: float) -> int:
    with socket.socket(socket.AF_PACKET, socket.SOCK_RAW, socket.htons(ETH_P_ALL)) as s:
        s.bind((iface, 0))
        print("ready", flush=True)
        seen = 0
        deadline = time.monotonic() + seconds
        while (left := deadline - time.monotonic()) > 0:
            if select.select([s], [], [], left)[0]:
                data, addr = s.recvfrom(65536)
                if addr[2] != socket.PACKET_OUTGOING and marker in data:
                    seen += 1
        return seen


SIOCETHTOOL, ETHTOOL_GFLAGS, ETHTOOL_SFLAGS = 0x8946, 0x25, 0x26
VLAN_FLAGS = {"txvlan": 1 << 7, "rxvlan": 1 << 8}  # ETH_FLAG_TXVLAN / ETH_FLAG_RXVLAN (linux/ethtool.h)


def vlan_offload(iface: str, want: dict[str, bool]) -> dict[str, bool]:
    """Set the interface's 802.1Q receive/transmit offloads (``rxvlan``/``txvlan``, as ``ethtool -K``) through
    the legacy ETHTOOL_SFLAGS ioctl (no ethtool binary needed); returns both as they are afterwards."""
    import array
    import fcntl

    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        def call(cmd: int, data: int = 0) -> int:
            buf = array.array("I", [cmd, data])
            fcntl.ioctl(s, SIOCETHTOOL, struct.pack("16sP16x", iface.encode(), buf.buffer_info()[0]))
            return buf[1]

        flags = call(ETHTOOL_GFLAGS)
        new = flags
        for name, on in want.items():
            new = new | VLAN_FLAGS[name] if on else new & ~VLAN_FLAGS[name]
        if new != flags:
            call(ETHTOOL_SFLAGS, new)
        got = call(ETHTOOL_GFLAGS)
    return {name: bool(got & bit) for name, bit in VLAN_FLAGS.items()}


def sniff_until_eof(iface: str, marker: bytes, grace: float) -> int:
    """``sniff`` until standard input reaches its end, then `grace` seconds more."""
    with socket.socket(socket.AF_PACKET, socket.SOCK_RAW, socket.htons(ETH_P_ALL)) as s:
        s.bind((iface, 0))
        print("ready", flush=True)
        seen, deadline, stdin = 0, float("inf"), sys.stdin.fileno()
        while (left := deadline - time.monotonic()) > 0:
            ready = select.select([s] if deadline < float("inf") else [s, stdin], [], [],
                                  None if left == float("inf") else left)[0]
            if stdin in ready and deadline == float("inf") and not sys.stdin.buffer.read1(4096):
                deadline = time.monotonic() + grace
            if s in ready:
                data, addr = s.recvfrom(65536)
                if addr[2] != socket.PACKET_OUTGOING and marker in data:
                    seen += 1
        return seen


def main(argv: list[str]) -> int:
    if argv[:1] == ["send"] and len(argv) >= 3:
        send(argv[1], [bytes.fromhex(h) for h in argv[2:]])
        return 0
    if argv[:1] == ["sniff"] and len(argv) == 4:
        print(sniff(argv[1], bytes.fromhex(argv[2]), float(argv[3])), flush=True)
        return 0
    if argv[:1] == ["sniff-eof"] and len(argv) == 4:
        print(sniff_until_eof(argv[1], bytes.fromhex(argv[2]), float(argv[3])), flush=True)
        return 0
    if argv[:1] == ["vlan-offload"] and len(argv) >= 2:
        import json

        pairs = [a.partition("=") for a in argv[2:]]
        if any(k not in VLAN_FLAGS or v not in ("on", "off") for k, _, v in pairs):
            print(__doc__, file=sys.stderr)
            return 2
        want = {k: v == "on" for k, _, v in pairs}
        print(json.dumps(vlan_offload(argv[1], want)), flush=True)
        return 0
    print(__doc__, file=sys.stderr)
    return 2


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
