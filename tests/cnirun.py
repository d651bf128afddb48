"""Run a CNI plugin binary the way a runtime does: env + stdin in, JSON out, inside a "host" namespace."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from collections.abc import Mapping

REPO = Path(__file__).resolve().parent.parent
GO_PLUGINS = Path("/usr/lib/cni")


def source_bin_dir() -> Path:
    """A folder with ignite-bridge / ignite-ipam from the source tree (venv console scripts)."""
    import sys

    bindir = Path(sys.executable).parent
    for name in ("ignite-bridge", "ignite-ipam"):
        if not (bindir / name).exists():
            raise RuntimeError(f"{name} is not installed in {bindir}; run `make setup`")
    return bindir


@dataclass
class Call:
    rc: int
    out: dict[str, Any] | None
    stdout: str
    stderr: str

    def ok(self) -> Call:
        assert self.rc == 0, f"plugin failed ({self.rc}): {self.stdout} {self.stderr}"
        return self


def call(plugin: str | Path, command: str, conf: Mapping[str, Any] | str, *, host_ns: str | None = None,
         container_id: str = "", netns: str = "", ifname: str = "eth0", cni_path: str = "",
         cni_args: str = "", extra_env: Mapping[str, str] | None = None, timeout: float = 60) -> Call:
    env = {"PATH": os.environ.get("PATH", "/usr/sbin:/usr/bin:/sbin:/bin"), "CNI_COMMAND": command,
           "CNI_CONTAINERID": container_id, "CNI_NETNS": netns, "CNI_IFNAME": ifname,
           "CNI_PATH": cni_path or str(Path(plugin).parent), "CNI_ARGS": cni_args}
    if extra_env:
        env.update(extra_env)
    data = conf if isinstance(conf, str) else json.dumps(conf)
    argv = [str(plugin)]
    if host_ns:
        argv = ["ip", "netns", "exec", host_ns, *argv]
    res = subprocess.run(argv, input=data.encode(), capture_output=True, env=env, timeout=timeout, check=False)
    text = res.stdout.decode()
    try:
        out = json.loads(text) if text.strip() else None
    except ValueError:
        out = None
    return Call(res.returncode, out, text, res.stderr.decode())


def have(program: str) -> bool:
    return shutil.which(program) is not None
