"""ignite-ipam's subnetFile: the multi-node agent's subnet.env gives this host's range and the route to the
whole network; a missing file is code 11, a bad one code 7."""

from __future__ import annotations

from typing import TYPE_CHECKING

import pytest
from ipamenv import Ipam

from cni_ignite.subnetenv import parse_subnet_env

if TYPE_CHECKING:
    from pathlib import Path

ENV = "FLANNEL_NETWORK=10.61.0.0/16\nFLANNEL_SUBNET=10.61.7.1/24\nFLANNEL_MTU=1450\nFLANNEL_IPMASQ=false\n"


def test_add_leases_from_the_hosts_subnet_and_routes_the_whole_network(tmp_path: Path) -> None:
    (tmp_path / "subnet.env").write_text(ENV)
    ipam = Ipam(tmp_path / "data")
    out = ipam("ADD", ipam.conf({"subnetFile": str(tmp_path / "subnet.env")}))
    assert out.ips == ["10.61.7.2/24"]
    assert out.doc is not None
    assert out.doc["ips"][0]["gateway"] == "10.61.7.1"
    assert out.doc["routes"] == [{"dst": "10.61.0.0/16"}]


def test_a_missing_subnet_file_is_try_again_later(tmp_path: Path) -> None:
    ipam = Ipam(tmp_path / "data")
    out = ipam("ADD", ipam.conf({"subnetFile": str(tmp_path / "nope.env")}))
    assert out.code == 11 and "cni-ignite node" in out.text
    assert ipam.files() == {}


def test_del_releases_the_lease_when_the_subnet_file_is_gone_and_keeps_config_reservations(tmp_path: Path) -> None:
    """A reboot clears /run (the subnet file) before the agent writes it again; the runtime's DELs must work."""
    env_file = tmp_path / "subnet.env"
    env_file.write_text(ENV)
    ipam = Ipam(tmp_path / "data")
    conf = ipam.conf({"subnetFile": str(env_file), "sticky": {"hold": "0"},
                      "reservations": [{"owner": "vm-r", "address": "10.61.7.50"}]})
    assert ipam("ADD", conf).ips == ["10.61.7.2/24"]
    reserved = ipam.files()["10.61.7.50"]
    env_file.unlink()
    assert ipam("ADD", conf, cid="c2").code == 11  # an ADD still needs the range
    out = ipam("DEL", conf)
    assert out.rc == 0, out.text
    assert ipam.leases()["10.61.7.2"].startswith(b"_ignite_held_\r\n")  # released: remembered, no longer c1's
    assert ipam.files()["10.61.7.50"] == reserved  # the configured reservation is untouched
    assert ipam("GC", {**conf, "cni.dev/valid-attachments": []}).rc == 0


@pytest.mark.parametrize("text", [
    "FLANNEL_NETWORK=10.61.0.0/16\n",  # no subnet
    "FLANNEL_NETWORK=10.61.0.0/16\nFLANNEL_SUBNET=10.99.7.1/24\n",  # outside the network
    "FLANNEL_NETWORK=10.61.0.0/16\nFLANNEL_SUBNET=fe80::1%eth0/64\n",
    "FLANNEL_NETWORK=10.61.0.0/16\nFLANNEL_SUBNET=10.61.7.1/24\nFLANNEL_MTU=9999999\n",
    "garbage\n",
])
def test_a_bad_subnet_file_is_a_config_error_and_nothing_is_leased(tmp_path: Path, text: str) -> None:
    (tmp_path / "subnet.env").write_text(text)
    ipam = Ipam(tmp_path / "data")
    assert ipam("ADD", ipam.conf({"subnetFile": str(tmp_path / "subnet.env")})).code == 7
    assert ipam.files() == {}


@pytest.mark.parametrize("path", ["relative.env", "", 5])
def test_subnet_file_must_be_an_absolute_path(tmp_path: Path, path: object) -> None:
    ipam = Ipam(tmp_path / "data")
    assert ipam("ADD", ipam.conf({"subnetFile": path})).code == 7


def test_the_agents_format_parses() -> None:
    env = parse_subnet_env(ENV)
    assert (str(env.network), str(env.subnet), env.mtu, env.ipmasq) == ("10.61.0.0/16", "10.61.7.1/24", 1450, False)


def test_what_the_node_agent_writes_is_what_the_ipam_reads(tmp_path: Path) -> None:
    import ipaddress

    from cni_ignite.node.subnetfile import SubnetFile, write_subnet_file
    from cni_ignite.subnetenv import read_subnet_env

    path = str(tmp_path / "run" / "subnet.env")
    write_subnet_file(path, SubnetFile(network=ipaddress.IPv4Network("10.61.0.0/16"),
                                       subnet=ipaddress.IPv4Network("10.61.42.0/24"), mtu=1450))
    env = read_subnet_env(path)
    assert (str(env.network), str(env.subnet), env.mtu, env.ipmasq) == ("10.61.0.0/16", "10.61.42.1/24", 1450, False)
