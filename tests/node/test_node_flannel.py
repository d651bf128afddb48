"""ignite-bridge as the delegate of flannel's CNI plugin, and subnet.env files as flanneld writes them.

Ignite's tools/ignite-flannel.sh writes a conflist whose first plugin is
``{"type": "flannel", "delegate": {"hairpinMode": true, "isDefaultGateway": true}}``; with cni-ignite the delegate
names ``"type": "ignite-bridge"``. flannel's CNI plugin (flannel-io/cni-plugin, flannel.go + flannel_linux.go)
renders the delegate's config from it and /run/flannel/subnet.env: name and cniVersion from its own config,
ipMasq = !FLANNEL_IPMASQ and mtu = FLANNEL_MTU unless the delegate sets them, isGateway only for type "bridge",
and an ipam block: flannel's own ``ipam`` (type host-local when absent) plus
``ranges: [[{"subnet": <FLANNEL_SUBNET's network>}]]`` and ``routes: <ipam.routes> + [{"dst": FLANNEL_NETWORK}]``.
`flannel_delegate` below reproduces that; every case runs it through our ignite-bridge in a throwaway namespace.
When flannel's plugin itself is available (the flannel_plugin fixture, conftest.py: FLANNEL_CNI_SRC = a
flannel-io/cni-plugin tree built here with Debian's Go CNI library, build/flannel/flannel from tools/build-flanneld.sh,
or a `flannel` binary in /usr/lib/cni), the real plugin delegates to ignite-bridge and the
delegate config it saved is compared byte for byte with the reproduction.
"""

from __future__ import annotations

import ipaddress
import json
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest
from cnirun import GO_PLUGINS, call, source_bin_dir
from flannelbin import SKIP_FLANNEL_CNI
from nsutil import in_ns, path

from cni_ignite.subnetenv import parse_subnet_env

if TYPE_CHECKING:
    from nsutil import Namespaces

pytestmark = pytest.mark.privileged

# What flanneld writes (flannel-io/flannel WriteSubnetFile): v0.12 (the version ignite-flannel.sh runs, udp
# backend: MTU 1500 - 28), and a current dual-stack vxlan one (the IPv6 lines are ignored by our IPv4 network).
FLANNELD_V012 = "FLANNEL_NETWORK=10.50.0.0/16\nFLANNEL_SUBNET=10.50.10.1/24\nFLANNEL_MTU=1472\nFLANNEL_IPMASQ=true\n"
FLANNELD_DUAL = ("FLANNEL_NETWORK=10.50.0.0/16\nFLANNEL_SUBNET=10.50.33.1/24\nFLANNEL_IPV6_NETWORK=fd50::/56\n"
                 "FLANNEL_IPV6_SUBNET=fd50:0:0:21::1/64\nFLANNEL_MTU=1450\nFLANNEL_IPMASQ=false\n")


def _env(text: str) -> dict[str, str]:
    return dict(line.split("=", 1) for line in text.splitlines() if "=" in line)


def flannel_delegate(conf: dict[str, Any], subnet_env: str) -> dict[str, Any]:
    """The delegate config flannel's CNI plugin renders for ADD (doCmdAdd + getDelegateIPAM), as a dict."""
    env = _env(subnet_env)
    delegate = dict(conf.get("delegate") or {})
    assert "name" not in delegate and "ipam" not in delegate  # flannel refuses both
    if conf.get("runtimeConfig") is not None:
        delegate["runtimeConfig"] = conf["runtimeConfig"]
    delegate["name"] = conf["name"]
    delegate.setdefault("type", "bridge")
    delegate.setdefault("ipMasq", env["FLANNEL_IPMASQ"] != "true")
    delegate.setdefault("mtu", int(env["FLANNEL_MTU"]))
    if delegate["type"] == "bridge":
        delegate.setdefault("isGateway", True)
    if conf.get("cniVersion"):
        delegate["cniVersion"] = conf["cniVersion"]
    ipam = dict(conf.get("ipam") or {})
    ipam.setdefault("type", "host-local")
    ranges = [[{"subnet": str(ipaddress.IPv4Interface(env["FLANNEL_SUBNET"]).network)}]]
    if "FLANNEL_IPV6_SUBNET" in env:
        ranges.append([{"subnet": str(ipaddress.IPv6Interface(env["FLANNEL_IPV6_SUBNET"]).network)}])
    ipam["ranges"] = ranges
    routes = [*ipam.get("routes", []), {"dst": env["FLANNEL_NETWORK"]}]
    if "FLANNEL_IPV6_NETWORK" in env:
        routes.append({"dst": env["FLANNEL_IPV6_NETWORK"]})
    ipam["routes"] = routes
    delegate["ipam"] = ipam
    return delegate


def go_json(doc: Any) -> bytes:
    """encoding/json's bytes for a map[string]interface{}: keys sorted, no spaces."""
    return json.dumps(doc, sort_keys=True, separators=(",", ":")).encode()


def flannel_conf(tmp: Path, ipam_type: str) -> dict[str, Any]:
    """ignite-flannel.sh's first plugin with type ignite-bridge, as libcni hands it over (name, cniVersion);
    every state folder in tmp."""
    conf: dict[str, Any] = {
        "cniVersion": "0.4.0", "name": "cbr0", "type": "flannel",
        "subnetFile": str(tmp / "subnet.env"), "dataDir": str(tmp / "flannel"),
        "delegate": {"type": "ignite-bridge", "hairpinMode": True, "isDefaultGateway": True,
                     "stateDir": str(tmp / "bridge-state")},
        "ipam": {"type": ipam_type, "dataDir": str(tmp / "ipam")},
    }
    return conf


