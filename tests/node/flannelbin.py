"""Where the tests find flannel's own binaries: flanneld and flannel's CNI plugin (none is needed on CI: the tests
that use them skip without). tools/build-flanneld.sh builds both offline into build/flannel (see
tests/node/FLANNEL-INTEROP.md)."""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

from cnirun import GO_PLUGINS

REPO = Path(__file__).resolve().parents[2]
BUILT = REPO / "build" / "flannel"
GOPATH = Path("/usr/share/gocode")  # Debian's golang-github-appc-cni-dev: containernetworking/cni for GOPATH builds


def _executable(path: Path) -> Path | None:
    return path if path.is_file() and os.access(path, os.X_OK) else None


def flanneld() -> Path | None:
    """$FLANNELD, else build/flannel/flanneld."""
    env = os.environ.get("FLANNELD")
    return _executable(Path(env)) if env else _executable(BUILT / "flanneld")


def build_flannel_cni(src: Path, out: Path) -> Path:
    """flannel-io/cni-plugin's flannel.go + flannel_linux.go built in GOPATH mode against Debian's CNI library."""
    for name in ("flannel.go", "flannel_linux.go"):
        shutil.copy(src / name, out / name)
    env = {"PATH": "/usr/sbin:/usr/bin:/sbin:/bin", "HOME": str(out), "GO111MODULE": "off", "GOPATH": str(GOPATH),
           "GOPROXY": "off", "GOFLAGS": "", "CGO_ENABLED": "0", "GOCACHE": str(out / "gocache"), "TMPDIR": str(out)}
    res = subprocess.run(["go", "build", "-o", "flannel", "flannel.go", "flannel_linux.go"], cwd=out, env=env,
                         capture_output=True, text=True, timeout=300, check=False)
    assert res.returncode == 0, f"building flannel's CNI plugin from {src} failed: {res.stderr}"
    return out / "flannel"


def flannel_cni(out: Path) -> Path | None:
    """flannel's CNI plugin: built into `out` from $FLANNEL_CNI_SRC (a flannel-io/cni-plugin tree), else
    build/flannel/flannel (tools/build-flanneld.sh), else /usr/lib/cni/flannel, else None."""
    src = os.environ.get("FLANNEL_CNI_SRC")
    if src:
        return build_flannel_cni(Path(src), out)
    return _executable(BUILT / "flannel") or _executable(GO_PLUGINS / "flannel")


SKIP_FLANNEL_CNI = ("needs flannel's CNI plugin: FLANNEL_CNI_SRC=<a flannel-io/cni-plugin tree> (built with Debian's "
                    f"Go CNI library in {GOPATH}), build/flannel/flannel (tools/build-flanneld.sh) or "
                    f"{GO_PLUGINS / 'flannel'}; fresh CI machines have none")
SKIP_FLANNELD = ("needs a flanneld binary: $FLANNELD or build/flannel/flanneld, built offline by "
                 "tools/build-flanneld.sh from a flannel source tree with vendor/ (e.g. tag v0.20.2); fresh CI "
                 "machines have no flannel source, so this interop test is run by hand (tests/node/FLANNEL-INTEROP.md)")
