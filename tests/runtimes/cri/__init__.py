"""A small CRI v1 client: what kubelet says to a container runtime, for the calls the tests need.

``api.proto`` is CRI v1 as containerd 1.6 serves it (kubernetes/cri-api v0.25.0, vendored here with the
gogoproto options stripped; Debian's containerd 1.6.20 carries v0.25's CheckpointContainer and
GetContainerEvents, not v0.26's ListMetricDescriptors; all v0.25.x tags have this same file).
``load_api(dest)`` compiles it with grpcio-tools into ``dest`` (a temp folder, never the source tree) and
imports the generated modules; ``CriClient`` wraps the RuntimeService and
ImageService stubs over the runtime's unix socket.

Only what kubelet does on a pod's way through the network is here: Version/Status, RunPodSandbox with port
mappings, CreateContainer/StartContainer, ExecSync, StopContainer, StopPodSandbox, RemovePodSandbox and
the status/list calls to look at the result.
"""

from __future__ import annotations

import importlib
import shutil
import sys
import uuid
from pathlib import Path
from typing import TYPE_CHECKING, Any, NamedTuple

if TYPE_CHECKING:
    from collections.abc import Sequence
    from types import ModuleType

PROTO = Path(__file__).resolve().parent / "api.proto"
PACKAGE = "cni_ignite_cri_v1"  # the generated modules' package; unlikely to clash with anything installed


class Api(NamedTuple):
    pb: ModuleType  # messages (api_pb2)
    grpc: ModuleType  # service stubs (api_pb2_grpc)


def load_api(dest: Path) -> Api:
    """Generate the Python stubs for ``api.proto`` into ``dest`` and import them (once per process)."""
    if f"{PACKAGE}.api_pb2_grpc" in sys.modules:
        return Api(sys.modules[f"{PACKAGE}.api_pb2"], sys.modules[f"{PACKAGE}.api_pb2_grpc"])
    from grpc_tools import protoc  # the test extra; imported here so the rest of tests/runtimes needs no grpc

    pkg = dest / PACKAGE
    pkg.mkdir(parents=True, exist_ok=True)
    shutil.copy2(PROTO, pkg / "api.proto")
    (pkg / "__init__.py").write_text("")
    include = str(Path(protoc.__file__).resolve().parent / "_proto")
    rc = protoc.main(["protoc", f"-I{dest}", f"-I{include}", f"--python_out={dest}", f"--grpc_python_out={dest}",
                      f"{PACKAGE}/api.proto"])
    if rc != 0:
        raise RuntimeError(f"grpc_tools.protoc failed ({rc}) on {PROTO}")
    sys.path.insert(0, str(dest))
    try:
        pb = importlib.import_module(f"{PACKAGE}.api_pb2")
        stubs = importlib.import_module(f"{PACKAGE}.api_pb2_grpc")
    finally:
        sys.path.remove(str(dest))
    return Api(pb, stubs)


