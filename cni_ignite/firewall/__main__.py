"""A small JSON driver over the firewall layer, for tests, benchmarks and debugging.

    echo '{"verb": "add", "conf": {...bridge conf keys...}, "network": "n", "containerID": "c",
           "ifname": "eth0", "addresses": ["10.99.0.2/24"], "hostIface": "br0"}' | python -m cni_ignite.firewall

verbs: add, del, check, gc (with "valid": [[containerID, ifname], ...]), list. Several requests may be
given as a JSON list; each answer is one line of JSON on stdout: {"ok": ...} or {"error", "code"}.
"""

from __future__ import annotations

import json
import sys
from typing import Any

from ..errors import CniError, InvalidConfig
from ..ipparse import ip_interface
from ..netconf import canonical_runtime_config, obj_field
from .base import Attachment, Owner, parse_firewall_config
from .core import RuleFirewall


def handle(req: dict[str, Any]) -> dict[str, Any]:
    conf = obj_field(req, "conf")
    runtime = canonical_runtime_config(obj_field(conf, "runtimeConfig"))
    verb = req["verb"]
    # like the bridge: DEL and GC read no port mappings (a record, or the attachment's key, suffices)
    cfg = parse_firewall_config(conf, None if verb in {"del", "gc"} else runtime)
    fw = RuleFirewall(state_dir=cfg.state_dir)
    owner = Owner(network=req.get("network", ""), container_id=req.get("containerID", ""),
                  ifname=req.get("ifname", ""))
    try:
        addrs = tuple(ip_interface(a) for a in req.get("addresses", ()))
    except ValueError as exc:
        raise InvalidConfig("invalid address", str(exc)) from exc
    att = Attachment(owner=owner, addresses=addrs, host_iface=req.get("hostIface", ""))
    if verb == "add":
        return {"ok": True, "routeLocalnet": list(fw.add(att, cfg))}
    if verb == "del":
        fw.delete(owner, cfg, addrs)
        return {"ok": True}
    if verb == "check":
        return {"ok": True, "problems": fw.check(att, cfg)}
    if verb == "gc":
        fw.gc(owner.network, {(c, i) for c, i in req.get("valid", ())}, cfg)
        return {"ok": True}
    if verb == "list":
        return {"ok": True, "attachments": [str(a) for a in fw.attachments(req.get("network"))]}
    return {"error": f"unknown verb {verb}", "code": 4}


def main() -> int:
    doc = json.load(sys.stdin)
    rc = 0
    for req in doc if isinstance(doc, list) else [doc]:
        try:
            out = handle(req)
        except CniError as exc:
            out, rc = {"error": str(exc), "code": exc.code}, 1
        sys.stdout.write(json.dumps(out) + "\n")
    return rc


if __name__ == "__main__":
    sys.exit(main())
