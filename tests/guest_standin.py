"""A tiny stand-in for a microVM's network stack, attached to a TAP device like a VMM would.

    python guest_standin.py TAP MAC IP [SECONDS]

Run inside the container namespace. It opens TAP (IFF_TAP | IFF_NO_PI), answers ARP requests for IP
and ICMP echo requests to IP, both from MAC, and prints one line per answered frame to stdout. It exits
after SECONDS (default 20) — bounded, never a runaway process.
"""

from __future__ import annotations

import fcntl
import os
import select
import socket
import struct
import sys
import time

TUNSETIFF = 0x400454CA
IFF_TAP, IFF_NO_PI = 0x0002, 0x1000


def checksum(data: bytes) -> int:
    if len(data) % 2:
        data += b"\0"
    s = sum(struct.unpack(f"!{len(data) // 2}H", data))
    s = (s >> 16) + (s & 0xFFFF)
    s += s >> 16
    return ~s & 0xFFFF


def answer(frame: bytes, mac: bytes, ip: bytes) -> bytes | None:
    if len(frame) < 14:
        return None
    dst, src, ethertype = frame[:6], frame[6:12], struct.unpack("!H", frame[12:14])[0]
    if ethertype == 0x0806 and len(frame) >= 42:  # ARP
        op = struct.unpack("!H", frame[20:22])[0]
        sha, spa, tpa = frame[22:28], frame[28:32], frame[38:42]
        if op == 1 and tpa == ip:
            arp = struct.pack("!HHBBH", 1, 0x0800, 6, 4, 2) + mac + ip + sha + spa
            return src + mac + b"\x08\x06" + arp
    if ethertype == 0x0800 and dst in (mac,) and len(frame) >= 34:
        ihl = (frame[14] & 0x0F) * 4
        proto, s_ip, d_ip = frame[23], frame[26:30], frame[30:34]
        icmp = frame[14 + ihl:]
        if proto == 1 and d_ip == ip and icmp[:1] == b"\x08":
            body = b"\x00\x00" + b"\x00\x00" + icmp[4:]
            body = body[:2] + struct.pack("!H", checksum(body)) + body[4:]
            hdr = bytearray(frame[14:14 + ihl])
            hdr[12:16], hdr[16:20], hdr[10:12] = d_ip, s_ip, b"\0\0"
            hdr[10:12] = struct.pack("!H", checksum(bytes(hdr)))
            return src + mac + b"\x08\x00" + bytes(hdr) + body
    return None


def main() -> int:
    tap, mac_text, ip_text = sys.argv[1], sys.argv[2], sys.argv[3]
    seconds = float(sys.argv[4]) if len(sys.argv) > 4 else 20.0
    mac = bytes.fromhex(mac_text.replace(":", ""))
    ip = socket.inet_aton(ip_text)
    fd = os.open("/dev/net/tun", os.O_RDWR)
    fcntl.ioctl(fd, TUNSETIFF, struct.pack("16sH", tap.encode(), IFF_TAP | IFF_NO_PI))
    print(f"attached {tap} as {mac_text} {ip_text}", flush=True)
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        ready, _, _ = select.select([fd], [], [], 0.2)
        if not ready:
            continue
        frame = os.read(fd, 65536)
        reply = answer(frame, mac, ip)
        if reply is not None:
            os.write(fd, reply)
            kind = "arp" if reply[12:14] == b"\x08\x06" else "icmp"
            print(f"answered {kind}", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
