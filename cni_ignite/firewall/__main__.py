"""A small JSON driver over the firewall layer, for tests, benchmarks and debugging.

    echo '{"verb": "add", "conf": {...bridge conf keys...}, "network": "n", "containerID": "c",
           "ifname": "eth0", "addresses": ["10.99.0.2/24"], "hostIface": "br0"}' | python -m cni_ignite.firewall

verbs: add, del, check, gc (with "valid": [[containerID, ifname], ...]), list. Several requests may be
given as a JSON list; each answer is one line of JSON on stdout: {"ok": ...} or {"error", "code"}.
"""

from __future__ import annotations

import ipaddress
import json
import sys
from typing import Any

from ..errors import CniError
from .base import Attachment, Owner, open_firewall, parse_firewall_config


def handle(req: dict[str, Any]) -> dict[str, Any]:
    cfg = parse_firewall_config(req.get("conf", {}))
    fw = open_firewall(cfg)
    verb = req["verb"]
    owner = Owner(network=req.get("network", ""), container_id=req.get("containerID", ""),
                  ifname=req.get("ifname", ""))
    addrs = tuple(ipaddress.ip_interface(a) for a in req.get("addresses", ()))
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
