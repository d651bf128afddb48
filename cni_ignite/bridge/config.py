"""ignite-bridge configuration: the reference bridge plugin's keys plus VM mode; pure parsing.

Keys and defaults follow containernetworking/plugins' bridge (see README "Configuration"), except:
the bridge defaults to ``ignite0``; its MAC is always pinned; ``vm`` adds a TAP for a microVM;
``"mode": "routed"`` attaches without a bridge (see ``routed``): the keys that configure a bridge or its
ports (bridge, vlan, vlanTrunk, preserveDefaultVlan, hairpinMode, promiscMode, portIsolation,
macspoofchk, forceAddress) and isGateway: false then have no meaning and are refused (code 7).
"""

from __future__ import annotations

import os

from .._sha import sha256
from ..errors import InvalidConfig
from ..identity import OWNER_ARG, owner_of
from ..netconf import NetConf, bool_field, int_field, list_field, obj_field, parse_cni_args, str_field
from ..netlink.ops import TAP_MAX_ID, TAP_MAX_MTU

TYPE_CHECKING = False  # not typing.TYPE_CHECKING: no typing import on a plugin's path (cni_ignite/__init__.py)
if TYPE_CHECKING:
    from typing import Any
    from typing import NamedTuple as Record

    from ..guard.config import GuardConfig
else:
    from .. import Record

# CNI_ARGS keys ignite-bridge understands (MAC as the reference bridge; IP goes to the IPAM;
# TC_REDIRECT_TAP_* as awslabs/tc-redirect-tap takes them; IGNITE_OWNER names the owner, see identity).
KNOWN_ARGS = frozenset({"IP", "MAC", "TC_REDIRECT_TAP_NAME", "TC_REDIRECT_TAP_UID", "TC_REDIRECT_TAP_GID",
                        OWNER_ARG})
OUR_IPAM = frozenset({"ignite-ipam"})
# As text: re is imported, and the pattern compiled, only when a call gives a MAC (not on every call).
MAC_RE = r"^[0-9a-fA-F]{2}(:[0-9a-fA-F]{2}){5}$"

VM_MODES = ("none", "tc-redirect", "bridge")
MODES = ("bridge", "routed")
# Keys that only describe the bridge or its ports: set in routed mode they are an error, not ignored.
BRIDGE_ONLY = ("bridge", "vlan", "vlanTrunk", "preserveDefaultVlan", "hairpinMode", "promiscMode", "portIsolation",
               "macspoofchk", "forceAddress")


def _is_mac(text: str) -> bool:
    import re

    return re.match(MAC_RE, text) is not None


class VlanRange(Record):
    lo: int
    hi: int


class VmConfig(Record):
    mode: str = "none"          # none | tc-redirect | bridge
    tap: str = "tap0"
    uid: int = -1               # -1: the plugin's euid (as tc-redirect-tap)
    gid: int = -1
    guest_mac: str = ""         # bridge mode: the VM's MAC (default: derived from the attachment)


class BridgeConfig(Record):
    bridge: str
    is_gateway: bool
    is_default_gateway: bool
    force_address: bool
    ip_masq: bool
    mtu: int
    hairpin_mode: bool
    promisc_mode: bool
    vlan: int
    vlan_trunk: tuple[VlanRange, ...]
    preserve_default_vlan: bool
    mac_spoof_check: bool
    enable_dad: bool
    disable_container_interface: bool
    port_isolation: bool
    ipam_type: str
    mac: str
    dns: dict[str, Any] | None
    vm: VmConfig
    mode: str = "bridge"        # bridge | routed
    owner: str = ""             # identity.owner_of: what survives a restart (MACs derive from it)
    guard: GuardConfig | None = None  # None: no guard (no ``guard`` key, false, or enabled: false)

    @property
    def routed(self) -> bool:
        return self.mode == "routed"


