"""A scoped IPv6 address (``fd00:96::2%1``) or junk is never an IPAM address: not in the config, not in a
request, not in a result, not read back from disk. ``fd00:96::2%1`` would be a lease file distinct from
``fd00:96::2``, so accepting it leases one address twice."""

from __future__ import annotations

import json
from typing import TYPE_CHECKING, Any

import pytest
from ipamenv import Ipam

from cni_ignite.errors import DecodingFailure, InvalidConfig
from cni_ignite.ipam.config import parse_ipam
from cni_ignite.ipam.store import DiskStore, lease_name
from cni_ignite.netconf import parse_netconf
from cni_ignite.result import decode

if TYPE_CHECKING:
    from pathlib import Path

V6 = {"subnet": "fd00:96::/64"}


@pytest.fixture
def ipam(tmp_path: Path) -> Ipam:
    return Ipam(tmp_path / "data")


def cfg(ipam: dict[str, Any], cni_args: dict[str, str] | None = None, **top: Any) -> None:
    doc = {"cniVersion": "1.0.0", "name": "net1", "type": "ignite-ipam", "ipam": ipam, **top}
    parse_ipam(parse_netconf(json.dumps(doc).encode()), cni_args or {})


# ---------------------------------------------------------------------------- every input address

SCOPED_INPUT: list[tuple[str, dict[str, Any], dict[str, str], dict[str, Any]]] = [
    # (id, ipam, CNI_ARGS, top-level keys)
    ("subnet", {"subnet": "fd00:96::%1/64"}, {}, {}),
    ("rangeStart", {**V6, "rangeStart": "fd00:96::5%1"}, {}, {}),
    ("rangeEnd", {**V6, "rangeEnd": "fd00:96::9%eth0"}, {}, {}),
    ("gateway", {**V6, "gateway": "fd00:96::1%1"}, {}, {}),
    ("ranges subnet", {"ranges": [[{"subnet": "fd00:96::%1/64"}]]}, {}, {}),
    ("ranges gateway", {"ranges": [[{**V6, "gateway": "fd00:96::1%lo"}]]}, {}, {}),
    ("route dst", {**V6, "routes": [{"dst": "fd00:97::%1/64"}]}, {}, {}),
    ("route gw", {**V6, "routes": [{"dst": "::/0", "gw": "fd00:96::1%1"}]}, {}, {}),
    ("runtimeConfig.ips", V6, {}, {"runtimeConfig": {"ips": ["fd00:96::2%1"]}}),
    ("runtimeConfig.ips prefixed", V6, {}, {"runtimeConfig": {"ips": ["fd00:96::2%1/64"]}}),
    ("args.cni.ips", V6, {}, {"args": {"cni": {"ips": ["fd00:96::2%1"]}}}),
    ("CNI_ARGS IP", V6, {"IP": "fd00:96::2%1"}, {}),
    ("runtimeConfig.ipRanges subnet", {}, {}, {"runtimeConfig": {"ipRanges": [[{"subnet": "fd00:96::%1/64"}]]}}),
    ("runtimeConfig.ipRanges rangeStart", {}, {}, {"runtimeConfig": {"ipRanges": [[{**V6,
                                                                                     "rangeStart": "fd00:96::5%1"}]]}}),
    ("junk after the zone", {**V6, "gateway": "fd00:96::1%lo\nCOMMIT"}, {}, {}),
    ("junk in requested ip", V6, {}, {"runtimeConfig": {"ips": ["fd00:96::2 "]}}),
    ("requested ip prefix junk", V6, {}, {"runtimeConfig": {"ips": ["fd00:96::2/64x"]}}),
    ("CNI_ARGS IP bad prefix", {"subnet": "10.1.0.0/24"}, {"IP": "10.1.0.5/99"}, {}),
    ("requested ip not a string", V6, {}, {"runtimeConfig": {"ips": [42]}}),
    ("gateway not a string", {**V6, "gateway": 42}, {}, {}),
    ("route gw not a string", {**V6, "routes": [{"dst": "::/0", "gw": ["fd00:96::1"]}]}, {}, {}),
]


@pytest.mark.parametrize(("ipam", "cni_args", "top"), [c[1:] for c in SCOPED_INPUT], ids=[c[0] for c in SCOPED_INPUT])
def test_error_when_an_input_address_is_scoped_or_junk(ipam: dict[str, Any], cni_args: dict[str, str],
                                                       top: dict[str, Any]) -> None:
    with pytest.raises(InvalidConfig) as exc:
        cfg(ipam, cni_args, **top)
    assert exc.value.code == 7


def test_scoped_requested_address_does_not_lease_a_taken_address_twice(ipam: Ipam) -> None:
    conf = ipam.conf(V6)
    assert ipam("ADD", conf, cid="first").ips == ["fd00:96::2/64"]
    out = ipam("ADD", conf, cid="second", args="IP=fd00:96::2%1")
    assert out.code == 7  # as any other unparsable requested address (CNI_ARGS IP=garbage is 7 too)
    assert ipam.files() == {"fd00:96::2": b"first\r\neth0", "last_reserved_ip.0": b"fd00:96::2", "lock": b""}


