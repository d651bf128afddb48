"""The network config at <prefix>/config and the per-host lease values, in flannel's JSON formats.

    <prefix>/config                  {"Network": "10.61.0.0/16", "SubnetLen": 24, "SubnetMin": "10.61.1.0",
                                      "SubnetMax": "10.61.255.0", "Backend": {"Type": "vxlan", "VNI": 1, "Port": 8472}}
    <prefix>/subnets/10.61.7.0-24    {"PublicIP": "192.168.1.7", "BackendType": "vxlan",
                                      "BackendData": {"VNI": 1, "VtepMAC": "aa:bb:cc:dd:ee:ff"}}

Defaults follow flannel's subnet.ParseConfig: SubnetLen 24 (for networks wider than /24), SubnetMin skips the
network's first subnet, SubnetMax is its last one.
"""

from __future__ import annotations

import ipaddress
import json
import re
from dataclasses import dataclass, field
from typing import Any

__all__ = ["BACKENDS", "LeaseAttrs", "NetworkConfig", "subnet_from_key", "subnet_key"]

BACKENDS = ("vxlan", "host-gw")
DEFAULT_VNI = 1
DEFAULT_PORT = 8472
# flannel's MakeSubnetKey: "<v4>-<len>", or "<v4>-<len>&<v6>-<len>" from a dual-stack flanneld (EnableIPv6)
_KEY = re.compile(r"^(\d+\.\d+\.\d+\.\d+)-(\d+)(?:&[0-9a-f:]+-\d+)?$")


class ConfigError(ValueError):
    """The network config or a lease value is not what flannel would accept."""


def _net(text: object, what: str) -> ipaddress.IPv4Network:
    try:
        return ipaddress.IPv4Network(str(text), strict=True)
    except ValueError as exc:
        raise ConfigError(f"{what}: {exc}") from exc


def _addr(text: object, what: str) -> ipaddress.IPv4Address:
    try:
        return ipaddress.IPv4Address(str(text))
    except ValueError as exc:
        raise ConfigError(f"{what}: {exc}") from exc


