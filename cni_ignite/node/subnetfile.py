"""The subnet file the plugins read, in flannel's subnet.env format (KEY=value lines):

    FLANNEL_NETWORK=10.61.0.0/16
    FLANNEL_SUBNET=10.61.7.1/24      the subnet's first address (the bridge gateway) with the subnet's length
    FLANNEL_MTU=1450
    FLANNEL_IPMASQ=false             false: the agent masquerades nothing; the plugin does (flannel's meaning)

Written atomically (temp file + rename) so a plugin never reads half a file. The agent reads it back on start
to reclaim its previous subnet, as flanneld does.
"""

from __future__ import annotations

import contextlib
import ipaddress
import json
import os
import tempfile
from dataclasses import dataclass
from typing import Any

__all__ = ["DEFAULT_SUBNET_FILE", "SubnetFile", "agent_state_path", "read_subnet_file", "write_agent_state",
           "write_subnet_file"]

DEFAULT_SUBNET_FILE = "/run/flannel/subnet.env"


@dataclass(frozen=True)
class SubnetFile:
    network: ipaddress.IPv4Network
    subnet: ipaddress.IPv4Network
    mtu: int
    ipmasq: bool = False

    def render(self) -> str:
        gateway = self.subnet.network_address + 1
        return (f"FLANNEL_NETWORK={self.network}\nFLANNEL_SUBNET={gateway}/{self.subnet.prefixlen}\n"
                f"FLANNEL_MTU={self.mtu}\nFLANNEL_IPMASQ={'true' if self.ipmasq else 'false'}\n")


def agent_state_path(subnet_file: str) -> str:
    """Where the agent says who it is for `cni-ignite status` (pid, etcd endpoints and prefix, backend): beside
    the subnet file, so status finds it from the network config's ipam.subnetFile."""
    return subnet_file + ".cni-ignite-node.json"


def write_agent_state(subnet_file: str, doc: dict[str, Any]) -> None:
    _write_atomically(agent_state_path(subnet_file), json.dumps(doc, indent=1) + "\n")


def write_subnet_file(path: str, content: SubnetFile) -> None:
    _write_atomically(path, content.render())


def _write_atomically(path: str, text: str) -> None:
    folder = os.path.dirname(os.path.abspath(path))
    os.makedirs(folder, mode=0o755, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{os.path.basename(path)}.", dir=folder)
    try:
        with os.fdopen(fd, "w") as f:
            f.write(text)
            f.flush()
            os.fsync(f.fileno())
        os.chmod(tmp, 0o644)
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        raise


def read_subnet_file(path: str) -> SubnetFile | None:
    """The file's content, or None when it is missing or not a complete IPv4 subnet file."""
    try:
        with open(path) as f:
            text = f.read()
    except (FileNotFoundError, NotADirectoryError):
        return None
    values: dict[str, str] = {}
    for line in text.splitlines():
        name, sep, value = line.strip().partition("=")
        if sep:
            values[name] = value.strip()
    try:
        return SubnetFile(ipaddress.IPv4Network(values["FLANNEL_NETWORK"]),
                          ipaddress.IPv4Interface(values["FLANNEL_SUBNET"]).network,
                          int(values.get("FLANNEL_MTU", "0")), values.get("FLANNEL_IPMASQ", "false") == "true")
    except (KeyError, ValueError):
        return None
