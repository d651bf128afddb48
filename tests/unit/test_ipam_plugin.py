"""ignite-ipam end to end in-process, on a temporary dataDir (no root): the exact files host-local
writes, every verb, the index, crash safety, locking, and what the start-up path imports."""

from __future__ import annotations

import fcntl
import functools
import json
import os
import signal
import subprocess
import sys
import textwrap
import threading
import time
from typing import TYPE_CHECKING, Any

import filelock
import pytest
from ipamenv import NET, Ipam

from cni_ignite.ipam import plugin
from cni_ignite.ipam.store import DiskStore

if TYPE_CHECKING:
    from pathlib import Path


@pytest.fixture
def ipam(tmp_path: Path) -> Ipam:
    return Ipam(tmp_path / "data")


SMALL = {"subnet": "10.1.0.0/29"}  # gateway .1, leases .2 - .6
DUAL = {"ranges": [[{"subnet": "10.1.0.0/24"}], [{"subnet": "fd00:61::/64"}]]}


# ------------------------------------------------------------------------------------ on-disk layout

def test_add_writes_host_local_lease_files_byte_for_byte(ipam: Ipam) -> None:
    out = ipam("ADD", ipam.conf(SMALL, "0.4.0"))
    assert out.doc == {"cniVersion": "0.4.0", "dns": {},
                       "ips": [{"version": "4", "address": "10.1.0.2/29", "gateway": "10.1.0.1"}]}
    assert ipam.files() == {"10.1.0.2": b"c1\r\neth0", "last_reserved_ip.0": b"10.1.0.2", "lock": b""}
    assert (ipam.dir / "10.1.0.2").stat().st_mode & 0o777 == 0o600
    assert (ipam.dir / "10.1.0.2").stat().st_nlink == 1
    assert ipam.dir.stat().st_mode & 0o777 == 0o755


@pytest.mark.parametrize("change", [{"type": None}, {"ipam": {"dataDir": "/tmp/x"}}, {"ipam": {"type": 5}},
                                    {"ipam": {"type": ""}}])
def test_a_config_without_its_plugin_type_or_ipam_type_is_refused_with_7(ipam: Ipam, change: dict[str, Any]) -> None:
    conf = {**ipam.conf(), **change}
    if conf.get("type") is None:
        del conf["type"]
    out = ipam("ADD", conf)
    assert out.code == 7
    assert ipam.files() == {}


def test_without_any_range_leases_from_10_61_0_0_16(ipam: Ipam) -> None:
    conf = ipam.conf()
    out = ipam("ADD", conf)
    assert out.doc == {"cniVersion": "1.1.0", "dns": {},
                       "ips": [{"address": "10.61.0.2/16", "gateway": "10.61.0.1"}]}
    assert ipam.leases() == {"10.61.0.2": b"c1\r\neth0"}


def test_one_address_from_each_range_set(ipam: Ipam) -> None:
    out = ipam("ADD", ipam.conf(DUAL, "0.2.0"))
    assert out.doc == {"cniVersion": "0.2.0", "dns": {}, "ip4": {"ip": "10.1.0.2/24", "gateway": "10.1.0.1"},
                       "ip6": {"ip": "fd00:61::2/64", "gateway": "fd00:61::1"}}
    assert ipam.files() == {"10.1.0.2": b"c1\r\neth0", "fd00:61::2": b"c1\r\neth0", "last_reserved_ip.0": b"10.1.0.2",
                            "last_reserved_ip.1": b"fd00:61::2", "lock": b""}


def test_routes_and_resolv_conf_are_returned(ipam: Ipam, tmp_path: Path) -> None:
    resolv = tmp_path / "resolv.conf"
    resolv.write_text("# comment\nnameserver 10.0.0.53\nnameserver 10.0.0.54 # x\ndomain example.org\n"
                      "search a.example.org b.example.org\noptions ndots:2 rotate\nbogus\n")
    out = ipam("ADD", ipam.conf({**SMALL, "routes": [{"dst": "0.0.0.0/0"}], "resolvConf": str(resolv)}))
    assert out.doc == {"cniVersion": "1.1.0", "ips": [{"address": "10.1.0.2/29", "gateway": "10.1.0.1"}],
                       "routes": [{"dst": "0.0.0.0/0"}],
                       "dns": {"nameservers": ["10.0.0.53", "10.0.0.54"], "domain": "example.org",
                               "search": ["a.example.org", "b.example.org"], "options": ["ndots:2", "rotate"]}}