@dataclass(frozen=True)
class NetworkConfig:
    network: ipaddress.IPv4Network
    subnet_len: int
    subnet_min: ipaddress.IPv4Address
    subnet_max: ipaddress.IPv4Address
    backend: str = "vxlan"
    vni: int = DEFAULT_VNI
    port: int = DEFAULT_PORT
    backend_extra: dict[str, Any] = field(default_factory=dict)  # other Backend keys, kept as found

    @classmethod
    def make(cls, network: str, subnet_len: int | None = None, backend: str = "vxlan", vni: int = DEFAULT_VNI,
             port: int = DEFAULT_PORT) -> NetworkConfig:
        return cls.parse(json.dumps(cls._doc(network, subnet_len, backend, vni, port)))

    @staticmethod
    def _doc(network: str, subnet_len: int | None, backend: str, vni: int, port: int) -> dict[str, Any]:
        doc: dict[str, Any] = {"Network": network, "Backend": {"Type": backend}}
        if subnet_len is not None:
            doc["SubnetLen"] = subnet_len
        if backend == "vxlan":
            doc["Backend"].update(VNI=vni, Port=port)
        return doc

    @classmethod
    def parse(cls, text: str | bytes) -> NetworkConfig:
        try:
            doc = json.loads(text)
        except ValueError as exc:
            raise ConfigError(f"network config is not JSON: {exc}") from exc
        if not isinstance(doc, dict) or "Network" not in doc:
            raise ConfigError("network config: no Network")
        net = _net(doc["Network"], "Network")
        default_len = 24 if net.prefixlen < 24 else net.prefixlen + 1
        subnet_len = int(doc.get("SubnetLen") or default_len)
        if not net.prefixlen < subnet_len <= 30:
            raise ConfigError(f"SubnetLen {subnet_len} does not fit in Network {net} (want /{net.prefixlen + 1}../30)")
        size = 1 << (32 - subnet_len)
        first, last = int(net.network_address), int(net.broadcast_address) + 1 - size
        smin = _addr(doc["SubnetMin"], "SubnetMin") if doc.get("SubnetMin") else ipaddress.IPv4Address(first + size)
        smax = _addr(doc["SubnetMax"], "SubnetMax") if doc.get("SubnetMax") else ipaddress.IPv4Address(last)
        if not first <= int(smin) <= int(smax) <= last or int(smin) % size or int(smax) % size:
            raise ConfigError(f"SubnetMin {smin} / SubnetMax {smax} are not /{subnet_len} subnets of {net} in order")
        backend_doc = doc.get("Backend") or {}
        if not isinstance(backend_doc, dict):
            raise ConfigError("Backend is not an object")
        btype = str(backend_doc.get("Type", "udp"))  # flannel's default backend is udp, which we do not run
        if btype not in BACKENDS:
            raise ConfigError(f"Backend.Type {btype!r} is not supported (have: {', '.join(BACKENDS)})")
        extra = {k: v for k, v in backend_doc.items() if k not in ("Type", "VNI", "Port")}
        return cls(net, subnet_len, smin, smax, btype, int(backend_doc.get("VNI", DEFAULT_VNI)),
                   int(backend_doc.get("Port", DEFAULT_PORT)), extra)

    @property
    def direct_routing(self) -> bool:
        """vxlan's DirectRouting (flannel): peers on this host's underlay segment are routed without VXLAN."""
        return self.backend == "vxlan" and self.backend_extra.get("DirectRouting") is True

    def to_json(self) -> str:
        backend: dict[str, Any] = {"Type": self.backend}
        if self.backend == "vxlan":
            backend.update(VNI=self.vni, Port=self.port)
        backend.update(self.backend_extra)
        return json.dumps({"Network": str(self.network), "SubnetLen": self.subnet_len,
                           "SubnetMin": str(self.subnet_min), "SubnetMax": str(self.subnet_max),
                           "Backend": backend})

    def candidates(self) -> list[ipaddress.IPv4Network]:
        """Every subnet between SubnetMin and SubnetMax, in order."""
        size = 1 << (32 - self.subnet_len)
        return [ipaddress.IPv4Network((a, self.subnet_len)) for a in range(int(self.subnet_min),
                                                                          int(self.subnet_max) + 1, size)]

    def holds(self, subnet: ipaddress.IPv4Network) -> bool:
        """Is subnet one this config could hand out (flannel's isSubnetConfigCompat)?"""
        return (subnet.prefixlen == self.subnet_len and subnet.subnet_of(self.network)
                and int(self.subnet_min) <= int(subnet.network_address) <= int(self.subnet_max))


def subnet_key(subnet: ipaddress.IPv4Network) -> str:
    return f"{subnet.network_address}-{subnet.prefixlen}"


def subnet_from_key(name: str) -> ipaddress.IPv4Network | None:
    """'10.61.7.0-24' (the last path element) -> 10.61.7.0/24. A dual-stack flanneld's key
    '10.61.7.0-24&fd61:0:0:7::-64' gives its IPv4 half: that host is a peer of our IPv4 network and its subnet is
    taken. None for anything else."""
    m = _KEY.match(name)
    if not m:
        return None
    try:
        return ipaddress.IPv4Network(f"{m[1]}/{m[2]}", strict=True)
    except ValueError:
        return None


@dataclass(frozen=True)
class LeaseAttrs:
    public_ip: ipaddress.IPv4Address
    backend: str
    vtep_mac: str | None = None  # vxlan only
    vni: int = DEFAULT_VNI

    def to_json(self) -> str:
        doc: dict[str, Any] = {"PublicIP": str(self.public_ip), "BackendType": self.backend}
        if self.backend == "vxlan":
            doc["BackendData"] = {"VNI": self.vni, "VtepMAC": self.vtep_mac}
        return json.dumps(doc)

    @classmethod
    def parse(cls, text: str | bytes) -> LeaseAttrs:
        try:
            doc = json.loads(text)
        except ValueError as exc:
            raise ConfigError(f"lease value is not JSON: {exc}") from exc
        if not isinstance(doc, dict):
            raise ConfigError("lease value is not an object")
        data = doc.get("BackendData") or {}
        mac = data.get("VtepMAC") if isinstance(data, dict) else None
        vni = int(data.get("VNI", DEFAULT_VNI)) if isinstance(data, dict) else DEFAULT_VNI
        return cls(_addr(doc.get("PublicIP"), "PublicIP"), str(doc.get("BackendType", "")),
                   str(mac).lower() if mac else None, vni)
