"""DEL runs the veth delete beside the rest (cni_ignite/bridge/background.py): the kernel's wait for the
delete's end (an rcu_barrier) overlaps the rules' nft exec, and the DEL goes on only once the host veth is
announced gone (the port's guard is never removed from a port that still passes frames). Every outcome of
the delete still reaches the DEL: a failed delete fails the DEL with the lease kept, and the repeat
finishes the job."""

from __future__ import annotations

import json
import sys
import textwrap
from pathlib import Path

import pytest
from bridgeenv import HostEnv, base_conf
from nsutil import in_ns, path

from cni_ignite.bridge.config import host_veth_name

pytestmark = pytest.mark.privileged
REPO = Path(__file__).resolve().parents[2]

# Run inside the host namespace: a bridge with one veth port whose peer is in the container namespace, then
# Background deletes the container end; prints what it saw as JSON.
DRIVER = textwrap.dedent("""
    import json, subprocess, sys, time
    sys.path.insert(0, sys.argv[1])
    import _thread
    from cni_ignite.bridge import background
    from cni_ignite.netlink.ops import NetlinkError
    from cni_ignite.netlink.rtnl import Rtnl

    ctr, mode, runs = sys.argv[2], sys.argv[3], int(sys.argv[4])
    sh = lambda *a: subprocess.run(a, check=True, capture_output=True)
    sh("ip", "link", "add", "br0", "type", "bridge")
    sh("ip", "link", "set", "br0", "up")
    if mode == "nothread":
        def refuse(*a):
            raise RuntimeError("can't start new thread")
        _thread.start_new_thread = refuse
    cont = Rtnl("/var/run/netns/" + ctr)
    out = []
    for i in range(runs):
        sh("ip", "link", "add", "hv", "type", "veth", "peer", "name", "eth0", "netns", ctr)
        sh("ip", "link", "set", "hv", "master", "br0", "up")
        seen = []
        links = background.Background("hv", lambda what, fn: seen.append((what, _outcome(fn))))
        def _outcome(fn):
            try:
                fn()
                return "ok"
            except Exception as exc:
                return type(exc).__name__
        if mode == "fail":
            def fail():
                raise NetlinkError(16, "delete link eth0")
            links.start("container interface", fail)
        else:
            links.start("container interface", lambda: cont.delete_link("eth0"))
        links.wait_gone()
        running = any(not j.done for j in links.jobs)
        listed = subprocess.run(["ip", "-o", "link", "show", "hv"], capture_output=True).returncode == 0
        ports = sh("ip", "-o", "link", "show", "master", "br0").stdout.decode()
        seen_at_wait = list(seen)
        links.finish()
        out.append({"gone": links.gone, "running": running, "listed": listed, "port": "hv" in ports,
                    "seen_at_wait": seen_at_wait, "seen": seen})
        if mode == "fail":
            sh("ip", "link", "del", "hv")
    print(json.dumps(out))
""")


def drive(netns, mode: str, runs: int) -> list[dict]:
    host, ctr = netns.new("cnit-host"), netns.new("cnit-ctr")
    res = in_ns(host, [sys.executable, "-c", DRIVER, str(REPO), ctr, mode, str(runs)])
    return json.loads(res.stdout)


def test_the_del_goes_on_once_the_host_veth_is_announced_gone_while_the_kernel_finishes(netns):
    runs = drive(netns, "ok", 8)
    for r in runs:
        # when wait_gone returns, the port is off the bridge and out of the link list: the guard may go
        assert r["gone"] and not r["listed"] and not r["port"], r
        assert r["seen"] == [["container interface", "ok"]], r
    # the overlap itself: the delete's answer was still to come when the DEL went on (the kernel's
    # rcu_barrier takes ~10 ms after the announcement; with a serial delete this is never the case)
    assert any(r["running"] for r in runs), runs


def test_a_failed_delete_reaches_the_del_at_once_in_the_serial_order(netns):
    (r,) = drive(netns, "fail", 1)
    assert not r["gone"] and r["listed"], r  # no announcement: wait_gone waited for the delete to be over
    assert r["seen_at_wait"] == [["container interface", "NetlinkError"]], r


def test_without_a_thread_the_delete_runs_in_the_callers_thread(netns):
    (r,) = drive(netns, "nothread", 1)
    assert not r["listed"] and not r["running"] and r["seen_at_wait"] == [["container interface", "ok"]], r


