"""The worker's request parsing (cni_ignite/worker.py): the bytes the launcher (packaging/launcher.c) sends."""

from __future__ import annotations

import os

import pytest

from cni_ignite.worker import ProtocolError, build_id_at, parse_request


def body(*fields: bytes) -> bytes:
    return b"".join(f + b"\0" for f in fields)


def test_a_request_gives_build_name_umask_and_environment_as_sent() -> None:
    req = parse_request(body(b"abc123", b"ignite-bridge", b"22", b"CNI_COMMAND=ADD", b"CNI_ARGS=IP=10.0.0.1;X=a=b",
                             b"EMPTY="))
    assert (req.build_id, req.name, req.umask) == ("abc123", "ignite-bridge", 0o22)
    assert req.env == {"CNI_COMMAND": "ADD", "CNI_ARGS": "IP=10.0.0.1;X=a=b", "EMPTY": ""}


def test_hostile_environment_values_pass_through_unchanged() -> None:
    """Newlines, quotes and bytes that are not UTF-8 reach the plugin as the runtime sent them (os.environ's own
    surrogateescape round trip), and entries without '=' are skipped as the C library's environ would."""
    raw = b"X=line1\nline2\"'\xff\xfe"
    req = parse_request(body(b"b", b"ignite-ipam", b"77", raw, b"NOEQUALS", b"=novalue"))
    assert list(req.env) == ["X"]
    assert os.fsencode(req.env["X"]) == raw[2:]
    assert req.umask == 0o77


@pytest.mark.parametrize("data", [
    b"", b"b\0n\0", b"b\0n\022", body(b"b", b"n", b"8"), body(b"b", b"n", b"-1"), body(b"b", b"n", b"1000"),
    body(b"b\xff", b"n", b"22"), body(b"b", b"n\xff", b"22"), body(b"b", b"n", b"0x1"),
])
def test_malformed_requests_are_refused(data: bytes) -> None:
    with pytest.raises(ProtocolError):
        parse_request(data)


def test_the_build_id_is_read_from_the_bundle_a_path_names_now(tmp_path) -> None:  # type: ignore[no-untyped-def]
    for gen, bid in (("gen-a", "aaa"), ("gen-b", "bbb")):
        (tmp_path / gen / "_internal").mkdir(parents=True)
        (tmp_path / gen / "_internal" / "cni-ignite.build-id").write_text(bid + "\n")
        (tmp_path / gen / "cni-ignite").write_text("")
    (tmp_path / "current").symlink_to("gen-a")
    exe = str(tmp_path / "current" / "cni-ignite")
    assert build_id_at(exe) == "aaa"
    (tmp_path / "next").symlink_to("gen-b")
    os.replace(tmp_path / "next", tmp_path / "current")
    assert build_id_at(exe) == "bbb"
    assert build_id_at(str(tmp_path / "nowhere" / "cni-ignite")) is None


def test_of_a_name_given_twice_the_first_counts_as_for_an_exec_d_plugin() -> None:
    """execve passes duplicates through; getenv(3) and Python's os.environ both take the first."""
    req = parse_request(body(b"b", b"ignite-bridge", b"22", b"CNI_COMMAND=DEL", b"CNI_COMMAND=ADD"))
    assert req.env == {"CNI_COMMAND": "DEL"}
