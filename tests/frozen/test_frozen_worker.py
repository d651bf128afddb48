"""Warm start (docs/WORKER.md): the bundle's launcher hands plugin calls to `cni-ignite worker`, whose forked child
runs each call in the caller's world. Everything runs in throwaway namespaces with temp dataDir/stateDir and a temp
socket (never the default /run/cni-ignite/worker.sock); the worker runs inside a throwaway "host" netns and is
stopped by its PID.

What is asserted is what an exec'd plugin would have done: the links, rules and leases land in the CALLER's network
and mount namespace (not the worker's), the answer comes on the caller's stdout with its exit status, a runtime that
kills the launcher kills the call, and without a worker (or with one of another build, or for a caller that is
not root) the launcher runs the bundle itself. That a call was served by the worker is read from the worker's own
count ("stopped after N calls")."""

from __future__ import annotations

import fcntl
import json
import os
import shutil
import signal
import socket
import struct
import subprocess
import tempfile
import threading
import time
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest
from bundle import BUNDLE, EXE, MINIMAL_PATH, REPO
from nsutil import Namespaces, in_ns, path

if TYPE_CHECKING:
    from collections.abc import Iterator

pytestmark = pytest.mark.privileged

LAUNCHER = BUNDLE / "cni-ignite-launch"


class Worker:
    def __init__(self, proc: subprocess.Popen[bytes], sock: Path, log: Path) -> None:
        self.proc, self.sock, self.log = proc, sock, log

    def log_text(self) -> str:
        return self.log.read_text()

    def served(self) -> int:
        """The worker's own count, printed when it stops."""
        for line in reversed(self.log_text().splitlines()):  # the last: a worker that upgraded logs twice
            if "stopped after" in line:
                return int(line.split("stopped after ")[1].split()[0])
        raise AssertionError(f"worker did not report its count: {self.log_text()}")

    def children(self) -> list[int]:
        try:
            kids = Path(f"/proc/{self.proc.pid}/task/{self.proc.pid}/children").read_text().split()
        except FileNotFoundError:
            return []
        return [int(k) for k in kids]

    def stop(self) -> int:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
        try:
            return self.proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            return self.proc.wait()


@contextmanager
def worker(host: str, tmp: Path, *extra: str, sock_dir: Path | None = None, exe: Path = EXE) -> Iterator[Worker]:
    sock, log = (sock_dir or tmp / "w") / "worker.sock", tmp / "worker.log"
    with log.open("wb") as out:
        # `ip netns exec` puts the worker in a mount namespace of its own, so every call below crosses mount
        # namespaces too (each `ip netns exec` of a caller makes another).
        proc = subprocess.Popen(["ip", "netns", "exec", host, str(exe), "worker", "--socket", str(sock), *extra],
                                stdout=out, stderr=out)
    w = Worker(proc, sock, log)
    try:
        deadline = time.monotonic() + 30
        while not sock.exists():
            if proc.poll() is not None or time.monotonic() > deadline:
                raise AssertionError(f"worker did not start: {log.read_text()}")
            time.sleep(0.05)
        yield w
    finally:
        w.stop()


def bin_dir(tmp: Path) -> Path:
    d = tmp / "bin"
    d.mkdir(exist_ok=True)
    for name in ("ignite-bridge", "ignite-ipam", "loopback"):
        if not (d / name).exists():
            (d / name).symlink_to(LAUNCHER)
    return d


def network(tmp: Path, bridge: str = "cnitwk0", subnet: str = "10.96.0.0/24") -> dict[str, Any]:
    return {"cniVersion": "1.0.0", "name": "wk", "type": "ignite-bridge", "bridge": bridge, "isGateway": True,
            "ipMasq": True, "stateDir": str(tmp / "state"),
            "ipam": {"type": "ignite-ipam", "subnet": subnet, "dataDir": str(tmp / "data")}}


