"""kubelet's path: containerd 1.6's CRI plugin runs our default conflist, driven over CRI v1 as kubelet does.

Kubelet never runs a CNI plugin: it sends RunPodSandbox (with the pod's ``hostPort`` mappings) to the
runtime, and containerd's CRI plugin calls the conflist through go-cni, with ``K8S_POD_*`` in CNI_ARGS and
the ``portMappings`` capability (go-cni marshals its struct without JSON tags: ``HostPort``,
``ContainerPort``, ``Protocol``, ``HostIP``). Here a small CRI client of our own (``runtimes/cri``, stubs
generated from the vendored ``api.proto`` at test time) plays kubelet against Debian's containerd with the
CRI plugin on, inside a throwaway host (``RuntimeHost``): root, state, sockets and the CNI ``bin_dir`` /
``conf_dir`` are temp folders, the sandbox ("pause") and busybox images are built offline and imported
with ``ctr images import``, containers run through crun without cgroups.

The conflist is the shipped ``conf/10-ignite.conflist`` with only the paths changed (IPAM ``dataDir``,
``stateDir`` and ``logFile`` in the work dir). The plugin folder holds recording wrappers around ours (and
our ``loopback``, which go-cni runs on every pod), so the tests assert what containerd passed, exactly.

Flavours ``ignite`` and ``frozen`` (``common.py``); one containerd per flavour serves the module's tests,
each of which leaves nothing behind.
"""

from __future__ import annotations

import contextlib
import ipaddress
import json
import time
from typing import TYPE_CHECKING, Any, NamedTuple

import pytest
from runtimes.common import (
    GATEWAY,
    PAGE,
    REPO,
    SUBNET,
    Network,
    add_loopback,
    recorded_calls,
    wrap_plugins,
)
from runtimes.cri import CriClient, load_api  # grpc itself is imported only when used
from runtimes.cri.daemon import CriContainerd, DaemonError
from runtimes.cri.images import BUSYBOX, PAUSE, write_archive
from runtimes.host import HostError
from runtimes.support import (
    assert_nothing_left,
    assert_worker_served,
    flavour_params,
    need,
    plugin_dir,
    remove_workdir,
    short_workdir,
    start_host,
    unavailable,
    wait_for,
)

if TYPE_CHECKING:
    from collections.abc import Iterator, Sequence
    from pathlib import Path

    from runtimes.host import RuntimeHost

pytestmark = [pytest.mark.privileged, pytest.mark.slow]
CONFLIST = REPO / "conf" / "10-ignite.conflist"
HTTPD = ["/bin/httpd", "-f", "-p", "80", "-h", "/www"]
K8S_NS = "cni-test"
NODE_IP = "192.0.2.10"  # the throwaway host's own "node" address (TEST-NET-1)


class Env(NamedTuple):
    host: RuntimeHost
    ctrd: CriContainerd
    cri: CriClient
    net: Network
    work: Path
    record: Path  # the wrappers' lines
    log: Path  # the plugins' logFile


def shipped_conflist(net: Network, log: Path) -> dict[str, Any]:
    """conf/10-ignite.conflist, only its paths moved into the work dir."""
    conf = json.loads(CONFLIST.read_text())
    bridge = conf["plugins"][0]
    assert bridge["type"] == "ignite-bridge", conf
    bridge["ipam"]["dataDir"] = str(net.data_dir)
    bridge["stateDir"] = str(net.state_dir)
    bridge["logFile"] = str(log)
    return conf


