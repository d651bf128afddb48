"""A harness for ignite-ipam's unit tests: runs its handlers through the real skeleton, in-process,
against one temporary dataDir, and reads back what is on disk."""

from __future__ import annotations

import io
import json
from typing import TYPE_CHECKING, Any

from cni_ignite import skel
from cni_ignite.ipam import plugin

if TYPE_CHECKING:
    from pathlib import Path

NET = "net1"


class Out:
    def __init__(self, rc: int, text: str) -> None:
        self.rc = rc
        self.text = text
        self.doc: dict[str, Any] | None = json.loads(text) if text else None

    @property
    def ips(self) -> list[str]:
        assert self.rc == 0, self.doc
        assert self.doc is not None
        return [ip["address"] for ip in self.doc["ips"]]

    @property
    def code(self) -> int:
        assert self.rc != 0 and self.doc is not None, self.text
        code: int = self.doc["code"]
        return code


class Ipam:
    """Runs ignite-ipam's handlers through the real skeleton against one temporary dataDir."""

    def __init__(self, data_dir: Path) -> None:
        self.data_dir = data_dir
        self.dir = data_dir / NET

    def conf(self, ipam: dict[str, Any] | None = None, version: str = "1.1.0", **top: Any) -> dict[str, Any]:
        return {"cniVersion": version, "name": NET, "type": "ignite-ipam",
                "ipam": {"type": "ignite-ipam", "dataDir": str(self.data_dir), **(ipam or {})}, **top}

    def __call__(self, command: str, conf: dict[str, Any] | None = None, *, cid: str = "c1", ifname: str = "eth0",
                 args: str = "") -> Out:
        env = {"CNI_COMMAND": command, "CNI_PATH": "/opt/cni/bin", "CNI_ARGS": args}
        if command in ("ADD", "DEL", "CHECK"):
            env |= {"CNI_CONTAINERID": cid, "CNI_NETNS": "/var/run/netns/x", "CNI_IFNAME": ifname}
        out, internal = io.StringIO(), list[BaseException]()
        rc = skel.run(plugin.HANDLERS, env=env, stdin=io.BytesIO(json.dumps(conf or self.conf()).encode()),
                      stdout=out, stderr=io.StringIO(), about="ignite-ipam", on_internal_error=internal.append)
        if internal:
            raise internal[0]
        return Out(rc, out.getvalue())

    def files(self) -> dict[str, bytes]:
        if not self.dir.exists():
            return {}
        return {p.name: p.read_bytes() for p in sorted(self.dir.iterdir())}

    def leases(self) -> dict[str, bytes]:
        return {k: v for k, v in self.files().items() if k[0].isdigit() or ":" in k}