def env_for(command: str, ctr: str, bins: Path, sock: Path, cid: str = "wk-ctr", **more: str) -> dict[str, str]:
    return {"PATH": MINIMAL_PATH, "CNI_COMMAND": command, "CNI_CONTAINERID": cid, "CNI_NETNS": path(ctr),
            "CNI_IFNAME": "eth0", "CNI_PATH": str(bins), "CNI_IGNITE_WORKER_SOCKET": str(sock), **more}


def argv_in(host: str, env: dict[str, str], exe: Path, prefix: list[str] | None = None) -> list[str]:
    return ["ip", "netns", "exec", host, *(prefix or []), "env", "-i", *(f"{k}={v}" for k, v in env.items()),
            str(exe)]


def call(host: str, env: dict[str, str], conf: dict[str, Any], exe: Path,
         prefix: list[str] | None = None) -> subprocess.CompletedProcess[bytes]:
    return subprocess.run(argv_in(host, env, exe, prefix), input=json.dumps(conf).encode(), capture_output=True,
                          timeout=60, check=False)


def ok(res: subprocess.CompletedProcess[bytes]) -> dict[str, Any]:
    assert res.returncode == 0, res.stdout.decode() + res.stderr.decode()
    return json.loads(res.stdout) if res.stdout.strip() else {}


def links(ns: str) -> set[str]:
    return {link["ifname"] for link in json.loads(in_ns(ns, ["ip", "-j", "link", "show"]).stdout)}


def test_a_call_handed_to_the_worker_runs_in_the_callers_namespace_not_the_workers(tmp_path: Path,
                                                                                   netns: Namespaces) -> None:
    worker_host, host, ctr = netns.new("cnit-wkw"), netns.new("cnit-wkh"), netns.new("cnit-wkc")
    bins, conf = bin_dir(tmp_path), network(tmp_path)
    with worker(worker_host, tmp_path) as w:
        result = ok(call(host, env_for("ADD", ctr, bins, w.sock), conf, bins / "ignite-bridge"))
        assert [ip["address"] for ip in result["ips"]] == ["10.96.0.2/24"]
        assert "cnitwk0" in links(host) and "cnitwk0" not in links(worker_host)
        assert (tmp_path / "data" / "wk" / "10.96.0.2").exists()
        in_ns(ctr, ["busybox", "ping", "-c1", "-W2", "10.96.0.1"])
        assert b"table inet cni_ignite" in in_ns(host, ["nft", "list", "tables"]).stdout
        assert b"cni_ignite" not in in_ns(worker_host, ["nft", "list", "tables"]).stdout

        ok(call(host, env_for("CHECK", ctr, bins, w.sock), {**conf, "prevResult": result}, bins / "ignite-bridge"))
        ok(call(host, env_for("DEL", ctr, bins, w.sock), conf, bins / "ignite-bridge"))
        assert in_ns(ctr, ["ip", "link", "show", "dev", "eth0"], check=False).returncode != 0
        assert not (tmp_path / "data" / "wk" / "10.96.0.2").exists()
        version = call(host, env_for("VERSION", ctr, bins, w.sock), {"cniVersion": "1.0.0"}, bins / "ignite-ipam")
        assert "supportedVersions" in ok(version)
    assert w.proc.returncode == 0
    assert w.served() == 4, w.log_text()
    assert not w.sock.exists()


def test_the_callers_mount_namespace_decides_where_state_is_written(tmp_path: Path, netns: Namespaces) -> None:
    """The caller mounts a tmpfs over the data and state folders in a mount namespace of its own: the leases and
    records are written there (seen by the caller) and nowhere the worker sees."""
    host, ctr = netns.new("cnit-wkh"), netns.new("cnit-wkc")
    bins, conf = bin_dir(tmp_path), network(tmp_path)
    (tmp_path / "data").mkdir()
    (tmp_path / "state").mkdir()
    with worker(host, tmp_path) as w:
        env = env_for("ADD", ctr, bins, w.sock)
        script = (f"mount -t tmpfs none {tmp_path / 'data'} && mount -t tmpfs none {tmp_path / 'state'} && "
                  f"env -i {' '.join(f'{k}={v}' for k, v in env.items())} {bins / 'ignite-bridge'} && "
                  f"ls {tmp_path / 'data' / 'wk'} >&2")
        res = subprocess.run(["ip", "netns", "exec", host, "unshare", "-m", "--propagation", "private",
                              "sh", "-c", script], input=json.dumps(conf).encode(), capture_output=True,
                             timeout=60, check=False)
        ok(res)
        assert "10.96.0.2" in res.stderr.decode().split()
        assert os.listdir(tmp_path / "data") == [] and os.listdir(tmp_path / "state") == []
        # the DEL (in the worker's-view mount namespace) finds no record: it still removes the links by name
        ok(call(host, env_for("DEL", ctr, bins, w.sock), conf, bins / "ignite-bridge"))
    assert w.served() == 2


