"""Container images built offline: one OCI image-layout tarball that ``ctr images import`` reads.

Both images share one uncompressed layer (busybox-static, one symlink per applet, ``/www/index.html``
with ``PAGE``, a one-line ``/etc/passwd``); they differ only in their config:
- ``PAUSE``, the CRI plugin's ``sandbox_image``: ``/bin/sleep 2147483647`` (the CRI plugin stops a sandbox
  with SIGKILL, so a process that ignores SIGTERM is fine);
- ``BUSYBOX``, what the pods' containers run: ``/bin/sh`` by default, given a command by the test.

Every image carries ``io.containerd.image.name`` in the index, which is the name ``ctr images import``
gives it; both live under ``localhost/`` so that nothing could ever be pulled for them.
"""

from __future__ import annotations

import hashlib
import io
import json
import platform
import shutil
import subprocess
import tarfile
from typing import TYPE_CHECKING, Any

from ..common import PAGE

if TYPE_CHECKING:
    from pathlib import Path

PAUSE = "localhost/cni-ignite/pause:test"
BUSYBOX = "localhost/cni-ignite/busybox:test"
ARCH = {"x86_64": "amd64", "aarch64": "arm64"}
LAYER_TYPE = "application/vnd.oci.image.layer.v1.tar"
CONFIG_TYPE = "application/vnd.oci.image.config.v1+json"
MANIFEST_TYPE = "application/vnd.oci.image.manifest.v1+json"


def _add(tar: tarfile.TarFile, name: str, *, data: bytes | None = None, link: str | None = None,
         mode: int = 0o755) -> None:
    info = tarfile.TarInfo(name)
    info.mode, info.mtime, info.uname, info.gname = mode, 0, "root", "root"
    if link is not None:
        info.type, info.linkname = tarfile.SYMTYPE, link
        tar.addfile(info)
    elif data is None:
        info.type = tarfile.DIRTYPE
        tar.addfile(info)
    else:
        info.size = len(data)
        tar.addfile(info, io.BytesIO(data))


def busybox_layer() -> bytes:
    """An uncompressed layer tar: busybox-static, its applets, /www/index.html and minimal /etc files."""
    busybox = shutil.which("busybox")
    if busybox is None:
        raise FileNotFoundError("busybox is not installed (Debian package busybox-static)")
    applets = subprocess.run([busybox, "--list"], capture_output=True, text=True, check=True).stdout.split()
    with open(busybox, "rb") as f:
        binary = f.read()
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w", format=tarfile.PAX_FORMAT) as tar:
        for d in ("bin", "dev", "etc", "proc", "root", "run", "sys", "tmp", "var", "www"):
            _add(tar, d, mode=0o1777 if d == "tmp" else 0o755)
        _add(tar, "bin/busybox", data=binary)
        for applet in sorted(set(applets) - {"busybox"}):
            _add(tar, f"bin/{applet}", link="busybox")
        _add(tar, "etc/passwd", data=b"root:x:0:0:root:/root:/bin/sh\n", mode=0o644)
        _add(tar, "etc/group", data=b"root:x:0:\n", mode=0o644)
        _add(tar, "www/index.html", data=PAGE.encode(), mode=0o644)
    return buf.getvalue()


def _blob(blobs: dict[str, bytes], data: bytes, media_type: str) -> dict[str, Any]:
    digest = "sha256:" + hashlib.sha256(data).hexdigest()
    blobs[digest] = data
    return {"mediaType": media_type, "digest": digest, "size": len(data)}


def _image(blobs: dict[str, bytes], layer: dict[str, Any], name: str, entrypoint: list[str], cmd: list[str]
           ) -> dict[str, Any]:
    arch = ARCH.get(platform.machine(), platform.machine())
    config = {
        "architecture": arch, "os": "linux",
        "config": {"Env": ["PATH=/bin"], "Entrypoint": entrypoint, "Cmd": cmd, "WorkingDir": "/"},
        "rootfs": {"type": "layers", "diff_ids": [layer["digest"]]},  # uncompressed: diff ID = digest
        "history": [{"created_by": "cni-ignite tests/runtimes/cri/images.py"}],
    }
    manifest = {
        "schemaVersion": 2, "mediaType": MANIFEST_TYPE,
        "config": _blob(blobs, json.dumps(config, sort_keys=True).encode(), CONFIG_TYPE),
        "layers": [layer],
    }
    desc = _blob(blobs, json.dumps(manifest, sort_keys=True).encode(), MANIFEST_TYPE)
    desc["platform"] = {"architecture": arch, "os": "linux"}
    desc["annotations"] = {"io.containerd.image.name": name, "org.opencontainers.image.ref.name": name}
    return desc


def write_archive(dest: Path) -> Path:
    """The OCI image-layout tarball with PAUSE and BUSYBOX, for ``ctr -n k8s.io images import``."""
    blobs: dict[str, bytes] = {}
    layer = _blob(blobs, busybox_layer(), LAYER_TYPE)
    manifests = [
        _image(blobs, layer, PAUSE, ["/bin/sleep"], ["2147483647"]),
        _image(blobs, layer, BUSYBOX, [], ["/bin/sh"]),
    ]
    index = {"schemaVersion": 2, "manifests": manifests}
    dest.parent.mkdir(parents=True, exist_ok=True)
    with tarfile.open(dest, mode="w", format=tarfile.PAX_FORMAT) as tar:
        _add(tar, "blobs")
        _add(tar, "blobs/sha256")
        for digest, data in blobs.items():
            _add(tar, f"blobs/sha256/{digest.removeprefix('sha256:')}", data=data, mode=0o644)
        _add(tar, "oci-layout", data=b'{"imageLayoutVersion":"1.0.0"}', mode=0o644)
        _add(tar, "index.json", data=json.dumps(index, sort_keys=True).encode(), mode=0o644)
    return dest
