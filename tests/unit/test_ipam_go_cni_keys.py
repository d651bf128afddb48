"""go-cni (containerd's CRI, Ignite) marshals runtimeConfig capability values without JSON tags, so
``ipRanges`` arrive with Go field names: ``{"Subnet": ..., "RangeStart": ..., "RangeEnd": ..., "Gateway": ...}``
and unset fields as "". host-local reads them the way Go's encoding/json does (exact key, else any case);
so do we (issue 12)."""

from __future__ import annotations

import json
from ipaddress import ip_address, ip_network
from typing import TYPE_CHECKING, Any

import pytest
from ipamenv import Ipam

from cni_ignite.errors import InvalidConfig
from cni_ignite.ipam.config import IpamConfig, Range, parse_ipam
from cni_ignite.netconf import parse_netconf
from cni_ignite.result import Route

if TYPE_CHECKING:
    from pathlib import Path

# What go-cni's WithCapabilityIPRanges puts on stdin, byte for byte (libcni injects it under runtimeConfig).
GO_CNI_STDIN = (
    '{"cniVersion":"1.0.0","name":"net1","type":"ignite-ipam",'
    '"ipam":{"type":"ignite-ipam","subnet":"10.61.0.0/16","dataDir":"@DATA@"},'
    '"capabilities":{"ipRanges":true,"ips":true},'
    '"runtimeConfig":{"ipRanges":[[{"Subnet":"10.22.0.0/16","RangeStart":"10.22.0.10",'
    '"RangeEnd":"10.22.0.20","Gateway":"10.22.0.1"}]],"ips":["10.22.0.15/16"]}}'
)
GO_CNI_UNSET = ('{"cniVersion":"1.0.0","name":"net1","type":"ignite-ipam","ipam":{"type":"ignite-ipam"},'
                '"runtimeConfig":{"IPRanges":[[{"Subnet":"fd00:22::/64","RangeStart":"","RangeEnd":"",'
                '"Gateway":""}]]}}')


def parse(text: str, cni_args: dict[str, str] | None = None) -> IpamConfig:
    return parse_ipam(parse_netconf(text.encode()), cni_args or {})


def test_go_cni_ip_ranges_with_go_field_names_are_read() -> None:
    c = parse(GO_CNI_STDIN.replace("@DATA@", "/tmp/x"))
    assert c.range_sets[0] == (Range(subnet=ip_network("10.22.0.0/16"), start=ip_address("10.22.0.10"),
                                     end=ip_address("10.22.0.20"), gateway=ip_address("10.22.0.1")),)
    assert [str(s[0].subnet) for s in c.range_sets] == ["10.22.0.0/16", "10.61.0.0/16"]
    assert c.requested == (ip_address("10.22.0.15"),)


def test_go_cni_unset_fields_are_empty_strings_and_mean_the_defaults() -> None:
    (r,), = parse(GO_CNI_UNSET).range_sets
    assert r == Range(subnet=ip_network("fd00:22::/64"), start=ip_address("fd00:22::1"),
                      end=ip_address("fd00:22::ffff:ffff:ffff:ffff"), gateway=ip_address("fd00:22::1"))


def test_exact_key_wins_over_a_differently_cased_one() -> None:
    doc = {"cniVersion": "1.0.0", "name": "net1", "type": "ignite-ipam", "ipam": {"type": "ignite-ipam"},
           "runtimeConfig": {"ipRanges": [[{"SUBNET": "10.9.0.0/24", "subnet": "10.22.0.0/24"}]]}}
    (r,), = parse(json.dumps(doc)).range_sets
    assert str(r.subnet) == "10.22.0.0/24"


def test_ipam_keys_ranges_and_routes_are_read_as_go_reads_them() -> None:
    doc = {"cniVersion": "1.0.0", "name": "net1", "Type": "ignite-ipam",
           "ipam": {"Type": "ignite-ipam", "Ranges": [[{"Subnet": "10.5.0.0/24", "Gateway": "10.5.0.254"}]],
                    "DataDir": "/run/x",
                    "Routes": [{"Dst": "0.0.0.0/0", "GW": "10.5.0.254"}]},
           "args": {"CNI": {"IPs": ["10.5.0.7"]}}}
    c = parse(json.dumps(doc))
    assert c.range_sets[0][0].gateway == ip_address("10.5.0.254")
    assert c.routes == (Route(dst=ip_network("0.0.0.0/0"), gw=ip_address("10.5.0.254")),)
    assert (c.data_dir, c.requested) == ("/run/x", (ip_address("10.5.0.7"),))


@pytest.mark.parametrize("rng", [
    {"Subnet": "10.22.0.0/16", "RangeStart": "10.22.0.300"},
    {"Subnet": "fd00:22::%1/64"},
    {"Subnet": "10.22.0.0/16", "Gateway": "10.22.0.1%1"},
    {"Subnet": 167118848},
    {"Subnet": "10.22.0.0/16", "RangeEnd": ["10.22.0.20"]},
])
def test_error_when_go_cni_ip_ranges_are_malformed(rng: dict[str, Any]) -> None:
    doc = {"cniVersion": "1.0.0", "name": "net1", "type": "ignite-ipam", "ipam": {"type": "ignite-ipam"},
           "runtimeConfig": {"ipRanges": [[rng]]}}
    with pytest.raises(InvalidConfig) as exc:
        parse(json.dumps(doc))
    assert exc.value.code == 7


@pytest.fixture
def ipam(tmp_path: Path) -> Ipam:
    return Ipam(tmp_path / "data")


def test_add_with_go_cni_stdin_leases_from_the_runtime_range(ipam: Ipam) -> None:
    conf = json.loads(GO_CNI_STDIN.replace("@DATA@", str(ipam.data_dir)))
    assert ipam("ADD", conf).doc == {"cniVersion": "1.0.0", "dns": {},
                                     "ips": [{"address": "10.22.0.15/16", "gateway": "10.22.0.1"},
                                             {"address": "10.61.0.2/16", "gateway": "10.61.0.1"}]}
    del conf["runtimeConfig"]["ips"]
    assert ipam("ADD", conf, cid="c2").ips == ["10.22.0.16/16", "10.61.0.3/16"]
    assert set(ipam.leases()) == {"10.22.0.15", "10.22.0.16", "10.61.0.2", "10.61.0.3"}
