"""A real full disk and a read-only dataDir: dataDir and stateDir on a small tmpfs, mounted in a private
mount namespace (never the machine's): ADD fails cleanly with code 5 and leaves nothing; DEL and GC work
on the full disk; a read-only dataDir gives a clear error."""

from __future__ import annotations

import shutil
from typing import TYPE_CHECKING

import pytest
from harness import PrivateMounts, Scenario, answer_problem, on_tmpfs

if TYPE_CHECKING:
    from collections.abc import Iterator

pytestmark = [pytest.mark.privileged,
              pytest.mark.skipif(not shutil.which("unshare") or not shutil.which("nsenter"),
                                 reason="needs unshare and nsenter (util-linux)")]


@pytest.fixture
def mounts() -> Iterator[PrivateMounts]:
    with PrivateMounts() as m:
        yield m


def second_container(sc: Scenario) -> str:
    return sc.spaces.new("cnit-fctr")


@pytest.mark.parametrize("plugin", ["bridge", "ipam"])
def test_full_disk_add_fails_with_5_and_del_and_gc_still_work(mounts: PrivateMounts, plugin: str) -> None:
    with Scenario(plugin) as sc:
        on_tmpfs(sc, mounts, size="512k")
        sc.prepare()
        first = sc.call("ADD")
        assert first.rc == 0, first.stdout + first.stderr
        sc.prev = first.doc
        with_first = sc.snapshot()
        mounts.fill(sc.root)
        other = second_container(sc)
        add = sc.call("ADD", cid="second", ctr=other)
        assert add.outcome == "code-5", f"{add.outcome}: {add.stdout} {add.stderr[-600:]}"
        assert "No space left on device" in add.stdout
        now = sc.snapshot()
        assert {k: v for k, v in now.items() if v != with_first[k]} == {}, "the failed ADD left something"
        assert sc.path("data", "faultnet").exists()
        assert sc.leases() == {ip: f"{sc.cid}\r\neth0" for ip in sc.leases()}
        for cid, ctr, prev in (("second", other, None), (sc.cid, sc.ctr, first.doc)):
            dl = sc.call("DEL", cid=cid, ctr=ctr, prev=prev)
            assert dl.rc == 0, f"DEL {cid} on a full disk: {dl.stdout} {dl.stderr[-600:]}"
        sc.prev = None
        assert sc.leases() == {}
        gc = sc.call("GC", valid=[])
        assert gc.rc == 0, f"GC on a full disk: {gc.stdout} {gc.stderr[-600:]}"
        sc.path(".fill").unlink()
        assert sc.leftovers() == []
        again = sc.call("ADD")  # with room again, everything works
        assert again.rc == 0, again.stdout
        sc.prev = again.doc
        assert sc.call("DEL").rc == 0


@pytest.mark.parametrize("plugin", ["bridge", "ipam"])
def test_read_only_data_dir_gives_a_clear_error_and_leaves_nothing(mounts: PrivateMounts, plugin: str) -> None:
    with Scenario(plugin) as sc:
        on_tmpfs(sc, mounts, what="data", size="1m")
        sc.prepare()
        mounts.sh("mount", "-o", "remount,ro", f"{sc.root}/data")
        add = sc.call("ADD")
        assert answer_problem(add, "ADD") == "" and add.outcome == "code-5", f"{add.stdout} {add.stderr[-600:]}"
        assert "Read-only file system" in add.stdout, add.stdout
        assert sc.leftovers() == []
        assert sc.call("DEL").rc == 0
        mounts.sh("mount", "-o", "remount,rw", f"{sc.root}/data")
        assert sc.leftovers() == []
