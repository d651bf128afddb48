"""pyroute2's own message classes, as an independent oracle for the struct-built netlink messages.

Loaded with the ``pyroute2`` package registered from its spec (its ``__init__`` imports every subsystem).
"""

from __future__ import annotations

import importlib.util
import sys
from typing import Any

if "pyroute2" not in sys.modules:
    _spec = importlib.util.find_spec("pyroute2")
    assert _spec is not None
    sys.modules["pyroute2"] = importlib.util.module_from_spec(_spec)

from pyroute2.netlink.rtnl.ifaddrmsg import ifaddrmsg
from pyroute2.netlink.rtnl.ifinfmsg import ifinfmsg
from pyroute2.netlink.rtnl.rtmsg import rtmsg

ifaddrmsg: Any
ifinfmsg: Any
rtmsg: Any

__all__ = ["ifaddrmsg", "ifinfmsg", "rtmsg"]
