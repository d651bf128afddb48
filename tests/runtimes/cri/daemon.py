"""containerd 1.6 with its CRI plugin on, inside a ``RuntimeHost``, as kubelet would find it.

Everything the daemon writes is under the work dir: root, state, sockets, the ``opt`` plugin's folder
and the CRI plugin's ``cni`` ``bin_dir``/``conf_dir`` (the test's own folders: no bind mount needed).
``/run/containerd`` (shim sockets) is a tmpfs of the host's mount namespace; sandbox network namespaces
are pinned under ``/var/run/netns``, the host's tmpfs on ``/run/netns``.

The runtime is crun through the same two-line wrapper the ``ctr`` test uses (``--cgroup-manager=disabled``)
as the runc shim's ``BinaryName``; the CRI plugin is told to leave cgroups, AppArmor and SELinux alone and
to never set an OOM score below the daemon's own (``restrict_oom_score_adj``).
"""

from __future__ import annotations

import time
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import subprocess
    from pathlib import Path

    from ..host import RuntimeHost

K8S_NAMESPACE = "k8s.io"  # the containerd namespace the CRI plugin works in
CRI = 'plugins."io.containerd.grpc.v1.cri"'


class DaemonError(RuntimeError):
    """containerd (or its CRI plugin) did not come up; the message carries the tail of its log."""


class CriContainerd:
    def __init__(self, host: RuntimeHost, work: Path, *, cni_bin: Path, cni_conf: Path, sandbox_image: str) -> None:
        self.host, self.dir = host, work
        self.dir.mkdir(parents=True, exist_ok=True)
        self.sock = self.dir / "containerd.sock"
        self.runtime = self.dir / "crun-no-cgroups"
        self.runtime.write_text("#!/bin/sh\nexec crun --cgroup-manager=disabled \"$@\"\n")
        self.runtime.chmod(0o755)
        self.config = self.dir / "config.toml"
        self.config.write_text(f"""version = 2
root = "{self.dir}/root"
state = "{self.dir}/state"

[grpc]
  address = "{self.sock}"

[ttrpc]
  address = "{self.sock}.ttrpc"

[debug]
  address = "{self.dir}/debug.sock"

[plugins."io.containerd.internal.v1.opt"]
  path = "{self.dir}/opt"

[{CRI}]
  sandbox_image = "{sandbox_image}"
  disable_cgroup = true
  disable_apparmor = true
  restrict_oom_score_adj = true
  enable_selinux = false
  disable_tcp_service = true
  stream_server_address = "127.0.0.1"
  stream_server_port = "0"
  enable_unprivileged_ports = false
  enable_unprivileged_icmp = false

[{CRI}.containerd]
  snapshotter = "overlayfs"
  default_runtime_name = "crun"
  disable_snapshot_annotations = true

[{CRI}.containerd.runtimes.crun]
  runtime_type = "io.containerd.runc.v2"

[{CRI}.containerd.runtimes.crun.options]
  BinaryName = "{self.runtime}"
  SystemdCgroup = false

[{CRI}.cni]
  bin_dir = "{cni_bin}"
  conf_dir = "{cni_conf}"
  max_conf_num = 1
""")
        self.log = self.dir / "containerd.log"
        self.daemon: subprocess.Popen[bytes] | None = None
        self.starts = 0

    def log_tail(self, chars: int = 3000) -> str:
        return self.log.read_text(errors="replace")[-chars:] if self.log.exists() else ""

    def start(self, ready: object = None, timeout: float = 30) -> None:
        """Start the daemon; return once ``ready()`` (a CRI probe) is true. Raises DaemonError."""
        self.starts += 1
        with open(self.log, "a") as f:
            f.write(f"\n===== cni-ignite test: containerd start #{self.starts} =====\n")
        self.daemon = self.host.spawn(["containerd", "--config", str(self.config)], log=self.log)
        deadline = time.monotonic() + timeout
        last = ""
        while True:
            if self.daemon.poll() is not None:
                raise DaemonError(f"`containerd --config {self.config}` exited {self.daemon.returncode}; its log:\n"
                                  f"{self.log_tail()}")
            if self.sock.exists():
                try:
                    if ready is None or ready():  # type: ignore[operator]
                        return
                except Exception as exc:  # any gRPC failure means "not yet"
                    last = str(exc)
            if time.monotonic() > deadline:
                raise DaemonError(f"containerd's CRI plugin not ready within {timeout} s ({last}); its log:\n"
                                  f"{self.log_tail()}")
            time.sleep(0.1)

    def kill(self) -> None:
        """SIGKILL the daemon by PID (shims and containers live on, as after a crash)."""
        if self.daemon is not None and self.daemon.poll() is None:
            self.daemon.kill()
            self.daemon.wait(timeout=10)
        if self.daemon is not None:
            self.host.spawned.remove(self.daemon)
        self.daemon = None
        self.sock.unlink(missing_ok=True)

    def ctr(self, *args: str, check: bool = True, timeout: float = 60) -> subprocess.CompletedProcess[str]:
        return self.host.run(["ctr", "-a", str(self.sock), "-n", K8S_NAMESPACE, *args], check=check,
                             timeout=timeout)

    def import_images(self, archive: Path) -> str:
        return self.ctr("images", "import", "--snapshotter", "overlayfs", str(archive)).stdout