def test_error_when_resolv_conf_is_missing(ipam: Ipam, tmp_path: Path) -> None:
    out = ipam("ADD", ipam.conf({**SMALL, "resolvConf": str(tmp_path / "nope")}))
    assert out.code == 5
    assert not ipam.dir.exists()


# --------------------------------------------------------------------------------------- allocation

def test_allocation_is_round_robin_after_the_last_reserved_address(ipam: Ipam) -> None:
    conf = ipam.conf(SMALL)
    assert [ipam("ADD", conf, cid=f"c{i}").ips for i in range(3)] == [["10.1.0.2/29"], ["10.1.0.3/29"],
                                                                       ["10.1.0.4/29"]]
    assert ipam("DEL", conf, cid="c0").rc == 0
    assert ipam("ADD", conf, cid="c3").ips == ["10.1.0.5/29"]  # .2 is free but not reused before the wrap
    assert ipam("ADD", conf, cid="c4").ips == ["10.1.0.6/29"]
    assert ipam("ADD", conf, cid="c5").ips == ["10.1.0.2/29"]
    assert (ipam.dir / "last_reserved_ip.0").read_bytes() == b"10.1.0.2"


def test_repeated_add_returns_the_held_lease(ipam: Ipam) -> None:
    conf = ipam.conf(DUAL)
    first = ipam("ADD", conf)
    before = ipam.files()
    assert ipam("ADD", conf).doc == first.doc
    assert ipam.files() == before


def test_another_interface_of_the_same_container_gets_its_own_address(ipam: Ipam) -> None:
    conf = ipam.conf(SMALL)
    assert ipam("ADD", conf, ifname="eth0").ips == ["10.1.0.2/29"]
    assert ipam("ADD", conf, ifname="eth1").ips == ["10.1.0.3/29"]
    assert ipam.leases() == {"10.1.0.2": b"c1\r\neth0", "10.1.0.3": b"c1\r\neth1"}


def test_error_when_range_is_full_names_the_range(ipam: Ipam) -> None:
    conf = ipam.conf({"subnet": "10.1.0.0/29", "rangeStart": "10.1.0.3", "rangeEnd": "10.1.0.4"})
    assert ipam("ADD", conf, cid="a").rc == ipam("ADD", conf, cid="b").rc == 0
    out = ipam("ADD", conf, cid="c")
    assert out.doc == {"cniVersion": "1.1.0", "code": 999,
                       "msg": "no IP addresses available in range set: 10.1.0.3-10.1.0.4"}
    assert set(ipam.leases()) == {"10.1.0.3", "10.1.0.4"}


def test_failed_multi_set_add_releases_what_it_reserved(ipam: Ipam) -> None:
    conf = ipam.conf({"ranges": [[{"subnet": "10.1.0.0/24"}], [{"subnet": "10.2.0.0/30"}]]})
    assert ipam("ADD", conf, cid="a").rc == 0  # takes the only address of set 1
    assert ipam("ADD", conf, cid="b").rc != 0
    assert ipam.leases() == {"10.1.0.2": b"a\r\neth0", "10.2.0.2": b"a\r\neth0"}


def test_full_pool_is_not_rewritten_for_every_taken_address(ipam: Ipam, monkeypatch: pytest.MonkeyPatch) -> None:
    """A nearly full range must not cost one temporary file and one fsync per address it skips."""
    conf = ipam.conf({"subnet": "10.1.0.0/23"})
    ipam("ADD", conf, cid="first")
    for i in range(3, 400):  # taken behind the index's back, as a Go plugin would
        (ipam.dir / f"10.1.{i // 256}.{i % 256}").write_bytes(b"go\r\neth0")
    (ipam.dir / "last_reserved_ip.0").write_bytes(b"10.1.0.1")
    fsyncs: list[int] = []
    real_fsync = os.fsync

    def counting_fsync(fd: int) -> None:
        fsyncs.append(fd)
        real_fsync(fd)

    monkeypatch.setattr(os, "fsync", counting_fsync)
    assert ipam("ADD", conf, cid="second").ips == ["10.1.1.144/23"]
    assert len(fsyncs) <= 2


