"""The subnet file the multi-node agent writes (flannel's ``subnet.env``), read by ignite-ipam's
``subnetFile`` key. The plugins never import the agent (cni_ignite/node); this is their own small reader.

    FLANNEL_NETWORK=10.61.0.0/16      the whole network (all hosts)
    FLANNEL_SUBNET=10.61.7.1/24       this host's gateway address with its subnet's length
    FLANNEL_MTU=1450                  the overlay MTU
    FLANNEL_IPMASQ=false              whether the agent masquerades (ours never does)

The agent replaces the file atomically, so a reader never sees half of it.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, NamedTuple

from . import ipparse
from .errors import InvalidConfig, TryAgainLater

if TYPE_CHECKING:
    from .ipparse import IPInterface, IPNetwork

MAX_BYTES = 4096


class SubnetEnv(NamedTuple):
    network: IPNetwork
    subnet: IPInterface  # the gateway address with the host subnet's prefix
    mtu: int
    ipmasq: bool


def parse_subnet_env(text: str, where: str = "subnet file") -> SubnetEnv:
    values: dict[str, str] = {}
    for raw in text.splitlines():
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        key, sep, value = line.partition("=")
        if not sep:
            raise InvalidConfig(f"{where}: not KEY=VALUE", repr(line)[:100])
        values[key.strip()] = value.strip()
    try:
        network = ipparse.ip_network(values.get("FLANNEL_NETWORK"), "FLANNEL_NETWORK", strict=True)
        subnet = ipparse.ip_interface(values.get("FLANNEL_SUBNET"), "FLANNEL_SUBNET")
    except ValueError as exc:
        raise InvalidConfig(f"{where}: {exc}") from exc
    if subnet.version != network.version or not subnet.network.subnet_of(network):  # type: ignore[arg-type]
        raise InvalidConfig(f"{where}: FLANNEL_SUBNET {subnet} is not inside FLANNEL_NETWORK {network}")
    mtu_text = values.get("FLANNEL_MTU", "1500")
    if not mtu_text.isdigit() or not 68 <= int(mtu_text) <= 65535:
        raise InvalidConfig(f"{where}: FLANNEL_MTU must be 68-65535", repr(mtu_text))
    return SubnetEnv(network=network, subnet=subnet, mtu=int(mtu_text),
                     ipmasq=values.get("FLANNEL_IPMASQ", "false").lower() == "true")


def read_subnet_env(path: str) -> SubnetEnv:
    """The file's values; a missing file is TryAgainLater (11): the node agent has not leased a subnet yet."""
    try:
        with open(path, encoding="utf-8", errors="replace") as fh:
            text = fh.read(MAX_BYTES + 1)
    except FileNotFoundError as exc:
        raise TryAgainLater(f"subnet file {path} does not exist",
                            "is the multi-node agent (cni-ignite node) running and has it leased a subnet?") from exc
    except OSError as exc:
        raise TryAgainLater(f"cannot read subnet file {path}", str(exc)) from exc
    if len(text) > MAX_BYTES:
        raise InvalidConfig(f"subnet file {path} is larger than {MAX_BYTES} bytes")
    return parse_subnet_env(text, f"subnet file {path}")
