"""``python -m conformance --cni-path DIR --conflist FILE [--report out.json] [--markdown out.md]``.

Exit status: 0 when no case fails (skips allowed), 1 when any case fails or is blocked, 2 on bad usage.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shlex
import sys
import time
from pathlib import Path

from . import report
from .suite import VERSIONS, Suite


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m conformance", description=__doc__)
    ap.add_argument("--cni-path", required=True, help="plugin directory (':'-separated list allowed)")
    ap.add_argument("--conflist", required=True, type=Path)
    ap.add_argument("--report", type=Path, help="write the JSON report here")
    ap.add_argument("--markdown", type=Path, help="write the markdown report here")
    ap.add_argument("--versions", default=",".join(VERSIONS), help="cniVersions to run (default: %(default)s)")
    ap.add_argument("--jobs", type=int, default=len(VERSIONS), help="cniVersions run in parallel")
    ap.add_argument("--title", default="", help="report title")
    ap.add_argument("--plugin-env", action="append", default=[], metavar="NAME=VALUE",
                    help="add a variable to every plugin exec's environment (repeatable)")
    args = ap.parse_args(argv)
    if os.geteuid() != 0:
        print("conformance: needs root (it creates network namespaces)", file=sys.stderr)
        return 2
    netlist = json.loads(args.conflist.read_text())
    cni_path = [Path(p).absolute() for p in args.cni_path.split(":") if p]
    plugin_env = dict(kv.split("=", 1) for kv in args.plugin_env if "=" in kv)
    suite = Suite(cni_path, netlist, tuple(v for v in args.versions.split(",") if v), args.jobs,
                  plugin_env=plugin_env)
    start = time.monotonic()
    rows = suite.run()
    meta = {"title": args.title, "conflist": str(args.conflist), "network": netlist.get("name"),
            "chain": [p["type"] for p in netlist["plugins"]], "cni_path": [str(p) for p in cni_path],
            "versions": list(suite.versions), "supported": suite.supported,
            "kept": sorted({re.sub(r"(last_reserved_ip\.\d+):.*", r"\1", k) for k in suite.kept}),
            "command": "python -m conformance " + shlex.join(argv if argv is not None else sys.argv[1:]),
            "seconds": time.monotonic() - start}
    print(report.table(rows))
    if args.report:
        args.report.write_text(report.as_json(rows, meta))
    if args.markdown:
        args.markdown.write_text(report.markdown(rows, meta))
    return 1 if any(r.status in ("FAIL", "BLOCKED") for r in rows) else 0


if __name__ == "__main__":
    sys.exit(main())
