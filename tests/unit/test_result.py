"""Result encoding per spec version (golden JSON) and decoding of every version."""

from __future__ import annotations

import json
from ipaddress import ip_address, ip_interface, ip_network

import pytest

from cni_ignite.errors import DecodingFailure, IncompatibleVersion
from cni_ignite.result import DNS, Interface, IPConfig, Result, Route, decode, encode
from cni_ignite.version import SUPPORTED

FULL = Result(
    interfaces=(Interface(name="ignite0", mac="aa:bb:cc:dd:ee:01"),
                Interface(name="eth0", mac="aa:bb:cc:dd:ee:02", sandbox="/var/run/netns/x", mtu=1400,
                          socket_path="/run/vhost.sock", pci_id="0000:00:1f.0")),
    ips=(IPConfig(address=ip_interface("10.61.0.5/16"), gateway=ip_address("10.61.0.1"), interface=1),
         IPConfig(address=ip_interface("fd00:61::5/64"), gateway=ip_address("fd00:61::1"), interface=1),
         IPConfig(address=ip_interface("10.62.0.5/24"))),
    routes=(Route(dst=ip_network("0.0.0.0/0"), gw=ip_address("10.61.0.1"), mtu=1300, advmss=1200, priority=10,
                  table=100, scope=0),
            Route(dst=ip_network("::/0")),
            Route(dst=ip_network("192.168.0.0/16"))),
    dns=DNS(nameservers=("10.61.0.1",), domain="example.org", search=("a.example.org",), options=("ndots:2",)),
)

DNS_JSON = {"nameservers": ["10.61.0.1"], "domain": "example.org", "search": ["a.example.org"],
            "options": ["ndots:2"]}

GOLDEN_020 = {
    "ip4": {"ip": "10.61.0.5/16", "gateway": "10.61.0.1",
            "routes": [{"dst": "0.0.0.0/0", "gw": "10.61.0.1"}, {"dst": "192.168.0.0/16"}]},
    "ip6": {"ip": "fd00:61::5/64", "gateway": "fd00:61::1", "routes": [{"dst": "::/0"}]},
    "dns": DNS_JSON,
}
GOLDEN_04 = {
    "interfaces": [{"name": "ignite0", "mac": "aa:bb:cc:dd:ee:01"},
                   {"name": "eth0", "mac": "aa:bb:cc:dd:ee:02", "sandbox": "/var/run/netns/x"}],
    "ips": [{"version": "4", "interface": 1, "address": "10.61.0.5/16", "gateway": "10.61.0.1"},
            {"version": "6", "interface": 1, "address": "fd00:61::5/64", "gateway": "fd00:61::1"},
            {"version": "4", "address": "10.62.0.5/24"}],
    "routes": [{"dst": "0.0.0.0/0", "gw": "10.61.0.1"}, {"dst": "::/0"}, {"dst": "192.168.0.0/16"}],
    "dns": DNS_JSON,
}
GOLDEN_100 = {
    "interfaces": GOLDEN_04["interfaces"],
    "ips": [{"interface": 1, "address": "10.61.0.5/16", "gateway": "10.61.0.1"},
            {"interface": 1, "address": "fd00:61::5/64", "gateway": "fd00:61::1"},
            {"address": "10.62.0.5/24"}],
    "routes": GOLDEN_04["routes"],
    "dns": DNS_JSON,
}
GOLDEN_110 = {
    "interfaces": [{"name": "ignite0", "mac": "aa:bb:cc:dd:ee:01"},
                   {"name": "eth0", "mac": "aa:bb:cc:dd:ee:02", "sandbox": "/var/run/netns/x", "mtu": 1400,
                    "socketPath": "/run/vhost.sock", "pciID": "0000:00:1f.0"}],
    "ips": GOLDEN_100["ips"],
    "routes": [{"dst": "0.0.0.0/0", "gw": "10.61.0.1", "mtu": 1300, "advmss": 1200, "priority": 10, "table": 100,
                "scope": 0},
               {"dst": "::/0"}, {"dst": "192.168.0.0/16"}],
    "dns": DNS_JSON,
}
GOLDEN = {"0.1.0": GOLDEN_020, "0.2.0": GOLDEN_020, "0.3.0": GOLDEN_04, "0.3.1": GOLDEN_04, "0.4.0": GOLDEN_04,
          "1.0.0": GOLDEN_100, "1.1.0": GOLDEN_110}


@pytest.mark.parametrize("version", SUPPORTED)
def test_result_is_encoded_in_exactly_the_config_version(version: str) -> None:
    out = json.loads(json.dumps(encode(FULL, version)))
    assert out == {"cniVersion": version, **GOLDEN[version]}


