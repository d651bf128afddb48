"""`cni-ignite install --multi-node` into temporary folders: the shipped multi-node network, its subnet file and MTU."""

from __future__ import annotations

import io
import json
from typing import TYPE_CHECKING

import pytest
from test_install import fake_bundle, manifest

from cni_ignite import install as inst
from cni_ignite.admin import _parser

if TYPE_CHECKING:
    from pathlib import Path

SHIPPED = inst.bundle_conflist("/nonexistent", "30-ignite-multinode.conflist")
NAME = "30-ignite-multinode.conflist"


def multinode_bundle(tmp: Path) -> Path:
    src = fake_bundle(tmp, "mn")
    (src / "_internal" / "conf" / NAME).write_bytes(SHIPPED)
    return src


def install_mn(src: Path, tmp: Path, subnet_file: str | None = None) -> str:
    out = io.StringIO()
    assert inst.install(str(src), str(tmp / "bin"), str(tmp / "net.d"), write_conf=True, force=False, out=out,
                        network="multinode", subnet_file=subnet_file) == 0
    return out.getvalue()


def test_the_shipped_multinode_network_takes_its_subnet_from_the_agent_and_masquerades_nothing_itself() -> None:
    doc = json.loads(SHIPPED)
    assert doc["name"] == "ignite-cni-multinode"
    (bridge,) = doc["plugins"]
    assert bridge["type"] == "ignite-bridge"
    assert bridge["ipMasq"] is False  # the agent masquerades traffic leaving the whole network (FLANNEL_IPMASQ=true)
    assert bridge["isDefaultGateway"] is True and bridge["guard"] is True
    assert bridge["mtu"] == inst.SHIPPED_MULTINODE_MTU == 1450
    assert bridge["ipam"]["type"] == "ignite-ipam"
    assert bridge["ipam"]["subnetFile"] == inst.MULTINODE_SUBNET_FILE == "/run/flannel/subnet.env"
    assert "subnet" not in bridge["ipam"] and "ranges" not in bridge["ipam"]


def test_install_multi_node_without_a_running_agent_writes_the_shipped_network(tmp_path: Path) -> None:
    out = install_mn(multinode_bundle(tmp_path), tmp_path, str(tmp_path / "absent" / "subnet.env"))
    assert "does not exist; the network's mtu stays 1450" in out
    assert "default network ignite-cni-multinode" in out
    assert sorted(p.name for p in (tmp_path / "net.d").iterdir()) == [NAME]
    doc = json.loads((tmp_path / "net.d" / NAME).read_text())
    assert doc["plugins"][0]["mtu"] == 1450
    assert doc["plugins"][0]["ipam"]["subnetFile"] == str(tmp_path / "absent" / "subnet.env")
    assert manifest(tmp_path)["conflist"]["path"] == str(tmp_path / "net.d" / NAME)
    assert inst.uninstall(str(tmp_path / "bin"), io.StringIO()) == 0
    assert not (tmp_path / "net.d").exists()


def test_install_multi_node_takes_the_mtu_of_a_running_agent(tmp_path: Path) -> None:
    env = tmp_path / "subnet.env"
    env.write_text("FLANNEL_NETWORK=10.61.0.0/16\nFLANNEL_SUBNET=10.61.7.1/24\nFLANNEL_MTU=8950\nFLANNEL_IPMASQ=true\n")
    out = install_mn(multinode_bundle(tmp_path), tmp_path, str(env))
    assert "FLANNEL_MTU=8950: the network's mtu is 8950" in out
    text = (tmp_path / "net.d" / NAME).read_text()
    assert json.loads(text)["plugins"][0]["mtu"] == 8950
    assert text.replace('"mtu": 8950', '"mtu": 1450').replace(str(env), inst.MULTINODE_SUBNET_FILE) == SHIPPED.decode()


def test_install_multi_node_says_when_the_agent_does_not_masquerade(tmp_path: Path) -> None:
    env = tmp_path / "subnet.env"
    env.write_text("FLANNEL_NETWORK=10.61.0.0/16\nFLANNEL_SUBNET=10.61.7.1/24\nFLANNEL_MTU=1450\nFLANNEL_IPMASQ=false\n")
    assert "FLANNEL_IPMASQ=false" in install_mn(multinode_bundle(tmp_path), tmp_path, str(env))


def test_multi_node_never_overwrites_a_users_network(tmp_path: Path) -> None:
    (tmp_path / "net.d").mkdir()
    (tmp_path / "net.d" / "05-mine.conf").write_text("{}")
    out = install_mn(multinode_bundle(tmp_path), tmp_path)
    assert "already has network config" in out
    assert sorted(p.name for p in (tmp_path / "net.d").iterdir()) == ["05-mine.conf"]


@pytest.mark.parametrize(("kw", "why"), [
    ({"network": "bridge", "subnet_file": "/run/flannel/subnet.env"}, "only goes with --multi-node"),
    ({"network": "multinode", "subnet_file": "run/subnet.env"}, "absolute path"),
    ({"network": "nope"}, "unknown network"),
])
def test_bad_multi_node_arguments_change_nothing(tmp_path: Path, kw: dict[str, str], why: str) -> None:
    with pytest.raises(inst.InstallError, match=why):
        inst.install(str(multinode_bundle(tmp_path)), str(tmp_path / "bin"), str(tmp_path / "net.d"),
                     write_conf=True, force=False, out=io.StringIO(), **kw)
    assert not (tmp_path / "bin").exists() and not (tmp_path / "net.d").exists()


def test_the_command_line_spells_it_multi_node() -> None:
    args = _parser().parse_args(["install", "--multi-node", "--subnet-file", "/x/subnet.env"])
    assert (args.network_kind, args.subnet_file) == ("multinode", "/x/subnet.env")
    assert _parser().parse_args(["install", "--network", "multinode"]).network_kind == "multinode"
    assert _parser().parse_args(["install"]).network_kind == "bridge"