def test_each_call_has_its_own_environment_and_umask(tmp_path: Path, netns: Namespaces) -> None:
    host, ctr1, ctr2 = netns.new("cnit-wkh"), netns.new("cnit-wkc"), netns.new("cnit-wkd")
    bins, conf = bin_dir(tmp_path), network(tmp_path)
    with worker(host, tmp_path) as w:
        a = ok(call(host, env_for("ADD", ctr1, bins, w.sock, cid="c1", CNI_ARGS="IP=10.96.0.77"), conf,
                    bins / "ignite-bridge"))
        b = ok(call(host, env_for("ADD", ctr2, bins, w.sock, cid="c2"), conf, bins / "ignite-bridge"))
        assert [ip["address"] for ip in a["ips"]] == ["10.96.0.77/24"]
        # c1's CNI_ARGS did not stay behind (c2 would have asked for .77 again and been refused); the next free
        # address after the last reserved one, as host-local
        assert [ip["address"] for ip in b["ips"]] == ["10.96.0.78/24"]
        missing = call(host, {k: v for k, v in env_for("ADD", ctr2, bins, w.sock, cid="c3").items()
                              if k != "CNI_IFNAME"}, conf, bins / "ignite-bridge")
        assert missing.returncode == 1 and json.loads(missing.stdout)["code"] == 4  # the caller's env, not c2's
        for cid, ctr in (("c1", ctr1), ("c2", ctr2)):
            ok(call(host, env_for("DEL", ctr, bins, w.sock, cid=cid), conf, bins / "ignite-bridge"))
    assert w.served() == 5


def test_without_a_worker_or_with_another_build_the_launcher_runs_the_bundle_itself(tmp_path: Path,
                                                                                     netns: Namespaces) -> None:
    host, ctr = netns.new("cnit-wkh"), netns.new("cnit-wkc")
    bins, conf = bin_dir(tmp_path), network(tmp_path)
    nosock = tmp_path / "none" / "worker.sock"
    ok(call(host, env_for("ADD", ctr, bins, nosock), conf, bins / "ignite-bridge"))
    assert (tmp_path / "data" / "wk" / "10.96.0.2").exists()
    with worker(host, tmp_path, "--build-id", "another-build") as w:
        ok(call(host, env_for("DEL", ctr, bins, w.sock), conf, bins / "ignite-bridge"))
        assert not (tmp_path / "data" / "wk" / "10.96.0.2").exists()
    assert w.served() == 0, "a launcher of another build must not be served"
    # any other name goes to the bundle's executable too (the admin command)
    (tmp_path / "cni-ignite").symlink_to(LAUNCHER)
    res = subprocess.run([str(tmp_path / "cni-ignite"), "version"], capture_output=True, timeout=30, check=False)
    assert res.returncode == 0 and res.stdout.decode().strip(), res.stderr.decode()


def _request(build_id: str, name: str) -> bytes:
    body = b"\0".join([build_id.encode(), name.encode(), b"22", b"CNI_COMMAND=VERSION"]) + b"\0"
    return b"CIW1" + struct.pack("=I", len(body)) + body


