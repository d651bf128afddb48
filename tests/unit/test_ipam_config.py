"""ignite-ipam configuration: host-local's keys, canonicalisation and validation (pure)."""

from __future__ import annotations

import json
from ipaddress import ip_address, ip_network
from typing import Any

import pytest

from cni_ignite.errors import InvalidConfig
from cni_ignite.ipam.config import IpamConfig, Range, parse_ipam
from cni_ignite.netconf import parse_netconf
from cni_ignite.result import Route


def cfg(ipam: dict[str, Any] | None = None, cni_args: dict[str, str] | None = None, version: str = "1.0.0",
        **top: Any) -> IpamConfig:
    doc = {"cniVersion": version, "name": "net1", "type": "ignite-ipam",
           "ipam": {"type": "ignite-ipam", **(ipam or {})}, **top}
    return parse_ipam(parse_netconf(json.dumps(doc).encode()), cni_args or {})


def rng(subnet: str, start: str, end: str, gw: str) -> Range:
    return Range(subnet=ip_network(subnet), start=ip_address(start), end=ip_address(end), gateway=ip_address(gw))


def test_without_any_range_leases_from_10_61_0_0_16_with_gateway_1() -> None:
    c = cfg()
    assert c.range_sets == ((rng("10.61.0.0/16", "10.61.0.1", "10.61.255.254", "10.61.0.1"),),)
    assert c.data_dir == "/var/lib/cni/networks"
    assert (c.routes, c.resolv_conf, c.requested) == ((), "", ())


def test_legacy_single_range_keys() -> None:
    c = cfg({"subnet": "192.168.10.0/24", "rangeStart": "192.168.10.100", "rangeEnd": "192.168.10.200",
             "gateway": "192.168.10.254"})
    assert c.range_sets == ((rng("192.168.10.0/24", "192.168.10.100", "192.168.10.200", "192.168.10.254"),),)


def test_ipv6_range_ends_at_the_last_address() -> None:
    (r,), = cfg({"subnet": "fd00:61::/120"}).range_sets
    assert r == rng("fd00:61::/120", "fd00:61::1", "fd00:61::ff", "fd00:61::1")


def test_legacy_range_is_prepended_to_ranges_and_ip_ranges_before_both() -> None:
    c = cfg({"subnet": "10.1.0.0/24", "ranges": [[{"subnet": "fd00::/64"}],
                                                 [{"subnet": "10.2.0.0/24"}, {"subnet": "10.3.0.0/24"}]]},
            runtimeConfig={"ipRanges": [[{"subnet": "10.9.0.0/24"}]]})
    assert [[str(r.subnet) for r in s] for s in c.range_sets] == [
        ["10.9.0.0/24"], ["10.1.0.0/24"], ["fd00::/64"], ["10.2.0.0/24", "10.3.0.0/24"]]


def test_routes_dns_file_and_data_dir() -> None:
    c = cfg({"routes": [{"dst": "0.0.0.0/0"}, {"dst": "10.10.0.0/16", "gw": "10.61.0.254"}],
             "dataDir": "/run/ipam/", "resolvConf": "/etc/resolv.conf"})
    assert c.routes == (Route(dst=ip_network("0.0.0.0/0")),
                        Route(dst=ip_network("10.10.0.0/16"), gw=ip_address("10.61.0.254")))
    assert (c.data_dir, c.resolv_conf) == ("/run/ipam", "/etc/resolv.conf")


def test_requested_addresses_are_merged_from_runtime_config_args_and_cni_args() -> None:
    c = cfg({"subnet": "10.1.0.0/24"}, {"IP": "10.1.0.7,10.1.0.8"},
            runtimeConfig={"ips": ["10.1.0.5/24"]}, args={"cni": {"ips": ["10.1.0.6", "10.1.0.5"]}})
    assert c.requested == tuple(ip_address(f"10.1.0.{i}") for i in (5, 6, 7, 8))


def test_capabilities_and_unknown_keys_are_tolerated() -> None:
    c = cfg({"subnet": "10.1.0.0/24", "futureKey": 1}, capabilities={"ips": True}, other={"x": 1})
    assert len(c.range_sets) == 1


