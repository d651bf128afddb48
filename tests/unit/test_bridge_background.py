"""bridge/background.py's pure part: which links an rtnetlink buffer announces deleted (generic RTM_DELLINK
only: the bridge's own AF_BRIDGE announcement comes before the port's rx handler is gone)."""

from __future__ import annotations

import struct

from cni_ignite.bridge.background import RTM_DELLINK, deleted_names

RTM_NEWLINK = 16
AF_BRIDGE = 7


def _attr(kind: int, payload: bytes) -> bytes:
    raw = struct.pack("=HH", 4 + len(payload), kind) + payload
    return raw + b"\0" * (-len(raw) % 4)


def _msg(mtype: int, name: str, family: int = 0) -> bytes:
    body = struct.pack("=BxHiII", family, 1, 7, 0, 0) + _attr(4, struct.pack("=I", 1500))
    body += _attr(3, name.encode() + b"\0")
    return struct.pack("=IHHII", 16 + len(body), mtype, 0, 0, 0) + body


def test_generic_dellink_names_are_found_in_a_buffer_of_several_messages() -> None:
    data = _msg(RTM_NEWLINK, "other") + _msg(RTM_DELLINK, "vethA", AF_BRIDGE) + _msg(RTM_DELLINK, "vethA") \
        + _msg(RTM_DELLINK, "vethB")
    assert deleted_names(data) == ["vethA", "vethB"]


def test_the_bridge_announcement_and_new_links_do_not_count() -> None:
    assert deleted_names(_msg(RTM_DELLINK, "vethA", AF_BRIDGE) + _msg(RTM_NEWLINK, "vethA")) == []


def test_truncated_or_broken_buffers_end_the_scan() -> None:
    whole = _msg(RTM_DELLINK, "vethA")
    assert deleted_names(whole[:-3]) == []
    assert deleted_names(b"") == []
    assert deleted_names(struct.pack("=IHHII", 4, RTM_DELLINK, 0, 0, 0) + whole) == []  # a length below the header


def test_the_announcement_filter_is_eight_bpf_instructions_ending_in_accept_and_drop() -> None:
    from cni_ignite.bridge.background import announcement_filter

    prog = announcement_filter(42)
    insns = [struct.unpack_from("=HBBI", prog, off) for off in range(0, len(prog), 8)]
    assert len(insns) == 8 and insns[-2] == (0x06, 0, 0, 0x40000) and insns[-1] == (0x06, 0, 0, 0)
    # each test jumps to the drop at its false branch
    assert [i + 1 + jf for i, (code, _, jf, _) in enumerate(insns) if code == 0x15] == [7, 7, 7]
    assert insns[5][3] == int.from_bytes(struct.pack("=i", 42), "big")
