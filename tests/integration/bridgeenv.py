"""A throwaway host namespace with the bridge plugin, for integration tests and the demo."""

from __future__ import annotations

import json
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from cnirun import Call, call, source_bin_dir
from nsutil import Namespaces, in_ns, path


def base_conf(data_dir: str, version: str = "1.0.0", **extra: Any) -> dict[str, Any]:
    conf: dict[str, Any] = {
        "cniVersion": version, "name": "testnet", "type": "ignite-bridge", "bridge": "ignite0",
        "isGateway": True, "isDefaultGateway": True, "promiscMode": True,
        "ipam": {"type": "ignite-ipam", "subnet": "10.61.0.0/16", "dataDir": data_dir},
        "stateDir": f"{data_dir}/ignite-state",  # never the machine's /var/lib/cni
    }
    conf.update(extra)
    return conf


@dataclass
class HostEnv:
    spaces: Namespaces
    bin_dir: Path = field(default_factory=source_bin_dir)
    host: str = ""
    data_dir: str = ""

    def __post_init__(self) -> None:
        self.host = self.spaces.new("cnit-host")
        self.data_dir = tempfile.mkdtemp(prefix="cnit-ipam-")

    @property
    def plugin(self) -> Path:
        return self.bin_dir / "ignite-bridge"

    def container(self) -> str:
        return self.spaces.new("cnit-ctr")

    def run(self, command: str, conf: dict[str, Any], cid: str, ns: str | None, ifname: str = "eth0",
            cni_args: str = "", plugin: Path | None = None, cni_path: str = "", netns_path: str = "",
            extra_env: dict[str, str] | None = None) -> Call:
        """Run the plugin in the host namespace; netns_path overrides CNI_NETNS (for odd paths)."""
        return call(plugin or self.plugin, command, conf, host_ns=self.host, container_id=cid,
                    netns=netns_path or (path(ns) if ns else ""), ifname=ifname, cni_args=cni_args,
                    cni_path=cni_path or str(self.bin_dir), extra_env=extra_env)

    def add(self, conf: dict[str, Any], cid: str, ns: str, **kw: Any) -> dict[str, Any]:
        res = self.run("ADD", conf, cid, ns, **kw).ok()
        assert res.out is not None
        return res.out

    def host_sh(self, *argv: str, check: bool = True) -> str:
        return in_ns(self.host, argv, check=check).stdout.decode()

    def ns_sh(self, ns: str, *argv: str, check: bool = True) -> str:
        return in_ns(ns, argv, check=check).stdout.decode()

    def links(self) -> set[str]:
        return {line.split()[1].split("@")[0].rstrip(":") for line in self.host_sh("ip", "-o", "link").splitlines()}

    def rules(self) -> str:
        return self.host_sh("iptables-save", check=False) + self.host_sh("nft", "list", "ruleset", check=False)

    def leases(self, network: str = "testnet") -> list[str]:
        """Addresses leased to attachments (sticky placeholders, held or reserved for an owner, are not)."""
        return [name for name, data in self._address_files(network) if not data.startswith(b"_ignite_")]

    def held(self, network: str = "testnet") -> list[str]:
        """Addresses held or reserved for an owner (sticky placeholders), not leased."""
        return [name for name, data in self._address_files(network) if data.startswith(b"_ignite_")]

    def lease_holder(self, address: str, network: str = "testnet") -> str:
        """The container ID an address is leased to ("" when it is not leased)."""
        files = dict(self._address_files(network))
        data = files.get(address, b"")
        return "" if data.startswith(b"_ignite_") else data.decode().split("\r\n")[0]

    def _address_files(self, network: str) -> list[tuple[str, bytes]]:
        folder = Path(self.data_dir) / network
        if not folder.exists():
            return []
        return sorted((p.name, p.read_bytes()) for p in folder.iterdir()
                      if (p.name[0].isdigit() or ":" in p.name) and p.is_file())

    def ping(self, ns: str, target: str, count: int = 1) -> bool:
        return in_ns(ns, ["ping", "-c", str(count), "-W", "2", target], check=False).returncode == 0


def container_ip(result: dict[str, Any], version: int = 4) -> str:
    for ip in result["ips"]:
        addr = ip["address"].split("/")[0]
        if (":" in addr) == (version == 6):
            return addr
    raise AssertionError(f"no IPv{version} address in {json.dumps(result)}")


def routed_conf(data_dir: str, version: str = "1.0.0", **extra: Any) -> dict[str, Any]:
    """ignite-bridge in routed mode on 10.62.0.0/16 (the shipped routed conflist's subnet)."""
    conf: dict[str, Any] = {
        "cniVersion": version, "name": "routednet", "type": "ignite-bridge", "mode": "routed",
        "isDefaultGateway": True,
        "ipam": {"type": "ignite-ipam", "subnet": "10.62.0.0/16", "dataDir": data_dir},
        "stateDir": f"{data_dir}/ignite-state",
    }
    conf.update(extra)
    return conf