def test_only_root_and_well_formed_requests_are_served(tmp_path: Path, netns: Namespaces) -> None:
    host = netns.new("cnit-wkh")
    build_id = (BUNDLE / "_internal" / "cni-ignite.build-id").read_text().strip()
    reachable = Path(tempfile.mkdtemp(prefix="cnit-wk-"))  # pytest's tmp_path is 0700: nobody could not reach in
    reachable.chmod(0o755)
    with worker(host, tmp_path, sock_dir=reachable) as w:
        assert os.stat(w.sock).st_mode & 0o777 == 0o600
        os.chmod(w.sock, 0o666)  # let a non-root caller reach it, to see the worker itself refuse
        fds = [os.open("/dev/null", os.O_RDONLY) for _ in range(7)]
        world: list[int] = []
        try:
            def as_nobody() -> None:
                os.setgid(65534)
                os.setuid(65534)

            script = ("import socket,sys,os,array\n"
                      "s=socket.socket(socket.AF_UNIX); s.connect(sys.argv[1])\n"
                      "fds=[os.open('/dev/null',0) for _ in range(7)]\n"
                      "s.sendmsg([bytes.fromhex(sys.argv[2])],[(socket.SOL_SOCKET,socket.SCM_RIGHTS,"
                      "array.array('i',fds))])\n"
                      "print(s.recv(2).hex())\n")
            res = subprocess.run(["python3", "-c", script, str(w.sock), _request(build_id, "ignite-bridge").hex()],
                                 capture_output=True, timeout=30, check=False, preexec_fn=as_nobody)
            assert res.stdout.decode().strip() == b"F\0".hex(), res.stderr.decode()

            for junk in (b"GET / HTTP/1.0\r\n\r\n", b"CIW1" + struct.pack("=I", 1 << 30), _request(build_id, "sh")):
                s = socket.socket(socket.AF_UNIX)
                s.connect(str(w.sock))
                s.sendmsg([junk], [(socket.SOL_SOCKET, socket.SCM_RIGHTS, struct.pack("7i", *fds))])
                s.settimeout(10)
                assert s.recv(2) in (b"F\0", b""), junk
                s.close()
            # a request whose namespaces cannot be entered (here /dev/null): its child runs nothing, the launcher
            # runs the call itself; and a good one from root is served
            (tmp_path / "version.json").write_text('{"cniVersion": "1.0.0"}')
            out = os.O_WRONLY | os.O_CREAT
            world = [os.open(tmp_path / "version.json", os.O_RDONLY), os.open(tmp_path / "out", out),
                     os.open(tmp_path / "err", out), os.open(path(host), os.O_RDONLY),
                     os.open("/proc/self/ns/mnt", os.O_RDONLY), os.open("/", os.O_PATH), os.open(".", os.O_PATH)]
            for sent, answer in ((fds, b"F\0"), (world, b"E\0")):
                s = socket.socket(socket.AF_UNIX)
                s.connect(str(w.sock))
                s.sendmsg([_request(build_id, "ignite-ipam")], [(socket.SOL_SOCKET, socket.SCM_RIGHTS,
                                                                   struct.pack("7i", *sent))])
                s.settimeout(30)
                assert s.recv(2) == answer, (tmp_path / "out").read_text() + (tmp_path / "err").read_text()
                s.close()
        finally:
            for fd in {*fds, *world}:
                os.close(fd)
    shutil.rmtree(reachable)
    assert w.served() == 2  # both forked; the first child gave the call back


@contextmanager
def network_locked(tmp: Path) -> Iterator[None]:
    """Hold the IPAM's lock of network "wk": a call through the worker blocks in its child until released."""
    folder = tmp / "data" / "wk"
    folder.mkdir(parents=True, exist_ok=True)
    fd = os.open(folder / "lock", os.O_RDWR | os.O_CREAT, 0o600)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        yield
    finally:
        os.close(fd)


def start(host: str, env: dict[str, str], conf: dict[str, Any], exe: Path, tmp: Path) -> subprocess.Popen[bytes]:
    """A call left running (its stdin a file holding the config)."""
    f = tmp / "conf.json"
    f.write_text(json.dumps(conf))
    with f.open("rb") as stdin:
        return subprocess.Popen(argv_in(host, env, exe), stdin=stdin, stdout=subprocess.PIPE, stderr=subprocess.PIPE)


