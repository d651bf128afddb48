"""The guard's config parser is loaded only when the network configuration has a ``guard`` key (it costs
~0.9 ms per ADD otherwise, STYLE.md (0))."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

PROBE = """
import json, sys
from cni_ignite.netconf import parse_netconf
from cni_ignite.bridge.config import parse_bridge_config
conf = parse_netconf(sys.argv[1].encode())
cfg = parse_bridge_config(conf, "", "ctr1")
print(json.dumps({"loaded": "cni_ignite.guard.config" in sys.modules, "guard": cfg.guard is not None}))
"""


@pytest.mark.parametrize(("guard", "loaded", "on"), [
    (None, False, False), (False, True, False), (True, True, True), ({"enabled": False}, True, False),
    ({"allowedAddressPairs": [{"ipAddress": "10.0.0.9"}]}, True, True),
])
def test_guard_config_is_imported_only_with_the_key(guard: object, loaded: bool, on: bool) -> None:
    conf: dict[str, object] = {"cniVersion": "1.0.0", "name": "n", "type": "ignite-bridge"}
    if guard is not None:
        conf["guard"] = guard
    out = subprocess.run([sys.executable, "-c", PROBE, json.dumps(conf)], capture_output=True, text=True,
                         check=True).stdout
    assert json.loads(out) == {"loaded": loaded, "guard": on}
