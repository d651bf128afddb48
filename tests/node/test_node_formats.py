"""flannel's formats, as the agent writes and reads them (no kernel, no etcd)."""

from __future__ import annotations

import ipaddress
import json
from typing import TYPE_CHECKING

import pytest

from cni_ignite.node.etcd import prefix_end
from cni_ignite.node.forward import rules_iptables as forward_rules
from cni_ignite.node.netconfig import ConfigError, LeaseAttrs, NetworkConfig, subnet_from_key, subnet_key
from cni_ignite.node.subnetfile import SubnetFile, read_subnet_file, write_subnet_file

if TYPE_CHECKING:
    from pathlib import Path


def test_default_config_is_flannels_shape_with_flannels_defaults() -> None:
    cfg = NetworkConfig.make("10.61.0.0/16", 24)
    assert json.loads(cfg.to_json()) == {
        "Network": "10.61.0.0/16", "SubnetLen": 24, "SubnetMin": "10.61.1.0", "SubnetMax": "10.61.255.0",
        "Backend": {"Type": "vxlan", "VNI": 1, "Port": 8472}}
    assert len(cfg.candidates()) == 255
    assert json.loads(NetworkConfig.make("10.61.0.0/16", backend="host-gw").to_json())["Backend"] == {
        "Type": "host-gw"}


def test_config_written_by_flannel_is_adopted_with_unknown_backend_keys_kept() -> None:
    text = '{"Network": "10.5.0.0/16", "Backend": {"Type": "vxlan", "VNI": 4, "DirectRouting": true}}'
    cfg = NetworkConfig.parse(text)
    assert (cfg.subnet_len, str(cfg.subnet_min), str(cfg.subnet_max), cfg.vni, cfg.port) == (
        24, "10.5.1.0", "10.5.255.0", 4, 8472)
    assert json.loads(cfg.to_json())["Backend"] == {"Type": "vxlan", "VNI": 4, "Port": 8472, "DirectRouting": True}
    assert cfg.holds(ipaddress.IPv4Network("10.5.9.0/24"))
    assert not cfg.holds(ipaddress.IPv4Network("10.5.0.0/24"))  # below SubnetMin
    assert not cfg.holds(ipaddress.IPv4Network("10.6.9.0/24"))


@pytest.mark.parametrize("text", [
    "not json", "{}", '{"Network": "10.5.0.1/16"}', '{"Network": "10.5.0.0/16", "SubnetLen": 16}',
    '{"Network": "10.5.0.0/16", "Backend": {"Type": "udp"}}', '{"Network": "10.5.0.0/16"}',  # flannel's default: udp
    '{"Network": "10.5.0.0/16", "SubnetMin": "10.5.9.128", "Backend": {"Type": "vxlan"}}',
    '{"Network": "10.5.0.0/16", "SubnetMin": "10.6.0.0", "Backend": {"Type": "vxlan"}}',
])
def test_error_when_config_is_not_one_we_can_run(text: str) -> None:
    with pytest.raises(ConfigError):
        NetworkConfig.parse(text)


def test_lease_value_round_trips_in_flannels_format() -> None:
    attrs = LeaseAttrs(ipaddress.IPv4Address("192.168.1.7"), "vxlan", "aa:bb:cc:dd:ee:ff")
    assert json.loads(attrs.to_json()) == {"PublicIP": "192.168.1.7", "BackendType": "vxlan",
                                           "BackendData": {"VNI": 1, "VtepMAC": "aa:bb:cc:dd:ee:ff"}}
    assert LeaseAttrs.parse(attrs.to_json()) == attrs
    # as flanneld writes it (with PublicIPv6 null, upper-case MAC)
    flannel = ('{"PublicIP":"10.0.0.2","PublicIPv6":null,"BackendType":"vxlan",'
               '"BackendData":{"VNI":1,"VtepMAC":"AA:BB:CC:00:11:22"}}')
    assert LeaseAttrs.parse(flannel).vtep_mac == "aa:bb:cc:00:11:22"
    assert json.loads(LeaseAttrs(ipaddress.IPv4Address("10.0.0.3"), "host-gw").to_json()) == {
        "PublicIP": "10.0.0.3", "BackendType": "host-gw"}


def test_subnet_keys() -> None:
    assert subnet_key(ipaddress.IPv4Network("10.61.7.0/24")) == "10.61.7.0-24"
    assert subnet_from_key("10.61.7.0-24") == ipaddress.IPv4Network("10.61.7.0/24")
    # a dual-stack flanneld's key (flannel MakeSubnetKey: "<v4>-<len>&<v6>-<len>"; captured from flanneld v0.20.2
    # with EnableIPv6): its IPv4 subnet is a peer (and taken) for our IPv4 agent
    assert subnet_from_key("10.62.50.0-24&fd62:0:0:39::-64") == ipaddress.IPv4Network("10.62.50.0/24")
    assert subnet_from_key("10.61.7.0-24-fc00::-64") is None
    assert subnet_from_key("10.61.7.0-24&fc00::1-64x") is None
    assert subnet_from_key("10.61.7.1-24") is None