@pytest.fixture(scope="module", params=[f for f in flavour_params() if f.values[0] != "reference"])
def env(request: pytest.FixtureRequest) -> Iterator[Env]:
    flavour = request.param
    need("containerd", "ctr", "crun", "busybox", "nsenter", "unshare")
    try:
        import grpc  # noqa: F401
        import grpc_tools  # noqa: F401
    except ImportError as exc:
        unavailable(f"grpcio / grpcio-tools missing ({exc}): `pip install -e '.[test]'` (packaging/setup-host.sh)")
    with contextlib.ExitStack() as undo:  # runs even when a step below skips or fails
        work = short_workdir()
        undo.callback(remove_workdir, work)
        api = load_api(work / "stubs")
        real = plugin_dir(flavour, work / "cni-real")
        add_loopback(real, flavour)
        record = work / "cni-calls.tsv"
        plugins = wrap_plugins(real, work / "cni-bin", record)
        net = Network(flavour, json.loads(CONFLIST.read_text())["name"], work / "ipam")
        log = work / "cni-ignite.log"
        (work / "net.d").mkdir()
        (work / "net.d" / CONFLIST.name).write_text(json.dumps(shipped_conflist(net, log), indent=2))
        archive = write_archive(work / "images.tar")
        host = start_host(work / "host", flavour)
        undo.callback(host.close)
        undo.callback(assert_worker_served, host)  # after the pods' DELs (callbacks run last-in first-out)
        host.private_dir("/run/containerd")  # shim sockets
        host.sh("ip", "addr", "add", f"{NODE_IP}/32", "dev", "lo")  # no dummy links in this kernel
        ctrd = CriContainerd(host, work / "containerd", cni_bin=plugins, cni_conf=work / "net.d",
                             sandbox_image=PAUSE)
        undo.callback(ctrd.kill)
        cri = CriClient(api, ctrd.sock)
        undo.callback(cri.close)
        try:
            ctrd.start(ready=lambda: cri.status().get("NetworkReady"))
            ctrd.import_images(archive)
        except (DaemonError, HostError) as exc:
            unavailable(f"containerd's CRI plugin cannot run here: {exc}")
        env = Env(host, ctrd, cri, net, work, record, log)
        undo.callback(remove_pods, env, best_effort=True)  # so that their DELs still run through the host
        yield env


@pytest.fixture(autouse=True)
def no_pods_after(env: Env) -> Iterator[None]:
    """A test that failed half-way leaves no pods to the next one (its own asserts have run by then)."""
    yield
    remove_pods(env)


# -- helpers -----------------------------------------------------------------------------------------------
def run_pod(env: Env, name: str, ports: Sequence[tuple[int, int]] = ()) -> tuple[str, Any, str]:
    """RunPodSandbox + an httpd container in it: (pod id, sandbox config, container id)."""
    config = env.cri.sandbox_config(name, K8S_NS, port_mappings=ports)
    pod = env.cri.run_pod_sandbox(config)
    cid = env.cri.create_container(pod, config, "httpd", BUSYBOX, HTTPD)
    env.cri.start_container(cid)
    return pod, config, cid


def fetch(env: Env, url: str) -> str:
    """The page, once httpd answers (it has just been started)."""
    def probe() -> str:
        try:
            return env.host.http_get(url, timeout=3)
        except HostError:
            return ""
    return str(wait_for(f"GET {url} from the host namespace", probe, timeout=15, interval=0.2))


def refused(env: Env, url: str) -> bool:
    res = env.host.run(["timeout", "3", "busybox", "wget", "-q", "-O", "-", url], check=False, timeout=10)
    return res.returncode != 0


def calls(env: Env, pod: str, plugin: str = "ignite-bridge", command: str | None = None) -> list[dict[str, Any]]:
    return [c for c in recorded_calls(env.record)
            if c["container_id"] == pod and c["plugin"] == plugin and (command is None or c["command"] == command)]


def log_lines(env: Env, pod: str) -> list[dict[str, Any]]:
    lines = [json.loads(line) for line in env.log.read_text().splitlines()] if env.log.exists() else []
    return [line for line in lines if line["containerID"] == pod]


def remove_pod(env: Env, pod: str) -> None:
    env.cri.stop_pod_sandbox(pod)
    env.cri.remove_pod_sandbox(pod)


def remove_pods(env: Env, *, best_effort: bool = False) -> None:
    """Stop and remove every pod containerd still has (while it runs)."""
    if env.ctrd.daemon is None or env.ctrd.daemon.poll() is not None:
        return
    try:
        for pod in env.cri.list_pod_sandboxes():
            remove_pod(env, pod.id)
    except Exception:
        if not best_effort:
            raise


def assert_pods_gone(env: Env, *addresses: str) -> None:
    assert env.cri.list_pod_sandboxes() == []
    assert env.cri.list_containers() == []
    for address in addresses:
        assert_nothing_left(env.host, env.net, address)
    left = env.host.sh("ls", "/run/netns").split()
    assert left == [], f"pod network namespaces left in /run/netns: {left}"
    cache = env.host.run(["find", "/var/lib/cni", "-type", "f"], check=False).stdout.split()
    assert cache == [], f"libcni cache files left: {cache}"