BAD: list[tuple[dict[str, Any], str]] = [
    ({"subnet": "10.1.0.1/24"}, "invalid subnet"),
    ({"subnet": "banana"}, "invalid subnet"),
    ({"subnet": 10}, "invalid subnet"),
    ({"subnet": "10.1.0.0/31"}, "too small"),
    ({"subnet": "fd00::/127"}, "too small"),
    ({"subnet": "10.1.0.0/24", "rangeStart": "10.2.0.5"}, "rangeStart 10.2.0.5 not in network 10.1.0.0/24"),
    ({"subnet": "10.1.0.0/24", "rangeStart": "10.1.0.0"}, "rangeStart 10.1.0.0 not in network"),
    ({"subnet": "10.1.0.0/24", "rangeEnd": "10.1.0.255"}, "rangeEnd 10.1.0.255 not in network"),
    ({"subnet": "10.1.0.0/24", "rangeStart": "fd00::1"}, "rangeStart fd00::1 not in network"),
    ({"subnet": "10.1.0.0/24", "rangeStart": "10.1.0.9", "rangeEnd": "10.1.0.8"}, "is after rangeEnd"),
    ({"subnet": "10.1.0.0/24", "rangeStart": "nope"}, "invalid rangeStart"),
    ({"subnet": "10.1.0.0/24", "gateway": "nope"}, "invalid gateway"),
    ({"ranges": [[{"subnet": "10.1.0.0/24"}, {"subnet": "fd00::/64"}]]}, "mixed address families"),
    ({"ranges": [[{"subnet": "10.1.0.0/24"}, {"subnet": "10.1.0.0/25"}]]}, "range set 0: ranges"),
    ({"ranges": [[{"subnet": "10.1.0.0/24"}], [{"subnet": "10.1.0.128/25"}]]}, "range set 0 overlaps with 1"),
    ({"subnet": "10.1.0.0/24", "ranges": [[{"subnet": "10.1.0.0/16"}]]}, "range set 0 overlaps with 1"),
    ({"ranges": [[]]}, "range set 0 must be a non-empty list"),
    ({"ranges": [{"subnet": "10.1.0.0/24"}]}, "range set 0 must be a non-empty list"),
    ({"ranges": "10.1.0.0/24"}, "ipam.ranges must be a list"),
    ({"ranges": [["10.1.0.0/24"]]}, "a range must be an object"),
    ({"ranges": [[{"rangeStart": "10.1.0.1"}]]}, "missing subnet"),
    ({"routes": [{"gw": "10.1.0.1"}]}, "routes entries need a dst"),
    ({"routes": [{"dst": "x"}]}, "invalid route dst"),
    ({"routes": [{"dst": "0.0.0.0/0", "gw": "x"}]}, "invalid route gw"),
    ({"routes": {"dst": "0.0.0.0/0"}}, "ipam.routes must be a list"),
    ({"dataDir": "relative/dir"}, "absolute path"),
    ({"dataDir": "/var/lib/cni/../../etc"}, "without '..'"),
    ({"dataDir": 5}, "ipam.dataDir must be a string"),
    ({"resolvConf": ["/etc/resolv.conf"]}, "ipam.resolvConf must be a string"),
]


@pytest.mark.parametrize(("ipam", "msg"), BAD, ids=[m for _, m in BAD])
def test_error_when_ipam_config_is_invalid(ipam: dict[str, Any], msg: str) -> None:
    with pytest.raises(InvalidConfig, match=msg.replace(".", r"\.").replace("(", r"\(")) as exc:
        cfg(ipam)
    assert exc.value.code == 7


def test_error_when_range_start_outside_subnet() -> None:
    with pytest.raises(InvalidConfig, match=r"rangeStart 10.9.9.9 not in network"):
        cfg({"subnet": "10.1.0.0/16", "rangeStart": "10.9.9.9"})


def test_error_when_range_sets_overlap() -> None:
    with pytest.raises(InvalidConfig, match=r"overlaps"):
        cfg({"ranges": [[{"subnet": "10.1.0.0/24", "rangeStart": "10.1.0.10", "rangeEnd": "10.1.0.20"}],
                        [{"subnet": "10.1.0.0/24", "rangeStart": "10.1.0.20", "rangeEnd": "10.1.0.30"}]]})


def test_disjoint_ranges_of_one_subnet_in_two_sets_are_allowed() -> None:
    c = cfg({"ranges": [[{"subnet": "10.1.0.0/24", "rangeStart": "10.1.0.10", "rangeEnd": "10.1.0.19"}],
                        [{"subnet": "10.1.0.0/24", "rangeStart": "10.1.0.20", "rangeEnd": "10.1.0.30"}]]})
    assert len(c.range_sets) == 2


@pytest.mark.parametrize("version", ["0.1.0", "0.2.0"])
def test_error_when_pre_0_3_0_config_has_two_sets_of_one_family(version: str) -> None:
    with pytest.raises(InvalidConfig, match=r"too many ranges"):
        cfg({"ranges": [[{"subnet": "10.1.0.0/24"}], [{"subnet": "10.2.0.0/24"}]]}, version=version)
    assert len(cfg({"ranges": [[{"subnet": "10.1.0.0/24"}], [{"subnet": "fd00::/64"}]]}, version=version)
               .range_sets) == 2


@pytest.mark.parametrize(("top", "cni_args"), [
    ({"runtimeConfig": {"ips": ["nope"]}}, {}),
    ({"args": {"cni": {"ips": ["10.1.0.300"]}}}, {}),
    ({}, {"IP": "10.1.0.x"}),
    ({"runtimeConfig": {"ips": "10.1.0.5"}}, {}),
    ({"args": {"cni": "x"}}, {}),
    ({"runtimeConfig": {"ipRanges": [{"subnet": "10.1.0.0/24"}]}}, {}),
])
def test_error_when_requested_addresses_or_ip_ranges_are_malformed(top: dict[str, Any],
                                                                   cni_args: dict[str, str]) -> None:
    with pytest.raises(InvalidConfig):
        cfg({"subnet": "10.1.0.0/24"}, cni_args, **top)


def test_error_when_ipam_is_not_an_object() -> None:
    doc = {"cniVersion": "1.0.0", "name": "net1", "type": "ignite-ipam", "ipam": "host-local"}
    with pytest.raises(InvalidConfig, match=r"ipam must be an object"):
        parse_ipam(parse_netconf(json.dumps(doc).encode()), {})
