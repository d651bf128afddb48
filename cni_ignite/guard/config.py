"""The ``guard`` key of a bridge network configuration; pure parsing.

    "guard": true                       the guard with its defaults
    "guard": false | absent             no guard (drop-in compatible with the reference bridge plugin)
    "guard": {                          the guard, with options
        "enabled": true,                default true when the object is given
        "allowedAddressPairs": [        extra addresses the attachment may send from, as Neutron's
            {"ipAddress": "10.61.0.100"},                       allowed-address-pairs (a VRRP VIP, say)
            {"ipAddress": "10.61.7.0/24", "macAddress": "02:00:5e:00:01:07"}
        ]
    }

``ipAddress`` is an address or a prefix (IPv4 or IPv6; not /0, which would switch the guard off for that
family); ``macAddress`` is optional and, when given, is also allowed as a source MAC (as a VRRP virtual
MAC). The pairs belong to the attachment as a whole: any of its allowed MACs may carry any of its allowed
addresses (the guard keys everything by port, not by MAC and address together).

What the guard allows by default (the rest is dropped; see ``rules`` for the ruleset):
- source MAC: the attachment's (the container interface's; in VM bridge mode also the guest's);
- IPv4 source: the attachment's addresses, and 0.0.0.0 only for a DHCP client (UDP 68 -> 67);
- IPv6 source: the attachment's addresses and the EUI-64 link-local of each allowed MAC, and :: only for
  duplicate address detection (neighbour solicitation for one of its own addresses, MLD reports);
- ARP request/reply whose sender MAC and sender IP are the attachment's; probes (sender IP 0.0.0.0);
- never: router advertisements, redirects, router renumbering; DHCP and DHCPv6 server messages (UDP from
  port 67 / 547, or to a client's port 68 / 546 from any port); neighbour advertisements for an address
  not its own; other ethertypes (STP, LLDP, RARP ...);
- 802.1Q-tagged frames only from a VLAN trunk port (``vlanTrunk``), and then checked as above by their inner
  ethertype (ARP, IPv4, IPv6; any VID: the bridge's VLAN filtering limits those); never QinQ, 802.1ad or
  another inner ethertype.
These are libvirt nwfilter ``clean-traffic`` (no-mac/ip/arp-spoofing, allow-dhcp, no-other-l2-traffic)
plus Neutron port security's RA guard and DHCP server guard.
"""

from __future__ import annotations

from ..errors import InvalidConfig

TYPE_CHECKING = False  # not typing.TYPE_CHECKING: no typing import on a plugin's path (cni_ignite/__init__.py)
if TYPE_CHECKING:
    from typing import Any
    from typing import NamedTuple as Record

    from ..ipparse import IPNetwork
else:
    from .. import Record  # a NamedTuple at namedtuple's cost (cni_ignite/__init__.py)

KEY = "guard"
MAC_PATTERN = r"[0-9a-fA-F]{2}(:[0-9a-fA-F]{2}){5}\Z"  # compiled on use (re's cache): not on every ADD


class AddressPair(Record):
    network: IPNetwork
    mac: str = ""  # lower case; "" = any of the attachment's own MACs


class GuardConfig(Record):
    enabled: bool = False
    pairs: tuple[AddressPair, ...] = ()


OFF = GuardConfig()


def parse_guard(doc: dict[str, Any]) -> GuardConfig:
    """The guard settings of a network configuration object (the bridge plugin's parsed stdin)."""
    raw = doc.get(KEY)
    if raw is None or raw is False:
        return OFF
    if raw is True:
        return GuardConfig(enabled=True)
    if not isinstance(raw, dict):
        raise InvalidConfig(f"{KEY} must be true, false or an object", repr(raw)[:200])
    enabled = raw.get("enabled", True)
    if not isinstance(enabled, bool):
        raise InvalidConfig(f"{KEY}.enabled must be true or false", repr(enabled)[:200])
    items = raw.get("allowedAddressPairs")
    items = [] if items is None else items
    if not isinstance(items, list):
        raise InvalidConfig(f"{KEY}.allowedAddressPairs must be a list", repr(items)[:200])
    return GuardConfig(enabled=enabled, pairs=tuple(_pair(item) for item in items))


def _pair(item: object) -> AddressPair:
    where = f"{KEY}.allowedAddressPairs"
    if not isinstance(item, dict):
        raise InvalidConfig(f"{where} entries must be objects", repr(item)[:200])
    from ..ipparse import ip_network

    try:
        net = ip_network(item.get("ipAddress"), f"{where}.ipAddress")
    except ValueError as exc:
        raise InvalidConfig(f"invalid {where}.ipAddress", str(exc)) from exc
    if net.prefixlen == 0:
        raise InvalidConfig(f"{where}.ipAddress {net} would allow every source address", "use a narrower prefix")
    mac = item.get("macAddress", "") or ""
    import re  # only for a pair with a MAC: no regex on the plugins' usual path

    if not isinstance(mac, str) or (mac and not re.match(MAC_PATTERN, mac)):
        raise InvalidConfig(f"invalid {where}.macAddress", repr(mac)[:200])
    if mac and int(mac[:2], 16) & 1:
        raise InvalidConfig(f"{where}.macAddress {mac} is a multicast address")
    return AddressPair(network=net, mac=mac.lower())