def in_subnet(address: str) -> bool:
    return ipaddress.ip_address(address) in ipaddress.ip_network(SUBNET)


# -- tests -------------------------------------------------------------------------------------------------
def test_pod_with_host_port_lifecycle_and_what_containerd_passes(env: Env):
    t0 = time.monotonic()
    pod, _config, cid = run_pod(env, "web", [(18080, 80)])
    address = env.cri.pod_ip(pod)
    assert in_subnet(address), address
    assert env.cri.container_state(cid) == "CONTAINER_RUNNING"

    code, out, err = env.cri.exec_sync(cid, ["/bin/ip", "-o", "-4", "addr", "show", "eth0"])
    assert code == 0, err
    assert f"inet {address}/16" in out, out
    code, out, err = env.cri.exec_sync(cid, ["/bin/ip", "route"])
    assert code == 0 and f"default via {GATEWAY}" in out, (out, err)

    assert fetch(env, f"http://{address}:80/") == PAGE
    assert fetch(env, f"http://{NODE_IP}:18080/") == PAGE  # the node's address
    assert fetch(env, f"http://{GATEWAY}:18080/") == PAGE  # the host's address on the pod network
    assert fetch(env, "http://127.0.0.1:18080/") == PAGE
    assert len(env.net.leases()) == 1, env.net.leases()
    assert len(env.host.veths()) == 1, env.host.veths()

    # What containerd's CRI plugin passed to ignite-bridge on ADD, exactly.
    [add] = calls(env, pod, command="ADD")
    status = env.cri.pod_sandbox_status(pod).status
    assert add["cni_args"] == {
        "IgnoreUnknown": "1",
        "K8S_POD_NAMESPACE": K8S_NS,
        "K8S_POD_NAME": "web",
        "K8S_POD_INFRA_CONTAINER_ID": pod,
        "K8S_POD_UID": status.metadata.uid,
    }, add["args"]
    assert add["ifname"] == "eth0"
    assert add["netns"].startswith("/var/run/netns/cni-"), add["netns"]
    assert add["stdin"]["runtimeConfig"]["portMappings"] == [
        {"HostPort": 18080, "ContainerPort": 80, "Protocol": "tcp", "HostIP": ""}], add["stdin"]
    [lo_add] = calls(env, pod, plugin="loopback", command="ADD")
    assert lo_add["ifname"] == "lo" and lo_add["netns"] == add["netns"], lo_add
    # ... and what ignite-bridge understood of it (its logFile).
    [logged_add] = [line for line in log_lines(env, pod) if line["verb"] == "ADD"]
    assert logged_add["level"] == "info", logged_add
    assert logged_add["owner"] == f"k8s:{K8S_NS}/web"
    assert logged_add["addresses"] == [f"{address}/16"]
    assert logged_add["hostPorts"] == ["tcp/18080"], logged_add

    remove_pod(env, pod)
    # StopPodSandbox: DEL while the netns exists, with the cached result; RemovePodSandbox stops the pod
    # again: a second DEL, with CNI_NETNS="" and no prevResult (libcni dropped its cache after the first).
    bridge_calls = calls(env, pod)
    assert [c["command"] for c in bridge_calls] == ["ADD", "DEL", "DEL"], bridge_calls
    first, second = bridge_calls[1:]
    assert (first["netns"], first["cni_args"]) == (add["netns"], add["cni_args"]), first
    assert first["stdin"]["runtimeConfig"] == add["stdin"]["runtimeConfig"]
    assert [ip["address"] for ip in first["stdin"]["prevResult"]["ips"]] == [f"{address}/16"], first["stdin"]
    assert (second["netns"], second["cni_args"]) == ("", add["cni_args"]), second
    assert "prevResult" not in second["stdin"], second["stdin"]
    logged = log_lines(env, pod)
    assert [line["level"] for line in logged] == ["info"] * len(logged), logged  # no DEL failed
    assert refused(env, "http://127.0.0.1:18080/") and refused(env, f"http://{NODE_IP}:18080/")
    assert_pods_gone(env, address)
    assert time.monotonic() - t0 < 30