def test_subnet_file_is_flannels_subnet_env(tmp_path: Path) -> None:
    path = str(tmp_path / "run" / "subnet.env")
    sf = SubnetFile(ipaddress.IPv4Network("10.61.0.0/16"), ipaddress.IPv4Network("10.61.7.0/24"), 1450)
    write_subnet_file(path, sf)
    with open(path) as f:
        assert f.read() == ("FLANNEL_NETWORK=10.61.0.0/16\nFLANNEL_SUBNET=10.61.7.1/24\nFLANNEL_MTU=1450\n"
                            "FLANNEL_IPMASQ=false\n")
    assert read_subnet_file(path) == sf
    assert read_subnet_file(str(tmp_path / "missing")) is None
    assert sorted(p.name for p in (tmp_path / "run").iterdir()) == ["subnet.env"]  # no temp file left


def test_prefix_end() -> None:
    assert prefix_end(b"/coreos.com/network/subnets/") == b"/coreos.com/network/subnets0"
    assert prefix_end(b"a\xff") == b"b"


def test_masquerade_rules_are_flannels_in_our_own_table() -> None:
    from cni_ignite.node.masq import IPT_CHAIN, NFT_TABLE, rules_iptables, rules_nft

    net, sub = ipaddress.IPv4Network("10.61.0.0/16"), ipaddress.IPv4Network("10.61.7.0/24")
    text = rules_nft(net, sub)
    # replaced in one transaction whether or not it exists; nobody else's table is named
    assert text.startswith(f"add table ip {NFT_TABLE}\ndelete table ip {NFT_TABLE}\ntable ip {NFT_TABLE} {{\n")
    rules = [ln.strip().split(" comment ")[0] for ln in text.splitlines() if ln.strip().startswith("ip ")]
    assert rules == ["ip saddr 10.61.0.0/16 ip daddr 10.61.0.0/16 return",
                     "ip saddr != 10.61.0.0/16 ip daddr 10.61.7.0/24 return",
                     "ip saddr 10.61.0.0/16 ip daddr != 224.0.0.0/4 masquerade fully-random",
                     "ip saddr != 10.61.0.0/16 ip daddr 10.61.0.0/16 masquerade fully-random"]
    ipt = rules_iptables(net, sub).splitlines()
    assert ipt[:2] == ["*nat", f":{IPT_CHAIN} - [0:0]"] and ipt[-1] == "COMMIT"
    assert [ln.split(" -m comment")[0] + " " + ln.split(" -j ")[1] for ln in ipt[2:-1]] == [
        f"-A {IPT_CHAIN} -s 10.61.0.0/16 -d 10.61.0.0/16 RETURN",
        f"-A {IPT_CHAIN} ! -s 10.61.0.0/16 -d 10.61.7.0/24 RETURN",
        f"-A {IPT_CHAIN} -s 10.61.0.0/16 ! -d 224.0.0.0/4 MASQUERADE --random-fully",
        f"-A {IPT_CHAIN} ! -s 10.61.0.0/16 -d 10.61.0.0/16 MASQUERADE --random-fully"]


def test_the_agent_state_file_sits_beside_the_subnet_file(tmp_path: Path) -> None:
    from cni_ignite.node.subnetfile import agent_state_path, write_agent_state

    env = str(tmp_path / "run" / "subnet.env")
    write_agent_state(env, {"pid": 1, "endpoints": ["http://e:2379"]})
    assert agent_state_path(env) == env + ".cni-ignite-node.json"
    assert json.loads((tmp_path / "run" / "subnet.env.cni-ignite-node.json").read_text())["pid"] == 1
    assert sorted(p.name for p in (tmp_path / "run").iterdir()) == ["subnet.env.cni-ignite-node.json"]


def test_forward_rules_are_flannels_in_our_own_chain() -> None:
    # flannel's ForwardRules: -s N -j ACCEPT, -d N -j ACCEPT (in FLANNEL-FWD); ours in CNI-IGNITE-NODE-FWD
    text = forward_rules(ipaddress.IPv4Network("10.61.0.0/16"))
    assert text.splitlines() == [
        "*filter", ":CNI-IGNITE-NODE-FWD - [0:0]",
        '-A CNI-IGNITE-NODE-FWD -s 10.61.0.0/16 -m comment --comment "cni-ignite node forward" -j ACCEPT',
        '-A CNI-IGNITE-NODE-FWD -d 10.61.0.0/16 -m comment --comment "cni-ignite node forward" -j ACCEPT',
        "COMMIT"]