def wait_for(cond: Any, what: str, timeout: float = 20) -> None:
    deadline = time.monotonic() + timeout
    while not cond():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.02)


def blocked_add(w: Worker, host: str, ctr: str, tmp: Path, cid: str = "wk-ctr") -> tuple[subprocess.Popen[bytes], int]:
    """An ADD through the worker left waiting for the network's lock (held by the caller): its launcher and the
    worker's child running it."""
    bins = bin_dir(tmp)
    proc = start(host, env_for("ADD", ctr, bins, w.sock, cid=cid), network(tmp), bins / "ignite-bridge", tmp)
    wait_for(w.children, "the worker's child")
    return proc, w.children()[0]


def test_a_killed_launcher_kills_its_call_and_nothing_is_leased(tmp_path: Path, netns: Namespaces) -> None:
    host, ctr = netns.new("cnit-wkh"), netns.new("cnit-wkc")
    with worker(host, tmp_path) as w, network_locked(tmp_path):
        proc, kid = blocked_add(w, host, ctr, tmp_path)
        proc.kill()  # the runtime gave up: SIGKILL to what it exec'd
        proc.communicate(timeout=30)
        wait_for(lambda: not Path(f"/proc/{kid}").exists(), "the child to die")
    assert not (tmp_path / "data" / "wk" / "10.96.0.2").exists()
    assert w.served() == 1


def test_a_dying_worker_takes_its_calls_with_it_and_the_launcher_says_so(tmp_path: Path, netns: Namespaces) -> None:
    host, ctr = netns.new("cnit-wkh"), netns.new("cnit-wkc")
    with worker(host, tmp_path) as w, network_locked(tmp_path):
        proc, kid = blocked_add(w, host, ctr, tmp_path)
        # the worker is `ip netns exec`'s exec: its PID is ours to kill
        os.kill(w.proc.pid, signal.SIGKILL)
        _out, err = proc.communicate(timeout=30)
        assert proc.returncode == 1
        assert b"ended during the call" in err
        wait_for(lambda: not Path(f"/proc/{kid}").exists(), "the child to die with its worker")
    assert not (tmp_path / "data" / "wk" / "10.96.0.2").exists()


def test_sigterm_lets_running_calls_finish_and_new_ones_run_directly(tmp_path: Path, netns: Namespaces) -> None:
    host, ctr1, ctr2 = netns.new("cnit-wkh"), netns.new("cnit-wkc"), netns.new("cnit-wkd")
    bins, conf = bin_dir(tmp_path), network(tmp_path)
    with worker(host, tmp_path) as w:
        with network_locked(tmp_path):
            proc, _kid = blocked_add(w, host, ctr1, tmp_path, cid="c1")
            w.proc.send_signal(signal.SIGTERM)
            wait_for(lambda: not w.sock.exists(), "the socket to go")
            assert w.proc.poll() is None  # still waiting for its call
            second: dict[str, subprocess.CompletedProcess[bytes]] = {}
            t = threading.Thread(target=lambda: second.update(
                r=call(host, env_for("ADD", ctr2, bins, w.sock, cid="c2"), conf, bins / "ignite-bridge")))
            t.start()
        out, err = proc.communicate(timeout=60)
        t.join(60)
        assert proc.returncode == 0, out.decode() + err.decode()
        assert [ip["address"] for ip in json.loads(out)["ips"]] == ["10.96.0.2/24"]
        assert [ip["address"] for ip in ok(second["r"])["ips"]] == ["10.96.0.3/24"]  # ran directly
        assert w.proc.wait(timeout=30) == 0
        for cid, ctr in (("c1", ctr1), ("c2", ctr2)):
            ok(call(host, env_for("DEL", ctr, bins, w.sock, cid=cid), conf, bins / "ignite-bridge"))
    assert w.served() == 1


