"""What the runtime tests share: plugin folders, conflists, a busybox rootfs and leak checks.

Plugin flavours:
- ``reference``: Debian's Go plugins (/usr/lib/cni bridge + host-local + portmap); separates harness
  problems from plugin problems.
- ``ignite``: our ignite-bridge (+ in-process ignite-ipam) from ``CNI_IGNITE_BIN_DIR`` (default: the bin
  folder of the running Python, i.e. the venv's console scripts; point it at a folder with the frozen
  binaries to run the same tests against another build).
- ``frozen``: the same, from the PyInstaller bundle ``$CNI_IGNITE_DIST/cni-ignite/cni-ignite`` (default
  dist/ in the repo, built by `make build`), as symlinks named ignite-bridge / ignite-ipam.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

GO_PLUGINS = Path("/usr/lib/cni")
SUBNET = "10.61.0.0/16"
GATEWAY = "10.61.0.1"
PAGE = "hello from a cni-ignite runtime test\n"
# warm: the frozen bundle through its launcher, served by a `cni-ignite worker` in the throwaway host (docs/WORKER.md)
FLAVOURS = ("reference", "ignite", "frozen", "warm")
REPO = Path(__file__).resolve().parent.parent.parent


def ignite_bin_dir() -> Path:
    return Path(os.environ.get("CNI_IGNITE_BIN_DIR") or Path(sys.executable).parent)


def frozen_exe() -> Path:
    return Path(os.environ.get("CNI_IGNITE_DIST", str(REPO / "dist"))) / "cni-ignite" / "cni-ignite"


def launcher_exe() -> Path:
    return frozen_exe().parent / "cni-ignite-launch"


def make_plugin_dir(dest: Path, flavour: str) -> Path:
    """A real folder (no wrappers) holding the plugins of one flavour, safe to bind over /opt/cni/bin."""
    dest.mkdir(parents=True, exist_ok=True)
    if flavour == "reference":
        sources = [GO_PLUGINS / n for n in ("bridge", "host-local", "portmap", "loopback")]
    elif flavour in ("frozen", "warm"):
        exe = frozen_exe() if flavour == "frozen" else launcher_exe()
        if not os.access(exe, os.X_OK):
            raise FileNotFoundError(f"no frozen bundle at {exe}: run `make build`")
        for name in ("ignite-bridge", "ignite-ipam"):
            (dest / name).symlink_to(exe)
        return dest
    else:
        sources = [ignite_bin_dir() / n for n in ("ignite-bridge", "ignite-ipam")]
    for src in sources:
        if not src.exists():
            raise FileNotFoundError(f"{src} is missing (flavour {flavour})")
        target = dest / src.name
        if src.is_symlink():  # e.g. frozen builds: names symlinked to one executable; keep them absolute
            target.symlink_to(src.resolve())
        else:
            shutil.copy2(src, target)
    return dest


def add_loopback(dest: Path, flavour: str) -> Path:
    """Put a ``loopback`` plugin beside the others (containerd's CRI runs it on every pod): Debian's for
    ``reference``, ours otherwise: the bundle's name link for ``frozen``, ``$CNI_IGNITE_BIN_DIR/loopback``
    if there is one, else a console-script-like launcher of ``cni_ignite.cli.loopback_main`` on this Python."""
    target = dest / "loopback"
    if target.exists() or target.is_symlink():
        return target
    own = ignite_bin_dir() / "loopback"
    if flavour == "reference":
        shutil.copy2(GO_PLUGINS / "loopback", target)
    elif flavour in ("frozen", "warm"):
        target.symlink_to(frozen_exe() if flavour == "frozen" else launcher_exe())
    elif own.is_symlink():  # frozen builds: keep the name link absolute
        target.symlink_to(own.resolve())
    elif own.exists():
        shutil.copy2(own, target)
    else:
        target.write_text(f"#!{sys.executable}\nimport sys\nfrom cni_ignite.cli import loopback_main\n"
                          "sys.exit(loopback_main())\n")
        target.chmod(0o755)
    return target



RECORD_FIELDS = ("plugin", "command", "container_id", "ifname", "netns", "args", "stdin")


def wrap_plugins(real: Path, dest: Path, record: Path) -> Path:
    """A folder of recording wrappers, one per plugin in ``real``: each appends one tab-separated line
    (plugin, CNI_COMMAND, CNI_CONTAINERID, CNI_IFNAME, CNI_NETNS, CNI_ARGS, its stdin on one line) to
    ``record``, then execs the real plugin with the same stdin. What a runtime passed, as it passed it.
    The wrappers point into ``real``, never into ``dest`` itself."""
    dest.mkdir(parents=True, exist_ok=True)
    for plugin in sorted(real.iterdir()):
        wrapper = dest / plugin.name
        wrapper.write_text(
            "#!/bin/sh\n"
            "conf=$(cat)\n"
            "printf '%s\\t%s\\t%s\\t%s\\t%s\\t%s\\t%s\\n' \"${0##*/}\" \"$CNI_COMMAND\" \"$CNI_CONTAINERID\" "
            "\"$CNI_IFNAME\" \"$CNI_NETNS\" \"$CNI_ARGS\" \"$(printf '%s' \"$conf\" | tr '\\n\\t' '  ')\" "
            f">> '{record}'\n"
            f"exec '{plugin}' \"$@\" <<CNI_IGNITE_STDIN\n$conf\nCNI_IGNITE_STDIN\n")
        wrapper.chmod(0o755)
    return dest


def recorded_calls(record: Path) -> list[dict[str, Any]]:
    """The lines ``wrap_plugins`` wrappers wrote, as dicts; ``stdin`` parsed as JSON, ``args`` also as
    ``cni_args`` (a dict of the CNI_ARGS pairs)."""
    calls = []
    text = record.read_text() if record.exists() else ""
    for line in text.splitlines():
        call: dict[str, Any] = dict(zip(RECORD_FIELDS, line.split("\t"), strict=True))
        call["stdin"] = json.loads(call["stdin"]) if call["stdin"].strip() else None
        call["cni_args"] = dict(item.partition("=")[::2] for item in call["args"].split(";") if item)
        calls.append(call)
    return calls

@dataclass
class Network:
    """One conflist and where its plugins keep state."""

    flavour: str
    name: str
    data_dir: Path  # IPAM leases

    @property
    def state_dir(self) -> Path:
        """ignite-bridge's rule records, beside the leases (never the machine's /run/cni/ignite)."""
        return self.data_dir.parent / "ignite-state"
    version: str = "1.0.0"
    bridge: str = "ignite0"

    def conflist(self) -> dict[str, Any]:
        if self.flavour == "reference":
            plugins: list[dict[str, Any]] = [
                {"type": "bridge", "bridge": self.bridge, "isGateway": True, "isDefaultGateway": True,
                 "hairpinMode": True, "ipMasq": True,
                 "ipam": {"type": "host-local", "ranges": [[{"subnet": SUBNET}]], "dataDir": str(self.data_dir)}},
                {"type": "portmap", "capabilities": {"portMappings": True}, "snat": True},
            ]
        else:
            plugins = [
                {"type": "ignite-bridge", "bridge": self.bridge, "isGateway": True, "isDefaultGateway": True,
                 "promiscMode": True, "ipMasq": True, "capabilities": {"portMappings": True},
                 "stateDir": str(self.state_dir),
                 "ipam": {"type": "ignite-ipam", "subnet": SUBNET, "dataDir": str(self.data_dir)}},
            ]
        return {"cniVersion": self.version, "name": self.name, "plugins": plugins}

    def write(self, conf_dir: Path, filename: str | None = None) -> Path:
        conf_dir.mkdir(parents=True, exist_ok=True)
        path = conf_dir / (filename or f"10-{self.name}.conflist")
        path.write_text(json.dumps(self.conflist(), indent=2))
        return path

    def leases(self) -> list[str]:
        """Lease files (one per address) left in the IPAM data dir, for either IPAM flavour. Sticky holds and
        reservations (placeholders host-local sees as taken) are what the default network keeps on purpose."""
        found = []
        for folder in self.data_dir.rglob("*"):
            name = folder.name
            if folder.is_file() and ((name[:1].isdigit() and "." in name) or ":" in name):
                if folder.read_bytes().startswith(b"_ignite_"):
                    continue  # a sticky hold or reservation: remembered for its owner, not a leak
                found.append(str(folder.relative_to(self.data_dir)))
        return sorted(found)


def make_rootfs(dest: Path) -> Path:
    """A busybox rootfs (busybox-static + one symlink per applet) serving PAGE from /www."""
    busybox = shutil.which("busybox")
    if busybox is None:
        raise FileNotFoundError("busybox is not installed (Debian package busybox-static)")
    for d in ("bin", "etc", "www", "proc", "sys", "dev", "tmp", "root", "run", "var"):
        (dest / d).mkdir(parents=True, exist_ok=True)
    shutil.copy2(busybox, dest / "bin/busybox")
    applets = subprocess.run([busybox, "--list"], capture_output=True, text=True, check=True).stdout.split()
    for applet in applets:
        link = dest / "bin" / applet
        if applet != "busybox" and not link.exists():
            link.symlink_to("busybox")
    (dest / "www/index.html").write_text(PAGE)
    (dest / "etc/passwd").write_text("root:x:0:0:root:/root:/bin/sh\n")
    (dest / "etc/group").write_text("root:x:0:\n")
    return dest


def addresses_in(text: str, address: str) -> list[str]:
    """Lines of a rule dump that mention ``address`` as a whole address (10.61.0.2 but not 10.61.0.21)."""
    pattern = re.compile(r"(?<![\d.])" + re.escape(address) + r"(?![\d])")
    return [line for line in text.splitlines() if pattern.search(line)]
