"""pytest glue for the runtime tests: skip (or, under CI, fail) with a precise reason, flavour params,
and the "nothing left behind" checks."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import tempfile
import time
from pathlib import Path
from typing import NoReturn

import pytest

from .common import FLAVOURS, SUBNET, Network, addresses_in, frozen_exe, launcher_exe, make_plugin_dir
from .host import HostError, RuntimeHost

ADDRESS = re.compile(r"\b(10\.61\.\d{1,3}\.\d{1,3})\b")


def unavailable(reason: str) -> NoReturn:
    """The runtime cannot start here: skip with the reason, except under CI, which must not skip these."""
    if os.environ.get("CI"):
        pytest.fail(f"runtime unavailable under CI (CI must not skip this): {reason}", pytrace=False)
    pytest.skip(reason)


def need(*programs: str) -> None:
    for program in programs:
        if shutil.which(program) is None:
            unavailable(f"`{program}` is not installed (packaging/setup-host.sh installs it via APT_PACKAGES)")


def flavour_params() -> list[object]:
    marks = {"frozen": [pytest.mark.frozen], "warm": [pytest.mark.frozen]}
    return [pytest.param(f, id=f, marks=marks.get(f, [])) for f in FLAVOURS]


def plugin_dir(flavour: str, dest: Path) -> Path:
    if flavour in ("frozen", "warm") and not os.access(frozen_exe(), os.X_OK):
        unavailable(f"no frozen bundle at {frozen_exe()}: run `make build` (`make test` builds it first)")
    if flavour == "warm" and not os.access(launcher_exe(), os.X_OK):
        unavailable(f"no launcher at {launcher_exe()}: run `make build` (`make test` builds it first)")
    return make_plugin_dir(dest, flavour)


WORKER_SOCKET = "/run/cni-ignite/worker.sock"  # the default path, inside the throwaway host's own mount namespace


def start_host(work: Path, flavour: str = "") -> RuntimeHost:
    """The throwaway host; for the ``warm`` flavour with a `cni-ignite worker` at the default socket inside it
    (so the runtime's plugin execs find it as on a real host: no variable passed)."""
    host = RuntimeHost(work)
    try:
        host.start()
        if flavour == "warm":
            # A bind of a temp folder, not a tmpfs: the host re-mounts its mounts after a later overlay of /run
            # (for a missing /run/containerd), and a fresh tmpfs would lose the worker's socket.
            run_dir = work / "run-cni-ignite"
            run_dir.mkdir(mode=0o700, parents=True)
            host.bind(run_dir, "/run/cni-ignite")
            host.worker = host.spawn([str(frozen_exe()), "worker"], log=work / "worker.log")  # type: ignore[attr-defined]
            wait_for("the worker's socket", lambda: host.exists(WORKER_SOCKET) or host.worker.poll() is not None)  # type: ignore[attr-defined]
            if not host.exists(WORKER_SOCKET):
                raise HostError(f"cni-ignite worker did not start: {(work / 'worker.log').read_text()}")
    except (HostError, OSError, subprocess.SubprocessError) as exc:
        host.close()
        unavailable(f"cannot build the throwaway host namespace: {exc}")
    return host


def assert_worker_served(host: RuntimeHost) -> None:
    """For the ``warm`` flavour: stop the worker (SIGTERM: it drains and reports its count) and check the
    runtime's calls did go through it. Other flavours: nothing."""
    proc = getattr(host, "worker", None)
    if proc is None:
        return
    proc.terminate()
    assert proc.wait(timeout=60) == 0
    log = (host.work / "worker.log").read_text()
    served = [int(line.split("stopped after ")[1].split()[0]) for line in log.splitlines() if "stopped after" in line]
    assert served and served[-1] > 0, f"no call went through the worker: {log}"


def wait_for(what: str, probe: object, timeout: float = 20, interval: float = 0.1) -> object:
    deadline = time.monotonic() + timeout
    while True:
        value = probe()  # type: ignore[operator]
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout} s waiting for {what}")
        time.sleep(interval)


def container_address(text: str) -> str:
    found = ADDRESS.findall(text)
    assert found, f"no {SUBNET} address in: {text}"
    return found[0]


def assert_nothing_left(host: RuntimeHost, net: Network, address: str, *, rules: bool = True) -> None:
    """After rm/DEL: no lease in the IPAM dataDir, no host veth, no firewall rule naming the address."""
    assert net.leases() == [], f"lease files left in {net.data_dir}: {net.leases()}"
    assert host.veths() == [], f"host veths left: {host.veths()}"
    if rules:
        left = addresses_in(host.rules(), address)
        assert left == [], "firewall rules still mention {}:\n{}".format(address, "\n".join(left))
    # Our firewall keeps per-attachment records under the conflist's stateDir.
    records = host.run(["find", f"{net.state_dir}/{net.name}", "-type", "f"], check=False).stdout.split()
    assert records == [], f"firewall state records left: {records}"


def short_workdir() -> Path:
    """A short temp folder (podman refuses a run root longer than 50 characters, so no tmp_path)."""
    return Path(tempfile.mkdtemp(prefix="cnirt-", dir="/tmp"))


def remove_workdir(work: Path) -> None:
    if os.environ.get("CNI_IGNITE_KEEP_WORK"):
        return
    shutil.rmtree(work, ignore_errors=True)