# ------------------------------------------------------------------------------- requested addresses

@pytest.mark.parametrize(("where", "args"), [
    ({"runtimeConfig": {"ips": ["10.1.0.5/29"]}}, ""),
    ({"args": {"cni": {"ips": ["10.1.0.5"]}}}, ""),
    ({}, "IP=10.1.0.5"),
    ({}, "IgnoreUnknown=1;K8S_POD_NAME=x;IP=10.1.0.5"),
])
def test_requested_address_is_leased(ipam: Ipam, where: dict[str, Any], args: str) -> None:
    assert ipam("ADD", ipam.conf(SMALL, **where), args=args).ips == ["10.1.0.5/29"]
    assert ipam.leases() == {"10.1.0.5": b"c1\r\neth0"}
    assert (ipam.dir / "last_reserved_ip.0").read_bytes() == b"10.1.0.5"


def test_error_when_requested_address_is_held_by_another_container(ipam: Ipam) -> None:
    conf = ipam.conf(SMALL, runtimeConfig={"ips": ["10.1.0.5"]})
    assert ipam("ADD", conf, cid="a").rc == 0
    out = ipam("ADD", conf, cid="b")
    assert out.doc is not None
    assert out.doc["msg"].startswith("requested IP address 10.1.0.5 is not available")
    assert ipam.leases() == {"10.1.0.5": b"a\r\neth0"}


@pytest.mark.parametrize(("ip", "msg"), [("10.9.0.5", "failed to allocate all requested IPs"),
                                         ("10.1.0.1", "is subnet's gateway")])
def test_error_when_requested_address_cannot_be_leased(ipam: Ipam, ip: str, msg: str) -> None:
    out = ipam("ADD", ipam.conf(SMALL), args=f"IP={ip}")
    assert out.doc is not None and msg in out.doc["msg"]
    assert ipam.leases() == {}


@pytest.mark.parametrize("args", ["K8S_POD_NAME=x", "IP=10.1.0.5=x", "IP"])
def test_error_when_cni_args_break_the_grammar(ipam: Ipam, args: str) -> None:
    assert ipam("ADD", ipam.conf(SMALL), args=args).code == 4
    assert not ipam.data_dir.exists()


# ---------------------------------------------------------------------------------------------- DEL

def test_del_releases_every_address_of_the_attachment_only(ipam: Ipam) -> None:
    conf = ipam.conf(DUAL)
    ipam("ADD", conf, cid="a")
    ipam("ADD", conf, cid="b")
    assert ipam("DEL", conf, cid="a").text == ""
    assert ipam.leases() == {"10.1.0.3": b"b\r\neth0", "fd00:61::3": b"b\r\neth0"}
    assert (ipam.dir / "last_reserved_ip.0").read_bytes() == b"10.1.0.3"


@pytest.mark.parametrize("held", [False, True])
def test_del_succeeds_when_nothing_is_held_and_when_repeated(ipam: Ipam, held: bool) -> None:
    conf = ipam.conf(SMALL)
    if held:
        ipam("ADD", conf)
    assert (ipam("DEL", conf).rc, ipam("DEL", conf).rc) == (0, 0)
    assert ipam.leases() == {}


def test_del_releases_a_legacy_id_only_lease(ipam: Ipam) -> None:
    ipam("ADD", ipam.conf(SMALL), cid="other")
    (ipam.dir / "10.1.0.5").write_bytes(b"c1")
    assert ipam("DEL", ipam.conf(SMALL), cid="c1").rc == 0
    assert set(ipam.leases()) == {"10.1.0.2"}


def test_del_prefers_the_exact_attachment_over_a_legacy_lease(ipam: Ipam) -> None:
    ipam("ADD", ipam.conf(SMALL), cid="c1")
    (ipam.dir / "10.1.0.5").write_bytes(b"c1")
    ipam("DEL", ipam.conf(SMALL), cid="c1")
    assert ipam.leases() == {"10.1.0.5": b"c1"}  # host-local: id-only leases only when nothing matched


