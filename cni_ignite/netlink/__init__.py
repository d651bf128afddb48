"""Kernel-side networking for the plugins: links, addresses, routes, bridge ports/VLANs, taps, tc redirect.

Modules (import the one you need; this package imports nothing at load time):

* ``ops``     value types (LinkInfo, Addr, Route, BridgeVlan...), errors, the NetlinkOps protocol; cheap;
* ``rtnl``    ``Rtnl``: one netlink socket in one netns (rtnetlink messages built with struct);
* ``netns``   open/identify/enter network namespaces by fd;
* ``tap``     persistent taps through /dev/net/tun;
* ``sysctl``  /proc/sys/net values, written only when different.

The names below are also reachable as ``cni_ignite.netlink.<name>``, loaded on first access.
"""

from __future__ import annotations

TYPE_CHECKING = False  # not typing.TYPE_CHECKING: no typing import on a plugin's path (cni_ignite/__init__.py)
if TYPE_CHECKING:
    from typing import Any

    from .netns import entered, ns_id, open_netns
    from .ops import (
        Addr,
        BridgeAttrs,
        BridgePort,
        BridgeVlan,
        LinkExists,
        LinkInfo,
        LinkNotFound,
        LinkNotUp,
        NetlinkError,
        NetlinkOps,
        NetnsGone,
        Route,
    )
    from .rtnl import Rtnl
    from .tap import create_tap

_LAZY = {
    "Addr": "ops", "BridgeAttrs": "ops", "BridgePort": "ops", "BridgeVlan": "ops", "LinkExists": "ops",
    "LinkInfo": "ops", "LinkNotFound": "ops", "LinkNotUp": "ops", "NetlinkError": "ops", "NetlinkOps": "ops",
    "NetnsGone": "ops", "Route": "ops", "Rtnl": "rtnl", "create_tap": "tap", "entered": "netns",
    "ns_id": "netns", "open_netns": "netns",
}

__all__ = [
    "Addr", "BridgeAttrs", "BridgePort", "BridgeVlan", "LinkExists", "LinkInfo", "LinkNotFound", "LinkNotUp",
    "NetlinkError", "NetlinkOps", "NetnsGone", "Route", "Rtnl", "create_tap", "entered", "ns_id", "open_netns",
]


def __getattr__(name: str) -> Any:
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    import importlib  # only here: nothing on the plugins' path takes this route

    return getattr(importlib.import_module(f"{__name__}.{module}"), name)


def __dir__() -> list[str]:
    return __all__