def test_0_4_0_result_carries_ip_version_and_1_0_0_does_not() -> None:
    assert all("version" in ip for ip in encode(FULL, "0.4.0")["ips"])  # type: ignore[attr-defined]
    assert not any("version" in ip for ip in encode(FULL, "1.0.0")["ips"])  # type: ignore[attr-defined]


def test_ipam_result_has_no_interfaces_key() -> None:
    ipam = Result(ips=(IPConfig(address=ip_interface("10.61.0.2/16"), gateway=ip_address("10.61.0.1")),))
    assert encode(ipam, "0.4.0") == {"cniVersion": "0.4.0", "dns": {},
                                     "ips": [{"version": "4", "address": "10.61.0.2/16", "gateway": "10.61.0.1"}]}


def test_0_2_0_keeps_only_the_first_address_per_family() -> None:
    out = encode(FULL, "0.2.0")
    assert out["ip4"] == GOLDEN_020["ip4"]  # 10.62.0.5 is dropped (lossy, as libcni)
    assert "10.62.0.5" not in json.dumps(out)


def test_0_2_0_with_only_ipv6_has_no_ip4_block() -> None:
    out = encode(Result(ips=(IPConfig(address=ip_interface("fd00::2/64")),)), "0.2.0")
    assert out == {"cniVersion": "0.2.0", "ip6": {"ip": "fd00::2/64"}, "dns": {}}


@pytest.mark.parametrize("version", ["0.1.0", "0.2.0"])
def test_error_when_0_2_0_result_has_no_ip(version: str) -> None:
    with pytest.raises(IncompatibleVersion, match="no valid IP addresses"):
        encode(Result(), version)


@pytest.mark.parametrize("version", SUPPORTED)
def test_every_version_decodes_back_to_the_internal_result(version: str) -> None:
    decoded = decode(encode(FULL, version))
    if version in ("0.1.0", "0.2.0"):
        assert decoded.ips == (IPConfig(address=ip_interface("10.61.0.5/16"), gateway=ip_address("10.61.0.1")),
                               IPConfig(address=ip_interface("fd00:61::5/64"), gateway=ip_address("fd00:61::1")))
        assert {str(r.dst) for r in decoded.routes} == {"0.0.0.0/0", "192.168.0.0/16", "::/0"}
        assert decoded.interfaces == ()
    elif version == "1.1.0":
        assert decoded == FULL
    else:  # 0.3.x-1.0.0 drop the 1.1.0 interface and route extras
        assert decoded.ips == FULL.ips
        assert [i.name for i in decoded.interfaces] == ["ignite0", "eth0"]
        assert decoded.interfaces[1].mtu == 0
        assert decoded.routes[0] == Route(dst=ip_network("0.0.0.0/0"), gw=ip_address("10.61.0.1"))
    assert decoded.dns == FULL.dns


def test_decoding_host_local_0_2_0_output() -> None:
    doc = {"cniVersion": "0.2.0", "ip4": {"ip": "10.61.0.3/16", "gateway": "10.61.0.1",
                                           "routes": [{"dst": "0.0.0.0/0"}]},
           "ip6": {"ip": "fd00:61::3/64", "gateway": "fd00:61::1"}, "dns": {}}
    assert decode(doc) == Result(
        ips=(IPConfig(address=ip_interface("10.61.0.3/16"), gateway=ip_address("10.61.0.1")),
             IPConfig(address=ip_interface("fd00:61::3/64"), gateway=ip_address("fd00:61::1"))),
        routes=(Route(dst=ip_network("0.0.0.0/0")),))


def test_decoding_keeps_route_dst_with_host_bits() -> None:
    assert decode({"routes": [{"dst": "10.1.2.3/8"}]}).routes == (Route(dst=ip_network("10.0.0.0/8")),)


@pytest.mark.parametrize("doc", [
    [],
    "x",
    {"ips": [{"address": "not-an-ip"}]},
    {"ips": [{"gateway": "10.0.0.1"}]},
    {"ips": {"address": "10.0.0.2/24"}},
    {"ips": ["10.0.0.2/24"]},
    {"routes": [{"gw": "10.0.0.1"}]},
    {"interfaces": [{"mac": "aa:bb:cc:dd:ee:ff"}]},
    {"ip4": {"gateway": "10.0.0.1"}},
    {"dns": {"nameservers": "8.8.8.8"}},
    {"dns": {"search": 5}},
])
def test_error_when_result_is_malformed(doc: object) -> None:
    with pytest.raises(DecodingFailure) as exc:
        decode(doc)
    assert exc.value.code == 6