def test_concurrent_calls_through_the_worker_get_distinct_addresses_and_leave_nothing(tmp_path: Path,
                                                                                      netns: Namespaces) -> None:
    host = netns.new("cnit-wkh")
    ctrs = [netns.new("cnit-wkc") for _ in range(16)]
    bins, conf = bin_dir(tmp_path), network(tmp_path)
    results: dict[int, subprocess.CompletedProcess[bytes]] = {}

    def run(i: int, verb: str) -> None:
        results[i] = call(host, env_for(verb, ctrs[i], bins, tmp_path / "w" / "worker.sock", cid=f"c{i}"), conf,
                          bins / "ignite-bridge")

    with worker(host, tmp_path) as w:
        for verb in ("ADD", "DEL"):
            threads = [threading.Thread(target=run, args=(i, verb)) for i in range(len(ctrs))]
            for t in threads:
                t.start()
            for t in threads:
                t.join(120)
            if verb == "ADD":
                addrs = [ok(results[i])["ips"][0]["address"] for i in range(len(ctrs))]
                assert len(set(addrs)) == len(ctrs)
                assert len([n for n in links(host) if n.startswith("veth")]) == len(ctrs)
            else:
                for i in range(len(ctrs)):
                    ok(results[i])
        assert [n for n in links(host) if n.startswith("veth")] == []
        assert sorted(os.listdir(tmp_path / "data" / "wk")) in (["lock"], ["last_reserved_ip.0", "lock"])
    assert w.served() == 2 * len(ctrs)


def fake_build(tmp: Path, build_id: str) -> Path:
    """A copy of the bundle posing as another build: its own build id, and a launcher compiled with it."""
    gen = tmp / f"cni-ignite-{build_id}.d"
    shutil.copytree(BUNDLE, gen, symlinks=True)
    (gen / "_internal" / "cni-ignite.build-id").write_text(build_id + "\n")
    (gen / "cni-ignite-launch").unlink()
    subprocess.run(["cc", "-O2", "-std=c99", f'-DCNI_IGNITE_BUILD_ID="{build_id}"', "-o",
                    str(gen / "cni-ignite-launch"), str(REPO / "packaging" / "launcher.c")], check=True, timeout=120)
    return gen


def test_install_worker_links_the_plugins_to_the_launcher_and_the_worker_follows_an_upgrade(
        tmp_path: Path, netns: Namespaces) -> None:
    """`install --worker` into a temp bin dir; the worker runs from <bin>/cni-ignite.d/cni-ignite (as the shipped
    unit starts it). An upgrade (the link now names another build) is noticed at the first call of the new
    launcher, which runs directly; the worker drains, starts again as the new build (same PID) and serves."""
    host, ctr = netns.new("cnit-wkh"), netns.new("cnit-wkc")
    bins, conf_dir = tmp_path / "opt-cni-bin", tmp_path / "net.d"
    res = subprocess.run([str(EXE), "install", "--bin-dir", str(bins), "--conf-dir", str(conf_dir), "--no-conf",
                          "--worker", "--from", str(BUNDLE)], capture_output=True, timeout=120, check=False)
    assert res.returncode == 0, res.stderr.decode()
    for name in ("ignite-bridge", "ignite-ipam"):
        assert os.readlink(bins / name) == "cni-ignite.d/cni-ignite-launch"
    conf = network(tmp_path)

    def status(sock: Path) -> str:
        res = subprocess.run([str(EXE), "status", "--bin-dir", str(bins), "--conf-dir", str(conf_dir),
                              "--worker-socket", str(sock)], capture_output=True, text=True, timeout=60, check=False)
        return next(line for line in res.stdout.splitlines() if "warm start" in line)

    assert "not answering" in status(tmp_path / "w" / "worker.sock")
    with worker(host, tmp_path, exe=bins / "cni-ignite.d" / "cni-ignite") as w:
        build = (BUNDLE / "_internal" / "cni-ignite.build-id").read_text().strip()
        assert f"answering at {w.sock} (pid {w.proc.pid}, build {build})" in status(w.sock)
        ok(call(host, env_for("ADD", ctr, bins, w.sock), conf, bins / "ignite-bridge"))
        first_pid = w.proc.pid
        new = fake_build(tmp_path, "test-upgrade-" + os.urandom(4).hex())
        (bins / "next").symlink_to(new)
        os.replace(bins / "next", bins / "cni-ignite.d")  # what install does: the link now names the new build
        ok(call(host, env_for("DEL", ctr, bins, w.sock), conf, bins / "ignite-bridge"))  # run directly
        wait_for(lambda: new.name.split("cni-ignite-")[1][:-2] in w.log_text() and w.sock.exists(),
                 "the worker to start again as the new build")
        ok(call(host, env_for("ADD", ctr, bins, w.sock), conf, bins / "ignite-bridge"))
        ok(call(host, env_for("DEL", ctr, bins, w.sock), conf, bins / "ignite-bridge"))
        assert w.proc.pid == first_pid and w.proc.poll() is None
    log = w.log_text()
    assert "stopped after 1 calls" in log and "starting it" in log, log
    assert w.served() == 2, log
    res = subprocess.run([str(EXE), "uninstall", "--bin-dir", str(bins)], capture_output=True, timeout=60, check=False)
    assert res.returncode == 0 and not (bins / "ignite-bridge").exists(), res.stdout.decode() + res.stderr.decode()