def parse_bridge_config(conf: NetConf, cni_args_text: str, container_id: str = "", *,
                        strict_owner: bool = True) -> BridgeConfig:
    """The config of one call; `container_id` is the owner when the runtime names none (identity). A
    malformed owner is an error (code 4 / 7) unless not `strict_owner` (DEL must not fail on it)."""
    doc = conf.raw
    cni_args = parse_cni_args(cni_args_text, KNOWN_ARGS)
    ipam_type = str_field(obj_field(doc, "ipam"), "type", where="ipam.")
    is_default_gw = bool_field(doc, "isDefaultGateway")
    hairpin, promisc = bool_field(doc, "hairpinMode"), bool_field(doc, "promiscMode")
    if hairpin and promisc:
        raise InvalidConfig("cannot set hairpin mode and promiscuous mode at the same time")
    disable_ci = bool_field(doc, "disableContainerInterface")
    if disable_ci and ipam_type:
        raise InvalidConfig("cannot use IPAM when the container interface is disabled (disableContainerInterface)")
    bridge = str_field(doc, "bridge", default="ignite0") or "ignite0"
    _check_ifname(bridge, "bridge")
    dns = doc.get("dns")
    if dns is not None and not isinstance(dns, dict):
        raise InvalidConfig("dns must be an object", repr(dns))
    mtu = int_field(doc, "mtu", default=0, lo=0, hi=65535)
    vm = _vm(doc, cni_args)
    mode = _mode(doc, ipam_type)
    if vm.mode != "none" and mtu > TAP_MAX_MTU:
        raise InvalidConfig(f"mtu {mtu} is too large for VM mode", f"a tap's MTU is at most {TAP_MAX_MTU}")
    guard = _guard(doc)
    args_cni = obj_field(conf.args, "cni", where="args.")
    return BridgeConfig(
        bridge=bridge,
        is_gateway=bool_field(doc, "isGateway") or is_default_gw or mode == "routed",
        is_default_gateway=is_default_gw,
        force_address=bool_field(doc, "forceAddress"),
        ip_masq=bool_field(doc, "ipMasq") and bool(ipam_type),
        mtu=mtu,
        hairpin_mode=hairpin,
        promisc_mode=promisc,
        vlan=int_field(doc, "vlan", default=0, lo=0, hi=4094),
        vlan_trunk=_vlan_trunk(doc),
        preserve_default_vlan=bool_field(doc, "preserveDefaultVlan"),
        mac_spoof_check=bool_field(doc, "macspoofchk"),
        enable_dad=bool_field(doc, "enabledad"),
        disable_container_interface=disable_ci,
        port_isolation=bool_field(doc, "portIsolation"),
        ipam_type=ipam_type,
        mac=_mac(conf, cni_args),
        dns=dns,
        vm=vm,
        mode=mode,
        owner=owner_of(container_id, cni_args_text, args_cni, strict=strict_owner),
        guard=guard,
    )


def _guard(doc: dict[str, Any]) -> GuardConfig | None:
    """The guard's settings, None when it is off; its parser is loaded only when the key is there (0.9 ms
    per call otherwise)."""
    if doc.get("guard") is None:
        return None
    from ..guard.config import parse_guard

    guard = parse_guard(doc)
    return guard if guard.enabled else None


def _mode(doc: dict[str, Any], ipam_type: str) -> str:
    mode = str_field(doc, "mode", default="bridge") or "bridge"
    if mode not in MODES:
        raise InvalidConfig("invalid mode", f"{mode!r} is not one of {', '.join(MODES)}")
    if mode == "bridge":
        return mode
    bad = [k for k in BRIDGE_ONLY if doc.get(k) not in (None, False, 0, [], "")]
    if bad:
        raise InvalidConfig(f"{', '.join(bad)} cannot be used in routed mode",
                            "routed mode makes no bridge: each attachment is routed through its own host veth")
    if doc.get("isGateway") is False:
        raise InvalidConfig("routed mode needs isGateway (the host is every attachment's gateway)")
    if not ipam_type:
        raise InvalidConfig("routed mode needs an ipam section (the host routes each attachment's addresses)")
    return mode


def _check_ifname(name: str, what: str) -> None:
    if not name or len(name.encode()) > 15 or name in (".", "..") or any(
            c in "/:" or c.isspace() or not c.isprintable() for c in name):  # a NUL cuts the name in netlink/nft
        raise InvalidConfig(f"invalid {what} name", repr(name))