class CriClient:
    """RuntimeService + ImageService over ``unix://<socket>``; every call has a deadline."""

    def __init__(self, api: Api, socket: Path | str, *, timeout: float = 30) -> None:
        import grpc

        self.api, self.pb, self.timeout = api, api.pb, timeout
        self.channel = grpc.insecure_channel(f"unix://{socket}")
        self.runtime = api.grpc.RuntimeServiceStub(self.channel)
        self.images = api.grpc.ImageServiceStub(self.channel)

    def close(self) -> None:
        self.channel.close()

    def __enter__(self) -> CriClient:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _call(self, service: Any, method: str, request: Any, timeout: float | None = None) -> Any:
        return getattr(service, method)(request, timeout=timeout or self.timeout)

    # -- runtime ------------------------------------------------------------------------------------------
    def version(self, timeout: float | None = None) -> Any:
        return self._call(self.runtime, "Version", self.pb.VersionRequest(version="v1"), timeout)

    def status(self, timeout: float | None = None) -> dict[str, bool]:
        """Runtime conditions by type (RuntimeReady, NetworkReady)."""
        resp = self._call(self.runtime, "Status", self.pb.StatusRequest(), timeout)
        return {c.type: c.status for c in resp.status.conditions}

    def sandbox_config(self, name: str, namespace: str, *, port_mappings: Sequence[tuple[int, int]] = (),
                       uid: str | None = None, log_dir: str = "") -> Any:
        """A pod's sandbox config as kubelet builds it for a pod in the pod network (``(host, container)``
        TCP port pairs become ``PortMapping`` entries, as kubelet does for ``hostPort``)."""
        pb = self.pb
        return pb.PodSandboxConfig(
            metadata=pb.PodSandboxMetadata(name=name, namespace=namespace, uid=uid or str(uuid.uuid4()), attempt=0),
            hostname=name,
            log_directory=log_dir,
            port_mappings=[pb.PortMapping(protocol=pb.TCP, host_port=h, container_port=c)
                           for h, c in port_mappings],
            labels={"io.kubernetes.pod.name": name, "io.kubernetes.pod.namespace": namespace},
            linux=pb.LinuxPodSandboxConfig(security_context=pb.LinuxSandboxSecurityContext(
                namespace_options=pb.NamespaceOption(network=pb.POD, pid=pb.CONTAINER, ipc=pb.POD))),
        )

    def run_pod_sandbox(self, config: Any, timeout: float | None = None) -> str:
        resp = self._call(self.runtime, "RunPodSandbox", self.pb.RunPodSandboxRequest(config=config), timeout)
        return str(resp.pod_sandbox_id)

    def pod_sandbox_status(self, pod_id: str, timeout: float | None = None) -> Any:
        req = self.pb.PodSandboxStatusRequest(pod_sandbox_id=pod_id, verbose=True)
        return self._call(self.runtime, "PodSandboxStatus", req, timeout)

    def pod_ip(self, pod_id: str) -> str:
        return str(self.pod_sandbox_status(pod_id).status.network.ip)

    def stop_pod_sandbox(self, pod_id: str, timeout: float | None = None) -> None:
        self._call(self.runtime, "StopPodSandbox", self.pb.StopPodSandboxRequest(pod_sandbox_id=pod_id), timeout)

    def remove_pod_sandbox(self, pod_id: str, timeout: float | None = None) -> None:
        self._call(self.runtime, "RemovePodSandbox", self.pb.RemovePodSandboxRequest(pod_sandbox_id=pod_id),
                   timeout)

    def list_pod_sandboxes(self) -> list[Any]:
        return list(self._call(self.runtime, "ListPodSandbox", self.pb.ListPodSandboxRequest()).items)

    def create_container(self, pod_id: str, sandbox_config: Any, name: str, image: str, command: list[str],
                         timeout: float | None = None) -> str:
        pb = self.pb
        config = pb.ContainerConfig(
            metadata=pb.ContainerMetadata(name=name, attempt=0),
            image=pb.ImageSpec(image=image),
            command=command,
            labels={"io.kubernetes.container.name": name},
            linux=pb.LinuxContainerConfig(security_context=pb.LinuxContainerSecurityContext(
                namespace_options=pb.NamespaceOption(network=pb.POD, pid=pb.CONTAINER, ipc=pb.POD))),
        )
        req = pb.CreateContainerRequest(pod_sandbox_id=pod_id, config=config, sandbox_config=sandbox_config)
        return str(self._call(self.runtime, "CreateContainer", req, timeout).container_id)

    def start_container(self, container_id: str, timeout: float | None = None) -> None:
        self._call(self.runtime, "StartContainer", self.pb.StartContainerRequest(container_id=container_id),
                   timeout)

    def stop_container(self, container_id: str, grace: int = 0, timeout: float | None = None) -> None:
        req = self.pb.StopContainerRequest(container_id=container_id, timeout=grace)
        self._call(self.runtime, "StopContainer", req, timeout)

    def remove_container(self, container_id: str, timeout: float | None = None) -> None:
        self._call(self.runtime, "RemoveContainer", self.pb.RemoveContainerRequest(container_id=container_id),
                   timeout)

    def container_state(self, container_id: str) -> str:
        resp = self._call(self.runtime, "ContainerStatus", self.pb.ContainerStatusRequest(container_id=container_id))
        return str(self.pb.ContainerState.Name(resp.status.state))

    def list_containers(self) -> list[Any]:
        return list(self._call(self.runtime, "ListContainers", self.pb.ListContainersRequest()).containers)

    def exec_sync(self, container_id: str, cmd: list[str], timeout: int = 10) -> tuple[int, str, str]:
        """(exit code, stdout, stderr) of ``cmd`` run in the container (no streaming server involved)."""
        req = self.pb.ExecSyncRequest(container_id=container_id, cmd=cmd, timeout=timeout)
        resp = self._call(self.runtime, "ExecSync", req, timeout + 10)
        return int(resp.exit_code), resp.stdout.decode(errors="replace"), resp.stderr.decode(errors="replace")

    # -- images -------------------------------------------------------------------------------------------
    def image_present(self, image: str) -> bool:
        req = self.pb.ImageStatusRequest(image=self.pb.ImageSpec(image=image))
        return bool(self._call(self.images, "ImageStatus", req).image.id)