def test_del_releases_a_lease_written_by_another_plugin(ipam: Ipam) -> None:
    ipam("ADD", ipam.conf(SMALL), cid="a")
    (ipam.dir / "10.1.0.6").write_bytes(b"go-container\r\neth0")  # changes the folder: index goes stale
    assert ipam("DEL", ipam.conf(SMALL), cid="go-container").rc == 0
    assert set(ipam.leases()) == {"10.1.0.2"}


# -------------------------------------------------------------------------------------------- CHECK

def test_check_verifies_the_lease_exists(ipam: Ipam) -> None:
    conf = ipam.conf(SMALL)
    assert ipam("CHECK", conf).code == 999
    ipam("ADD", conf)
    assert (ipam("CHECK", conf).rc, ipam("CHECK", conf, ifname="eth1").rc) == (0, 1)
    (ipam.dir / "10.1.0.2").unlink()
    out = ipam("CHECK", conf)
    assert out.doc is not None
    assert out.doc["msg"] == "no IP address leased to c1/eth0 in network net1"


def test_check_accepts_a_legacy_id_only_lease(ipam: Ipam) -> None:
    ipam.dir.mkdir(parents=True)
    (ipam.dir / "10.1.0.4").write_bytes(b"c1\n")
    assert ipam("CHECK", ipam.conf(SMALL)).rc == 0


# ----------------------------------------------------------------------------------------------- GC

def gc_conf(ipam: Ipam, attachments: list[tuple[str, str]], key: str = "cni.dev/valid-attachments") -> dict[str, Any]:
    return {**ipam.conf(DUAL), key: [{"containerID": c, "ifname": i} for c, i in attachments]}


@pytest.mark.parametrize("key", ["cni.dev/valid-attachments", "cni.dev/attachments"])
def test_gc_releases_every_lease_not_in_valid_attachments(ipam: Ipam, key: str) -> None:
    conf = ipam.conf(DUAL)
    for cid in ("keep", "drop"):
        ipam("ADD", conf, cid=cid)
    ipam("ADD", conf, cid="keep", ifname="eth1")
    (ipam.dir / "10.1.0.50").write_bytes(b"keep")        # legacy id-only: kept while the id is valid
    (ipam.dir / "10.1.0.51").write_bytes(b"gone")        # legacy id-only of an unknown container
    (ipam.dir / "10.1.0.52").write_bytes(b"")            # empty lease leaked by a crash
    assert ipam("GC", gc_conf(ipam, [("keep", "eth0")], key)).text == ""
    assert ipam.files() == {"10.1.0.2": b"keep\r\neth0", "fd00:61::2": b"keep\r\neth0", "10.1.0.50": b"keep",
                            "last_reserved_ip.0": b"10.1.0.4", "last_reserved_ip.1": b"fd00:61::4", "lock": b""}
    assert ipam("DEL", conf, cid="keep").rc == 0  # the rebuilt index still serves DEL
    assert ipam.leases() == {"10.1.0.50": b"keep"}


def test_gc_with_an_empty_valid_list_releases_everything(ipam: Ipam) -> None:
    ipam("ADD", ipam.conf(DUAL))
    assert ipam("GC", gc_conf(ipam, [])).rc == 0
    assert ipam.leases() == {}


def test_error_when_valid_attachments_is_malformed(ipam: Ipam) -> None:
    ipam("ADD", ipam.conf(DUAL))
    assert ipam("GC", {**ipam.conf(DUAL), "cni.dev/valid-attachments": {"c1": "eth0"}}).code == 7
    assert ipam("GC", {**ipam.conf(DUAL), "cni.dev/valid-attachments": [{"ifname": "eth0"}]}).code == 7
    assert len(ipam.leases()) == 2


# ------------------------------------------------------------------------------------------- STATUS

def test_status_fails_with_code_50_when_no_address_is_left(ipam: Ipam) -> None:
    conf = ipam.conf({"ranges": [[{"subnet": "10.1.0.0/24"}], [{"subnet": "10.2.0.0/30"}]]})
    assert ipam("STATUS", conf).text == ""
    ipam("ADD", conf)
    out = ipam("STATUS", conf)
    assert out.doc == {"cniVersion": "1.1.0", "code": 50,
                       "msg": "no IP addresses available in range set 1: 10.2.0.1-10.2.0.2"}
    ipam("DEL", conf)
    assert ipam("STATUS", conf).rc == 0