def test_two_pods_reach_each_other(env: Env):
    t0 = time.monotonic()
    pod_a, _, cid_a = run_pod(env, "pod-a")
    pod_b, _, cid_b = run_pod(env, "pod-b")
    ip_a, ip_b = env.cri.pod_ip(pod_a), env.cri.pod_ip(pod_b)
    assert in_subnet(ip_a) and in_subnet(ip_b) and ip_a != ip_b, (ip_a, ip_b)
    fetch(env, f"http://{ip_a}/")  # both servers are up
    fetch(env, f"http://{ip_b}/")
    for cid, other in ((cid_a, ip_b), (cid_b, ip_a)):
        code, out, err = env.cri.exec_sync(cid, ["timeout", "5", "wget", "-q", "-O", "-", f"http://{other}/"])
        assert (code, out) == (0, PAGE), (code, out, err)
    assert len(env.net.leases()) == 2 and len(env.host.veths()) == 2
    remove_pod(env, pod_a)
    remove_pod(env, pod_b)
    assert_pods_gone(env, ip_a, ip_b)
    assert time.monotonic() - t0 < 30


def test_containerd_restarted_between_run_and_stop(env: Env):
    t0 = time.monotonic()
    pod, _, cid = run_pod(env, "survivor", [(18081, 80)])
    address = env.cri.pod_ip(pod)
    assert fetch(env, "http://127.0.0.1:18081/") == PAGE
    [add] = calls(env, pod, command="ADD")

    env.ctrd.kill()  # by PID, as a crash would: shims and the pod live on
    env.ctrd.start(ready=lambda: env.cri.status().get("NetworkReady"))
    wait_for("the recovered sandbox to be READY",
             lambda: env.cri.pod_sandbox_status(pod).status.state == env.cri.pb.SANDBOX_READY)
    assert env.cri.pod_ip(pod) == address
    assert env.cri.container_state(cid) == "CONTAINER_RUNNING"
    assert fetch(env, f"http://{address}/") == PAGE
    assert calls(env, pod, command="DEL") == [], "containerd's restart sent a DEL"

    remove_pod(env, pod)
    dels = calls(env, pod, command="DEL")
    assert dels, "no DEL reached ignite-bridge after the restart"
    first = dels[0]
    assert (first["netns"], first["ifname"], first["cni_args"]) == (add["netns"], add["ifname"], add["cni_args"])
    assert first["stdin"]["runtimeConfig"] == add["stdin"]["runtimeConfig"], first["stdin"]
    prev_ips = [ip["address"] for ip in first["stdin"]["prevResult"]["ips"]]
    assert prev_ips == [f"{address}/16"], first["stdin"]
    logged = log_lines(env, pod)
    assert [line["level"] for line in logged] == ["info"] * len(logged), logged
    assert refused(env, "http://127.0.0.1:18081/")
    assert_pods_gone(env, address)
    assert time.monotonic() - t0 < 30


def test_a_pod_recreated_under_the_same_name_keeps_its_address_and_mac(env: Env):
    """The default network is sticky: the owner is the pod (k8s:<namespace>/<name> from K8S_POD_*), not the
    sandbox ID, so a pod deleted and created again under its name gets its address and MAC back."""
    t0 = time.monotonic()
    other, _, _ = run_pod(env, "bystander")
    pod, _, cid = run_pod(env, "db")
    address = env.cri.pod_ip(pod)
    code, mac, err = env.cri.exec_sync(cid, ["cat", "/sys/class/net/eth0/address"])
    assert code == 0, err
    remove_pod(env, pod)
    again, _, _ = run_pod(env, "newcomer")  # a new pod is not given the held address
    assert env.cri.pod_ip(again) != address
    pod2, _, cid3 = run_pod(env, "db")
    assert pod2 != pod and env.cri.pod_ip(pod2) == address
    code, mac2, err = env.cri.exec_sync(cid3, ["cat", "/sys/class/net/eth0/address"])
    assert (code, mac2) == (0, mac), err
    assert fetch(env, f"http://{address}/") == PAGE
    for p in (other, again, pod2):
        remove_pod(env, p)
    assert_pods_gone(env, address)
    assert time.monotonic() - t0 < 45