# A plugin whose background link deletes fail (the DEL's second thread only) while FAIL_BG_DELETE is set.
FAILING_PLUGIN = textwrap.dedent("""\
    import os, sys, threading
    sys.path.insert(0, {repo!r})
    from cni_ignite.netlink import rtnl
    from cni_ignite.netlink.ops import NetlinkError

    real = rtnl.Rtnl.delete_link

    def delete_link(self, name_or_index):
        if os.environ.get("FAIL_BG_DELETE") and threading.current_thread() is not threading.main_thread():
            raise NetlinkError(16, f"delete link {{name_or_index}}")
        return real(self, name_or_index)

    rtnl.Rtnl.delete_link = delete_link
    from cni_ignite.cli import bridge_main
    sys.exit(bridge_main())
""")


@pytest.mark.parametrize("with_netns", [True, False], ids=["container-side", "host-side"])
def test_a_del_whose_background_delete_fails_keeps_the_lease_and_its_repeat_finishes(netns, tmp_path, with_netns):
    env = HostEnv(netns)
    plugin = tmp_path / "ignite-bridge"
    plugin.write_text(f"#!{sys.executable}\n" + FAILING_PLUGIN.format(repo=str(REPO)))
    plugin.chmod(0o755)
    conf = base_conf(env.data_dir, ipMasq=True, guard=True)
    ctr = env.container()
    result = env.add(conf, "bgfail", ctr)
    veth = host_veth_name("testnet", "bgfail", "eth0")
    leased = env.leases()
    assert leased and veth in env.links()

    broken = env.run("DEL", {**conf, "prevResult": result}, "bgfail", ctr if with_netns else None, plugin=plugin,
                     cni_path=str(env.bin_dir), extra_env={"FAIL_BG_DELETE": "1"})
    assert broken.rc != 0 and broken.out is not None, broken
    assert broken.out["code"] == 999 and "DEL incomplete" in broken.out["msg"], broken.out  # a refusal: internal
    assert "Traceback" not in broken.stdout + broken.stderr
    assert env.leases() == leased, "the address was released although the veth delete failed"
    assert veth in env.links()

    env.run("DEL", {**conf, "prevResult": result}, "bgfail", ctr if with_netns else None, plugin=plugin,
            cni_path=str(env.bin_dir)).ok()
    assert veth not in env.links() and not env.leases()
    assert "10.61." not in env.rules()
    assert "eth0" not in env.ns_sh(ctr, "ip", "-o", "link")
    guard = in_ns(env.host, ["nft", "list", "table", "bridge", "cni_ignite_guard"], check=False).stdout.decode()
    assert veth not in guard


def test_a_del_without_the_container_namespace_deletes_the_host_veth_in_the_background(netns):
    env = HostEnv(netns)
    conf = base_conf(env.data_dir, ipMasq=True, guard=True)
    ctr = env.container()
    result = env.add(conf, "nons", ctr)
    veth = host_veth_name("testnet", "nons", "eth0")
    env.run("DEL", {**conf, "prevResult": result}, "nons", None).ok()
    assert veth not in env.links() and not env.leases() and "10.61." not in env.rules()
    guard = in_ns(env.host, ["nft", "list", "table", "bridge", "cni_ignite_guard"], check=False).stdout.decode()
    assert veth not in guard
    assert path(ctr)  # the namespace itself was never the DEL's to remove


FILTER_DRIVER = textwrap.dedent("""
    import json, subprocess, sys, time
    sys.path.insert(0, sys.argv[1])
    import _ctypes  # loaded on the DEL path by netns.setns (Python 3.11): the filter is attached only then
    from cni_ignite.bridge import background

    sh = lambda *a: subprocess.run(a, check=True, capture_output=True)
    sh("ip", "link", "add", "br0", "type", "bridge")
    for name in ("hvA", "hvB"):
        sh("ip", "link", "add", name, "type", "veth", "peer", "name", name + "p")
        sh("ip", "link", "set", name, "master", "br0", "up")
    index = int(open("/sys/class/net/hvA/ifindex").read())
    filtered, plain = background._monitor(index), background._monitor(None)
    sh("ip", "link", "del", "hvB")
    sh("ip", "link", "del", "hvA")
    time.sleep(0.1)
    def drain(sock):
        got = []
        while True:
            try:
                data = sock.recv(65536)
            except BlockingIOError:
                return got
            got.append(background.deleted_names(data) or ["(other)"])
    print(json.dumps({"filtered": drain(filtered), "plain": drain(plain)}))
""")


def test_the_monitor_hears_only_the_watched_links_announcement(netns):
    host = netns.new("cnit-host")
    out = json.loads(in_ns(host, [sys.executable, "-c", FILTER_DRIVER, str(REPO)]).stdout)
    assert out["filtered"] == [["hvA"]], out  # one wake-up: the generic RTM_DELLINK of the watched link
    flat = [n for names in out["plain"] for n in names]
    assert "hvA" in flat and "hvB" in flat and len(out["plain"]) > 2, out  # unfiltered: every announcement
