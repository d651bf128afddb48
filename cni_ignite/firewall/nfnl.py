"""nf_tables over netlink, in-process: the list of tables (``NFT_MSG_GETTABLE`` dump), for the backend
choice of an ADD (``core.choose_backend``), instead of exec'ing ``nft list tables`` (~3 ms of CPU and a
process start on every ADD of a network that has no attachment yet).

A dump reads; it starts no transaction, so closing the socket waits for no RCU grace period. The
message is built with struct like ``netlink/conntrack``'s (same socket, subsystem 10 instead of 1).
"""

from __future__ import annotations

import struct

NFNL_SUBSYS_NFTABLES = 10
NFT_MSG_GETTABLE = 1
NFTA_TABLE_NAME = 1
NFGEN = struct.Struct("=BBH")  # nfgenmsg: family, version, res_id (big endian)
HDR_SIZE = 16
# nfproto numbers as ``nft list tables`` names them
FAMILIES = {1: "inet", 2: "ip", 3: "arp", 5: "netdev", 7: "bridge", 10: "ip6"}


def parse_tables(parts: list[bytes]) -> list[str]:
    """``table <family> <name>`` of each NFT_MSG_NEWTABLE message of a GETTABLE dump (whole messages)."""
    from ..netlink._nl import iter_nla

    out = []
    for msg in parts:
        family = msg[HDR_SIZE]
        for kind, payload in iter_nla(msg, HDR_SIZE + NFGEN.size):
            if kind == NFTA_TABLE_NAME:
                name = bytes(payload).split(b"\0", 1)[0].decode(errors="replace")
                out.append(f"table {FAMILIES.get(family, str(family))} {name}")
    return out


def list_tables() -> list[str]:
    """The current namespace's nf_tables tables as ``nft list tables`` prints them (without the
    handles). Raises OSError or a CniError when the kernel cannot answer."""
    from ..netlink._nl import NetlinkSocket
    from ..netlink.conntrack import open_netfilter_socket

    nl = NetlinkSocket(open_netfilter_socket())
    try:
        parts = nl.dump((NFNL_SUBSYS_NFTABLES << 8) | NFT_MSG_GETTABLE, NFGEN.pack(0, 0, 0),
                        what="nf_tables table dump")
    finally:
        nl.close()
    return parse_tables(parts)