# -------------------------------------------------------------------------------------------- index

def index_dir(ipam: Ipam) -> Path:
    return ipam.data_dir / ".ignite-index" / NET


def test_index_lives_outside_the_lease_folder(ipam: Ipam) -> None:
    ipam("ADD", ipam.conf(SMALL))
    assert not [p for p in ipam.dir.iterdir() if p.name.startswith((".", "a-"))]
    assert (index_dir(ipam) / "stamp").read_bytes() == str(ipam.dir.stat().st_mtime_ns).encode()


def test_missing_index_is_rebuilt(ipam: Ipam) -> None:
    conf = ipam.conf(DUAL)
    ipam("ADD", conf, cid="a")
    first = ipam("ADD", conf, cid="b").doc
    for p in index_dir(ipam).iterdir():
        p.unlink()
    index_dir(ipam).rmdir()
    assert ipam("ADD", conf, cid="b").doc == first
    assert ipam("DEL", conf, cid="a").rc == 0
    assert set(ipam.leases()) == {"10.1.0.3", "fd00:61::3"}


def test_stale_index_is_rebuilt_when_a_lease_is_removed_behind_its_back(ipam: Ipam) -> None:
    conf = ipam.conf(SMALL)
    ipam("ADD", conf, cid="a")
    (ipam.dir / "10.1.0.2").unlink()
    assert ipam("ADD", conf, cid="a").ips == ["10.1.0.3/29"]  # not the vanished .2
    assert ipam("CHECK", conf, cid="a").rc == 0


def test_index_is_rebuilt_when_a_lease_is_rewritten_behind_its_back(ipam: Ipam) -> None:
    conf = ipam.conf(SMALL)
    ipam("ADD", conf, cid="a")
    tmp = ipam.dir / ".edit"
    tmp.write_bytes(b"b\r\neth0")
    tmp.rename(ipam.dir / "10.1.0.2")  # an operator (or a tool) hands .2 to b
    assert ipam("DEL", conf, cid="a").rc == 0
    assert ipam.leases() == {"10.1.0.2": b"b\r\neth0"}
    assert ipam("ADD", conf, cid="b").ips == ["10.1.0.2/29"]
    assert ipam("DEL", conf, cid="b").rc == 0
    assert ipam.leases() == {}


def test_a_lease_changed_in_place_is_never_released_for_its_former_owner(ipam: Ipam) -> None:
    conf = ipam.conf(SMALL)
    ipam("ADD", conf, cid="a")
    (ipam.dir / "10.1.0.2").write_bytes(b"b\r\neth0")  # in place: the folder's mtime does not change
    assert ipam("DEL", conf, cid="a").rc == 0
    assert ipam("CHECK", conf, cid="a").rc != 0
    assert ipam.leases() == {"10.1.0.2": b"b\r\neth0"}


def test_forged_stamp_does_not_make_a_stale_index_trusted(ipam: Ipam) -> None:
    conf = ipam.conf(SMALL)
    ipam("ADD", conf, cid="a")
    (index_dir(ipam) / "stamp").write_bytes(b"12345")
    (ipam.dir / "10.1.0.6").write_bytes(b"z\r\neth0")
    assert ipam("DEL", conf, cid="z").rc == 0
    assert set(ipam.leases()) == {"10.1.0.2"}


# ------------------------------------------------------------------------------------- crash safety

def test_leftover_temporary_file_is_harmless_and_removed_by_gc(ipam: Ipam) -> None:
    conf = ipam.conf(SMALL)
    ipam("ADD", conf, cid="a")
    leftover = index_dir(ipam) / ".tmp-99999-1"
    leftover.write_bytes(b"half")
    assert ipam("ADD", conf, cid="b").ips == ["10.1.0.3/29"]
    assert ipam("GC", gc_conf(ipam, [("a", "eth0"), ("b", "eth0")])).rc == 0
    assert not leftover.exists()
    assert set(ipam.leases()) == {"10.1.0.2", "10.1.0.3"}