@pytest.mark.slow
def test_the_conformance_suite_passes_every_case_through_the_worker(tmp_path: Path, netns: Namespaces) -> None:
    """The whole suite (every verb at every cniVersion, DEL without netns or config, bad input, traffic) with every
    plugin exec going through the launcher to one worker in a namespace of its own."""
    import sys

    bins = bin_dir(tmp_path)
    with worker(netns.new("cnit-wkw"), tmp_path) as w:
        report = tmp_path / "report.json"
        res = subprocess.run([sys.executable, "-m", "conformance", "--cni-path", str(bins), "--conflist",
                              str(REPO / "conformance" / "ignite.conflist"), "--report", str(report),
                              "--plugin-env", f"CNI_IGNITE_WORKER_SOCKET={w.sock}"], cwd=REPO, capture_output=True,
                             text=True, timeout=600, check=False)
        assert report.is_file(), f"suite crashed ({res.returncode}): {res.stderr[-3000:]}"
    rows = json.loads(report.read_text())["rows"]
    bad = [f"[{r['version'] or 'any'}] {r['case']}: {r['status']}: expected {r['expected']}; seen {r['seen']}"
           for r in rows if r["status"] in ("FAIL", "BLOCKED")]
    assert not bad, "\n".join(bad)
    assert sum(r["status"] == "PASS" for r in rows) > 100
    assert w.served() > 50, w.log_text()  # the calls did go through the worker


def test_an_environment_over_the_request_limit_or_a_closed_stdin_is_run_directly(tmp_path: Path,
                                                                                  netns: Namespaces) -> None:
    """Hostile callers: 10 variables of 120 KiB (1.2 MiB, over the 1 MiB request limit; still under execve's)
    and a call with stdin closed. Neither is handed over; both get what the exec'd plugin answers."""
    host, ctr = netns.new("cnit-wkh"), netns.new("cnit-wkc")
    bins, conf = bin_dir(tmp_path), network(tmp_path)
    big = {f"BIG{i}": "x" * (120 << 10) for i in range(10)}
    with worker(host, tmp_path) as w:
        res = subprocess.run(["ip", "netns", "exec", host, str(bins / "ignite-bridge")],
                             input=json.dumps(conf).encode(), env={**env_for("ADD", ctr, bins, w.sock), **big},
                             capture_output=True, timeout=60, check=False)
        assert [ip["address"] for ip in ok(res)["ips"]] == ["10.96.0.2/24"]
        closed = subprocess.run(["ip", "netns", "exec", host, "sh", "-c", f"exec {bins / 'ignite-bridge'} <&-"],
                                env=env_for("DEL", ctr, bins, w.sock), capture_output=True, timeout=60, check=False)
        # no config to read: "failed to decode" (6), as the exec'd plugin answers (it was an internal error, 999)
        assert closed.returncode == 1 and json.loads(closed.stdout)["code"] == 6, closed.stdout
        ok(call(host, env_for("DEL", ctr, bins, w.sock), conf, bins / "ignite-bridge"))
    assert w.served() == 1  # only the last DEL