def _vlan_trunk(doc: dict[str, Any]) -> tuple[VlanRange, ...]:
    out: list[VlanRange] = []
    for item in list_field(doc, "vlanTrunk"):
        if not isinstance(item, dict):
            raise InvalidConfig("vlanTrunk entries must be objects", repr(item))
        if item.get("id") is not None:
            vid = int_field(item, "id", lo=1, hi=4094, where="vlanTrunk.")
            out.append(VlanRange(vid, vid))
            continue
        lo = int_field(item, "minID", default=-1, where="vlanTrunk.")
        hi = int_field(item, "maxID", default=-1, where="vlanTrunk.")
        if lo < 1 or hi < 1:
            raise InvalidConfig("vlanTrunk entries need id or both minID and maxID", repr(item))
        if not (1 <= lo <= 4094 and 1 <= hi <= 4094) or lo > hi:
            raise InvalidConfig("invalid vlanTrunk range", f"minID {lo}, maxID {hi} (1-4094, minID <= maxID)")
        out.append(VlanRange(lo, hi))
    return tuple(out)


def _mac(conf: NetConf, cni_args: dict[str, str]) -> str:
    """runtimeConfig.mac (the `mac` capability) > args.cni.mac > CNI_ARGS MAC=, as the reference bridge."""
    cni = obj_field(conf.args, "cni", where="args.")
    for value in (conf.runtime_config.get("mac"), cni.get("mac"), cni_args.get("MAC")):
        if value:
            if not isinstance(value, str) or not _is_mac(value):
                raise InvalidConfig("invalid MAC address", repr(value))
            return value.lower()
    return ""


def _vm(doc: dict[str, Any], cni_args: dict[str, str]) -> VmConfig:
    raw = obj_field(doc, "vm")
    mode = str_field(raw, "mode", default="none", where="vm.") or "none"
    if mode not in VM_MODES:
        raise InvalidConfig("invalid vm.mode", f"{mode!r} is not one of {', '.join(VM_MODES)}")
    tap = cni_args.get("TC_REDIRECT_TAP_NAME") or str_field(raw, "tap", default="tap0", where="vm.") or "tap0"
    _check_ifname(tap, "vm.tap")
    uid = _id(cni_args.get("TC_REDIRECT_TAP_UID"), raw, "uid")
    gid = _id(cni_args.get("TC_REDIRECT_TAP_GID"), raw, "gid")
    guest_mac = str_field(raw, "guestMac", where="vm.").lower()
    if guest_mac and not _is_mac(guest_mac):
        raise InvalidConfig("invalid vm.guestMac", guest_mac)
    return VmConfig(mode=mode, tap=tap, uid=uid, gid=gid, guest_mac=guest_mac)


def _id(from_args: str | None, raw: dict[str, Any], key: str) -> int:
    """The tap's owner/group: 0..2**32-2 (a uid_t; -1 means the plugin's own, as tc-redirect-tap)."""
    if from_args:
        if not from_args.isascii() or not from_args.isdigit() or int(from_args) > TAP_MAX_ID:
            raise InvalidConfig(f"invalid TC_REDIRECT_TAP_{key.upper()}", f"{from_args!r} (0..{TAP_MAX_ID})")
        return int(from_args)
    value = int_field(raw, key, default=-1, lo=-1, hi=TAP_MAX_ID, where="vm.")
    if value >= 0:
        return value
    return os.geteuid() if key == "uid" else os.getegid()


def attachment_hash(network: str, container_id: str, ifname: str) -> str:
    return sha256(f"{network}\0{container_id}\0{ifname}".encode()).hexdigest()


def attachment_tag(network: str, container_id: str, ifname: str) -> str:
    """The alias (IFLA_IFALIAS) ADD gives the links it makes, so DEL deletes only links that are this
    attachment's, never another's that happens to hold the same (32-bit hashed) name."""
    return "cni-ignite:" + attachment_hash(network, container_id, ifname)


def host_veth_name(network: str, container_id: str, ifname: str) -> str:
    """Deterministic, so DEL finds the host end without the container namespace."""
    return "veth" + attachment_hash(network, container_id, ifname)[:8]


def derived_mac(network: str, owner: str, ifname: str, salt: str) -> str:
    """A stable, locally administered unicast MAC of (network, owner, ifname): a restarted VM or pod
    comes back with the same MAC (the owner is the container ID when the runtime names no other)."""
    h = sha256(f"{salt}\0{network}\0{owner}\0{ifname}".encode()).digest()
    first = (h[0] & 0xFC) | 0x02
    return ":".join(f"{b:02x}" for b in (first, *h[1:6]))