KILLED_ADD = """
import io, json, os, sys, time
from cni_ignite import skel
from cni_ignite.ipam import plugin, store

point = sys.argv[1]
real_link, real_tmp = os.link, store.DiskStore._write_tmp

def hang():
    open(sys.argv[2], "w").close()
    time.sleep(60)

def link(src, dst):
    real_link(src, dst)
    if point == "after-link":
        hang()

def write_tmp(self, data, *, sync=False):
    path = real_tmp(self, data, sync=sync)
    if point == "before-link" and sync:
        hang()
    return path

os.link = link
store.DiskStore._write_tmp = write_tmp
env = {"CNI_COMMAND": "ADD", "CNI_CONTAINERID": "victim", "CNI_NETNS": "/x", "CNI_IFNAME": "eth0"}
skel.run(plugin.HANDLERS, env=env, stdin=io.BytesIO(sys.stdin.buffer.read()), stdout=sys.stdout,
         stderr=sys.stderr, about="")
"""


@pytest.mark.parametrize("point", ["before-link", "after-link"])
def test_add_killed_while_holding_the_lock_is_recovered(ipam: Ipam, tmp_path: Path, point: str) -> None:
    conf = ipam.conf(SMALL)
    ipam("ADD", conf, cid="a")
    ready = tmp_path / "ready"
    child = subprocess.Popen([sys.executable, "-c", KILLED_ADD, point, str(ready)], stdin=subprocess.PIPE)
    assert child.stdin is not None
    child.stdin.write(json.dumps(conf).encode())
    child.stdin.close()
    deadline = time.monotonic() + 20
    while not ready.exists() and child.poll() is None and time.monotonic() < deadline:
        time.sleep(0.01)
    assert ready.exists(), "the child never reached its kill point"
    os.kill(child.pid, signal.SIGKILL)
    child.wait()
    # Never half-written: either no lease (killed before the link) or a complete one.
    assert ipam.leases() in ({"10.1.0.2": b"a\r\neth0"},
                             {"10.1.0.2": b"a\r\neth0", "10.1.0.3": b"victim\r\neth0"})
    # The lock died with the process; the retried ADD gets the same address, once.
    assert ipam("ADD", conf, cid="victim").ips == ["10.1.0.3/29"]
    assert ipam.leases() == {"10.1.0.2": b"a\r\neth0", "10.1.0.3": b"victim\r\neth0"}
    # And a GC that no longer knows the victim releases it and clears the debris.
    assert ipam("GC", gc_conf(ipam, [("a", "eth0")])).rc == 0
    assert ipam.leases() == {"10.1.0.2": b"a\r\neth0"}
    assert not [p for p in index_dir(ipam).iterdir() if p.name.startswith(".tmp-")]


def test_add_killed_after_the_link_is_released_by_gc_without_a_retry(ipam: Ipam, tmp_path: Path) -> None:
    conf = ipam.conf(SMALL)
    ready = tmp_path / "ready"
    child = subprocess.Popen([sys.executable, "-c", KILLED_ADD, "after-link", str(ready)], stdin=subprocess.PIPE)
    assert child.stdin is not None
    child.stdin.write(json.dumps(conf).encode())
    child.stdin.close()
    deadline = time.monotonic() + 20
    while not ready.exists() and time.monotonic() < deadline:
        time.sleep(0.01)
    os.kill(child.pid, signal.SIGKILL)
    child.wait()
    assert ipam.leases() == {"10.1.0.2": b"victim\r\neth0"}
    assert ipam("DEL", conf, cid="victim").rc == 0
    assert ipam.leases() == {}


# ------------------------------------------------------------------------------------------ locking