@pytest.mark.parametrize("where", ["runtimeConfig", "args"])
def test_scoped_requested_address_from_the_config_is_refused(ipam: Ipam, where: str) -> None:
    top = ({"runtimeConfig": {"ips": ["fd00:96::5%1"]}} if where == "runtimeConfig"
           else {"args": {"cni": {"ips": ["fd00:96::5%1"]}}})
    assert ipam("ADD", ipam.conf(V6, **top)).code == 7
    assert not ipam.data_dir.exists()


# ------------------------------------------------------------------------------------ what is on disk

@pytest.mark.parametrize("name", ["fd00:96::2%1", "fd00:96::2%eth0", "FD00:96::2", "fd00:96:0::2", "10.1.0.2 ",
                                  "lock", "last_reserved_ip.0", "fd00:96::2.tmp"])
def test_a_lease_name_that_is_not_a_canonical_address_is_not_a_lease(name: str) -> None:
    assert lease_name(name) is None


def test_a_scoped_lease_file_left_on_disk_is_not_trusted(ipam: Ipam) -> None:
    """A lease file named with a zone (written by an older version) is neither a lease of the plain address
    nor released for anyone: the plain address stays free to be leased once, and DEL/GC leave it alone."""
    ipam.dir.mkdir(parents=True)
    (ipam.dir / "fd00:96::2%1").write_bytes(b"old\r\neth0")
    store = DiskStore(str(ipam.data_dir), "net1")
    with store.locked():
        assert store.scan() == {}
    conf = ipam.conf(V6)
    assert ipam("ADD", conf, cid="new").ips == ["fd00:96::2/64"]
    assert ipam("DEL", conf, cid="old").rc == 0
    assert ipam("GC", {**conf, "cni.dev/valid-attachments": [{"containerID": "new", "ifname": "eth0"}]}).rc == 0
    assert set(ipam.files()) == {"fd00:96::2", "fd00:96::2%1", "last_reserved_ip.0", "lock"}


@pytest.mark.parametrize("text", [b"fd00:96::5%1", b"fd00:96::5%1\n", b"junk", b"fd00:96::5\x00", b""])
def test_a_scoped_or_junk_last_reserved_ip_is_ignored(ipam: Ipam, text: bytes) -> None:
    ipam.dir.mkdir(parents=True)
    (ipam.dir / "last_reserved_ip.0").write_bytes(text)
    out = ipam("ADD", ipam.conf(V6))
    assert out.ips == ["fd00:96::2/64"]  # from the start of the range, as with no last address
    assert (ipam.dir / "last_reserved_ip.0").read_bytes() == b"fd00:96::2"


def test_a_junk_index_entry_is_not_trusted(ipam: Ipam) -> None:
    conf = ipam.conf(V6)
    ipam("ADD", conf, cid="a")
    idx = next((ipam.data_dir / ".ignite-index" / "net1").glob("a-*"))
    idx.write_bytes(b"fd00:96::2%1\nnot-an-address")
    assert ipam("DEL", conf, cid="a").rc == 0
    assert ipam.leases() == {}


# ------------------------------------------------------------------------------------------ results

@pytest.mark.parametrize("doc", [
    {"cniVersion": "1.0.0", "ips": [{"address": "fd00:96::2%1/64"}]},
    {"cniVersion": "1.0.0", "ips": [{"address": "fd00:96::2/64", "gateway": "fd00:96::1%eth0"}]},
    {"cniVersion": "1.0.0", "ips": [{"address": "10.1.0.2/24 "}]},
    {"cniVersion": "1.0.0", "ips": [{"address": 167837698}]},
    {"cniVersion": "1.0.0", "routes": [{"dst": "fd00:97::%1/64"}]},
    {"cniVersion": "1.0.0", "routes": [{"dst": "::/0", "gw": "fd00:96::1%1"}]},
    {"cniVersion": "1.0.0", "routes": [{"dst": "::/0", "gw": "fd00:96::1%lo\nCOMMIT"}]},
    {"cniVersion": "0.2.0", "ip6": {"ip": "fd00:96::2%1/64"}},
    {"cniVersion": "0.2.0", "ip6": {"ip": "fd00:96::2/64", "gateway": "fd00:96::1%1"}},
    {"cniVersion": "0.2.0", "ip4": {"ip": "10.1.0.2/24", "routes": [{"dst": "0.0.0.0/0", "gw": "10.1.0.1%1"}]}},
    {"cniVersion": "1.1.0", "interfaces": [{"name": "eth0", "mtu": 1e999}]},
], ids=["address", "gateway", "address junk", "address int", "route dst", "route gw", "route gw newline",
        "0.2.0 ip", "0.2.0 gateway", "0.2.0 route gw", "mtu infinity"])
def test_error_when_a_result_carries_a_scoped_or_junk_address(doc: dict[str, Any]) -> None:
    with pytest.raises(DecodingFailure) as exc:
        decode(json.loads(json.dumps(doc)))
    assert exc.value.code == 6