def test_a_caller_that_connects_and_says_nothing_holds_up_no_other_call(tmp_path: Path, netns: Namespaces) -> None:
    """Requests are read without blocking: a silent connection is refused after its deadline, and calls made
    meanwhile are served at once."""
    host, ctr = netns.new("cnit-wkh"), netns.new("cnit-wkc")
    bins, conf = bin_dir(tmp_path), network(tmp_path)
    with worker(host, tmp_path) as w:
        silent = [socket.socket(socket.AF_UNIX) for _ in range(3)]
        for s in silent:
            s.connect(str(w.sock))
        silent[0].send(b"CIW1")  # half a header
        started = time.monotonic()
        ok(call(host, env_for("ADD", ctr, bins, w.sock), conf, bins / "ignite-bridge"))
        ok(call(host, env_for("DEL", ctr, bins, w.sock), conf, bins / "ignite-bridge"))
        assert time.monotonic() - started < 4.0  # not after the silent ones' 5 s deadline
        for s in silent:
            s.settimeout(15)
            assert s.recv(2) in (b"F\0", b"")  # refused at its deadline
            s.close()
    assert w.served() == 2


def test_a_stopped_worker_with_a_full_backlog_does_not_hold_up_calls(tmp_path: Path, netns: Namespaces) -> None:
    """The worker is stopped (SIGSTOP) and its listen backlog filled: the launcher's connect is refused at once
    (EAGAIN) and the call runs directly; once the worker runs again it serves the next call."""
    host, ctr = netns.new("cnit-wkh"), netns.new("cnit-wkc")
    bins, conf = bin_dir(tmp_path), network(tmp_path)
    with worker(host, tmp_path) as w:
        os.kill(w.proc.pid, signal.SIGSTOP)
        filler: list[socket.socket] = []
        try:
            while len(filler) < 4096:
                s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM | socket.SOCK_NONBLOCK)
                try:
                    s.connect(str(w.sock))
                except BlockingIOError:
                    s.close()
                    break
                filler.append(s)
            assert len(filler) < 4096, "the backlog never filled"
            started = time.monotonic()
            ok(call(host, env_for("ADD", ctr, bins, w.sock), conf, bins / "ignite-bridge"))
            assert time.monotonic() - started < 20
        finally:
            os.kill(w.proc.pid, signal.SIGCONT)
            for s in filler:
                s.close()
        ok(call(host, env_for("DEL", ctr, bins, w.sock), conf, bins / "ignite-bridge"))
    assert w.served() == 1  # the DEL; the ADD ran directly


def test_a_worker_started_with_stdin_and_stdout_closed_serves_calls(tmp_path: Path, netns: Namespaces) -> None:
    """Received descriptors are moved onto 0, 1, 2 in the child: none of them may already be one of those numbers
    (the worker puts /dev/null on a closed one at its start)."""
    host, ctr = netns.new("cnit-wkh"), netns.new("cnit-wkc")
    bins, conf = bin_dir(tmp_path), network(tmp_path)
    sock, log = tmp_path / "w" / "worker.sock", tmp_path / "worker.log"
    with log.open("wb") as err:
        proc = subprocess.Popen(["ip", "netns", "exec", host, "sh", "-c",
                                 'exec "$0" worker --socket "$1" <&- >&-', str(EXE), str(sock)], stderr=err)
    w = Worker(proc, sock, log)
    try:
        wait_for(lambda: sock.exists() or proc.poll() is not None, "the worker's socket")
        result = ok(call(host, env_for("ADD", ctr, bins, sock), conf, bins / "ignite-bridge"))
        assert [ip["address"] for ip in result["ips"]] == ["10.96.0.2/24"]
        ok(call(host, env_for("DEL", ctr, bins, sock), conf, bins / "ignite-bridge"))
    finally:
        w.stop()
    assert w.served() == 2, w.log_text()