@pytest.fixture
def short_lock(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(plugin, "DiskStore", functools.partial(DiskStore, lock_timeout=0.3))


@pytest.mark.usefixtures("short_lock")
@pytest.mark.parametrize("how", ["filelock", "fcntl"])
def test_a_lock_held_by_another_holder_makes_us_try_again_later(ipam: Ipam, how: str) -> None:
    conf = ipam.conf(SMALL)
    ipam("ADD", conf, cid="a")
    lock_path = ipam.dir / "lock"
    if how == "filelock":
        held = filelock.UnixFileLock(str(lock_path))
        held.acquire()

        def release() -> None:
            held.release()
    else:
        fd = os.open(lock_path, os.O_RDWR)
        fcntl.flock(fd, fcntl.LOCK_EX)

        def release() -> None:
            os.close(fd)
    try:
        started = time.monotonic()
        for verb in ("ADD", "DEL", "CHECK", "GC", "STATUS"):
            out = ipam(verb, {**conf, "cni.dev/valid-attachments": []} if verb == "GC" else conf, cid="b")
            assert out.doc is not None
            assert (out.code, out.doc["msg"]) == (11, "IPAM store busy"), verb
        assert time.monotonic() - started < 5
        assert set(ipam.leases()) == {"10.1.0.2"}
    finally:
        release()
    assert ipam("ADD", conf, cid="b").ips == ["10.1.0.3/29"]
    assert lock_path.exists()  # the lock file outlives every holder


def test_a_briefly_held_lock_is_waited_for(ipam: Ipam) -> None:
    conf = ipam.conf(SMALL)
    ipam("ADD", conf, cid="a")
    fd = os.open(ipam.dir / "lock", os.O_RDWR)
    fcntl.flock(fd, fcntl.LOCK_EX)
    timer = threading.Timer(0.3, os.close, (fd,))
    timer.start()
    started = time.monotonic()
    try:
        assert ipam("ADD", conf, cid="b").ips == ["10.1.0.3/29"]
    finally:
        timer.join()
    assert time.monotonic() - started >= 0.25
    assert signal.getsignal(signal.SIGALRM) is signal.SIG_DFL  # the alarm handler is put back


# ------------------------------------------------------------------------------------------ imports

HEAVY = ("pyroute2", "filelock", "netaddr", "subprocess", "asyncio", "dataclasses", "inspect")

IMPORT_PROBE = """
import io, json, os, sys
from cni_ignite import cli
sys.stdin = io.TextIOWrapper(io.BytesIO(sys.argv[1].encode()))
sys.stdout, real_stdout = io.StringIO(), sys.stdout
rc = cli.ipam_main()
out = sys.stdout.getvalue()
heavy = sorted(m for m in sys.argv[2].split(",") if m in sys.modules)
real_stdout.write(json.dumps({"rc": rc, "out": out, "heavy": heavy}))
"""


@pytest.mark.parametrize(("name", "env", "stdin", "code"), [
    ("version", {"CNI_COMMAND": "VERSION"}, '{"cniVersion":"0.4.0"}', None),
    ("missing env", {"CNI_COMMAND": "ADD"}, "{}", 4),
    ("bad json", {"CNI_COMMAND": "ADD", "CNI_CONTAINERID": "c", "CNI_NETNS": "/x", "CNI_IFNAME": "e"}, "{", 6),
    ("bad version", {"CNI_COMMAND": "DEL", "CNI_CONTAINERID": "c", "CNI_IFNAME": "e"},
     '{"cniVersion":"9.9.9","name":"n"}', 1),
    ("bad subnet", {"CNI_COMMAND": "ADD", "CNI_CONTAINERID": "c", "CNI_NETNS": "/x", "CNI_IFNAME": "e"},
     '{"cniVersion":"1.0.0","name":"n","ipam":{"subnet":"10.0.0.1/8"}}', 7),
])
def test_version_and_error_paths_import_no_heavy_module(name: str, env: dict[str, str], stdin: str,
                                                        code: int | None) -> None:
    clean = {k: v for k, v in os.environ.items() if not k.startswith("CNI_")}
    argv = [sys.executable, "-c", textwrap.dedent(IMPORT_PROBE), stdin, ",".join(HEAVY)]
    proc = subprocess.run(argv, env={**clean, **env}, capture_output=True, text=True, timeout=30, check=True)
    probe = json.loads(proc.stdout)
    assert probe["heavy"] == [], name
    doc = json.loads(probe["out"])
    if code is None:
        assert probe["rc"] == 0 and doc["cniVersion"] == "0.4.0"
    else:
        assert (probe["rc"], doc["code"]) == (1, code)


def test_error_when_gc_is_given_no_attachment_list_at_all(ipam: Ipam) -> None:
    """An empty list releases everything; a missing list is a caller's mistake and releases nothing."""
    ipam("ADD", ipam.conf(SMALL), cid="keep")
    out = ipam("GC", ipam.conf(SMALL))
    assert out.code == 7 and "valid-attachments" in out.doc["msg"]
    assert set(ipam.leases()) == {"10.1.0.2"}