def plugin_dir(tmp: Path, flannel: Path | None = None) -> str:
    """CNI_PATH: our plugins, the Go host-local, and flannel when given (links in one folder)."""
    d = tmp / "cni-bin"
    d.mkdir(exist_ok=True)
    for name, target in (("ignite-bridge", source_bin_dir() / "ignite-bridge"),
                         ("ignite-ipam", source_bin_dir() / "ignite-ipam"),
                         ("host-local", GO_PLUGINS / "host-local"), ("flannel", flannel)):
        if target is not None and Path(target).exists() and not (d / name).exists():
            (d / name).symlink_to(target)
    return str(d)


def check_container(ctr: str, env_text: str, address: str) -> None:
    env = _env(env_text)
    subnet = ipaddress.IPv4Interface(env["FLANNEL_SUBNET"])
    assert ipaddress.IPv4Interface(address).network == subnet.network
    assert ipaddress.IPv4Interface(address).ip != subnet.ip
    link = json.loads(in_ns(ctr, ["ip", "-j", "link", "show", "eth0"]).stdout)[0]
    assert link["mtu"] == int(env["FLANNEL_MTU"])
    routes = {r["dst"]: r.get("gateway") for r in json.loads(in_ns(ctr, ["ip", "-j", "-4", "route"]).stdout)}
    assert routes[env["FLANNEL_NETWORK"]] == str(subnet.ip)  # flannel's route to the whole network
    assert routes["default"] == str(subnet.ip)  # isDefaultGateway from ignite-flannel.sh's delegate


def leases(tmp: Path) -> list[str]:
    folder = tmp / "ipam" / "cbr0"
    return sorted(p.name for p in folder.iterdir() if p.name[0].isdigit()) if folder.is_dir() else []


@pytest.mark.parametrize("env_text", [FLANNELD_V012, FLANNELD_DUAL], ids=["flanneld-v0.12", "flanneld-dual-stack"])
@pytest.mark.parametrize("ipam_type", ["host-local", "ignite-ipam"])
def test_ignite_bridge_takes_flannels_delegate_config(netns: Namespaces, tmp_path: Path, ipam_type: str,
                                                      env_text: str) -> None:
    if ipam_type == "host-local" and not (GO_PLUGINS / "host-local").exists():
        pytest.skip(f"needs the Go host-local plugin in {GO_PLUGINS} (containernetworking-plugins)")
    (tmp_path / "subnet.env").write_text(env_text)
    conf = flannel_conf(tmp_path, ipam_type)
    delegate = flannel_delegate(conf, env_text)
    assert "isGateway" not in delegate  # flannel sets it only for type "bridge": isDefaultGateway implies it
    host, ctr = netns.new("cnit-fh"), netns.new("cnit-fc")
    cni_path = plugin_dir(tmp_path)
    res = call(Path(cni_path) / "ignite-bridge", "ADD", delegate, host_ns=host, container_id="ctr-1", netns=path(ctr),
               cni_path=cni_path).ok()
    assert res.out is not None
    v4 = [ip["address"] for ip in res.out["ips"] if ":" not in ip["address"]]
    check_container(ctr, env_text, v4[0])
    assert leases(tmp_path) == [v4[0].split("/")[0]]
    call(Path(cni_path) / "ignite-bridge", "DEL", delegate, host_ns=host, container_id="ctr-1", netns=path(ctr),
         cni_path=cni_path).ok()
    assert leases(tmp_path) == []
    assert not json.loads(in_ns(ctr, ["ip", "-j", "link", "show"]).stdout)[1:]  # only lo is left


def test_our_reader_and_ignite_ipam_read_flanneld_subnet_files() -> None:
    old = parse_subnet_env(FLANNELD_V012)
    assert (str(old.network), str(old.subnet), old.mtu, old.ipmasq) == ("10.50.0.0/16", "10.50.10.1/24", 1472, True)
    dual = parse_subnet_env(FLANNELD_DUAL)
    assert (str(dual.network), str(dual.subnet), dual.mtu, dual.ipmasq) == ("10.50.0.0/16", "10.50.33.1/24", 1450,
                                                                           False)


@pytest.mark.parametrize("ipam_type", ["host-local", "ignite-ipam"])
def test_real_flannel_plugin_delegates_to_ignite_bridge(netns: Namespaces, tmp_path: Path, ipam_type: str,
                                                        flannel_plugin: Path | None) -> None:
    if flannel_plugin is None:
        pytest.skip(SKIP_FLANNEL_CNI)
    if ipam_type == "host-local" and not (GO_PLUGINS / "host-local").exists():
        pytest.skip(f"needs the Go host-local plugin in {GO_PLUGINS}")
    (tmp_path / "subnet.env").write_text(FLANNELD_V012)
    conf = flannel_conf(tmp_path, ipam_type)
    host, ctr = netns.new("cnit-fh"), netns.new("cnit-fc")
    cni_path = plugin_dir(tmp_path, flannel_plugin)
    res = call(Path(cni_path) / "flannel", "ADD", conf, host_ns=host, container_id="ctr-1", netns=path(ctr),
               cni_path=cni_path).ok()
    assert res.out is not None
    saved = (tmp_path / "flannel" / "ctr-1").read_bytes()  # the delegate config flannel rendered and passed on
    assert saved == go_json(flannel_delegate(conf, FLANNELD_V012)), saved
    check_container(ctr, FLANNELD_V012, res.out["ips"][0]["address"])
    call(Path(cni_path) / "flannel", "DEL", conf, host_ns=host, container_id="ctr-1", netns=path(ctr),
         cni_path=cni_path).ok()
    assert leases(tmp_path) == []
    assert not (tmp_path / "flannel" / "ctr-1").exists()
