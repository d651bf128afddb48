"""Sticky addresses, holds, reservations and the owner, through the real skeleton in-process (ipamenv)."""

from __future__ import annotations

import shutil
import time
from typing import TYPE_CHECKING, Any

import pytest
from ipamenv import NET, Ipam

from cni_ignite import reserve as admin
from cni_ignite.errors import InvalidConfig
from cni_ignite.identity import owner_key
from cni_ignite.ipam import sticky
from cni_ignite.ipam.store import parse_slot

if TYPE_CHECKING:
    from pathlib import Path

SMALL = {"subnet": "10.1.0.0/29"}  # 10.1.0.2 .. 10.1.0.6 (gateway .1)
POOL = [f"10.1.0.{i}/29" for i in range(2, 7)]
S = 1_000_000_000


def k8s(name: str, ns: str = "ns", cid: str = "c") -> str:
    return (f"IgnoreUnknown=1;K8S_POD_NAMESPACE={ns};K8S_POD_NAME={name};K8S_POD_INFRA_CONTAINER_ID={cid};"
            "K8S_POD_UID=6d3f0a1e-1111-2222-3333-444455556666")


class Clock:
    def __init__(self, monkeypatch: pytest.MonkeyPatch) -> None:
        self.ns = 1_700_000_000 * S
        monkeypatch.setattr(time, "time_ns", lambda: self.ns)

    def advance(self, seconds: float) -> None:
        self.ns += int(seconds * S)


@pytest.fixture
def ipam(tmp_path: Path) -> Ipam:
    return Ipam(tmp_path / "data")


@pytest.fixture
def clock(monkeypatch: pytest.MonkeyPatch) -> Clock:
    return Clock(monkeypatch)


def sticky_conf(ipam: Ipam, hold: Any = 60, **extra: Any) -> dict[str, Any]:
    return ipam.conf({**SMALL, "sticky": {"hold": hold}, **extra})


def add(ipam: Ipam, conf: dict[str, Any], cid: str, owner: str | None = None, ifname: str = "eth0") -> str:
    out = ipam("ADD", conf, cid=cid, ifname=ifname, args=k8s(owner, cid=cid) if owner else "")
    return out.ips[0]


def delete(ipam: Ipam, conf: dict[str, Any], cid: str, owner: str | None = None, ifname: str = "eth0") -> None:
    assert ipam("DEL", conf, cid=cid, ifname=ifname, args=k8s(owner, cid=cid) if owner else "").rc == 0


# ------------------------------------------------------------------------------------------- sticky

def test_an_owner_gets_its_address_back_after_del_with_a_new_container_id(ipam: Ipam, clock: Clock) -> None:
    conf = sticky_conf(ipam)
    first = add(ipam, conf, "sandbox-1", "web")
    delete(ipam, conf, "sandbox-1", "web")
    assert add(ipam, conf, "other-1", "db") != first  # another owner does not get the held address
    clock.advance(5)
    assert add(ipam, conf, "sandbox-2", "web") == first
    assert ipam.leases()[first.split("/")[0]] == b"sandbox-2\r\neth0"  # a plain host-local lease again


def test_a_released_address_is_a_placeholder_host_local_sees_as_taken(ipam: Ipam, clock: Clock) -> None:
    conf = sticky_conf(ipam, hold="2m")
    ip = add(ipam, conf, "c1", "web").split("/")[0]
    delete(ipam, conf, "c1", "web")
    now = clock.ns
    assert ipam.leases() == {ip: f"_ignite_held_\r\neth0\r\nk8s:ns/web\r\n{now}\r\n{now + 120 * S}".encode()}
    delete(ipam, conf, "c1", "web")  # a repeated DEL changes nothing
    assert ipam.leases()[ip].startswith(b"_ignite_held_")


def test_without_the_new_keys_del_removes_the_lease_and_writes_no_record(ipam: Ipam) -> None:
    conf = ipam.conf(SMALL)
    add(ipam, conf, "c1", "web")
    delete(ipam, conf, "c1", "web")
    assert ipam.leases() == {}
    idx = ipam.data_dir / ".ignite-index" / NET
    assert not [p.name for p in idx.iterdir() if p.name.startswith(("o-", "b-", "res-", "rip-", "config-"))]
    assert add(ipam, conf, "c2", "db") == "10.1.0.3/29"  # host-local's round robin


def test_while_held_no_other_owner_gets_it_even_when_the_range_is_full(ipam: Ipam, clock: Clock) -> None:
    conf = sticky_conf(ipam, hold=60)
    got = [add(ipam, conf, f"c{i}", f"pod{i}") for i in range(5)]
    assert got == POOL
    for i in range(5):
        delete(ipam, conf, f"c{i}", f"pod{i}")
        clock.advance(1)
    out = ipam("ADD", conf, cid="new", args=k8s("new"))
    assert out.rc != 0 and out.doc is not None and "no IP addresses available" in out.doc["msg"]
    assert all(v.startswith(b"_ignite_held_") for v in ipam.leases().values())
    clock.advance(60 - 4)  # pod0's hold is over, pod1's not yet
    assert add(ipam, conf, "new", "new") == POOL[0]
    assert add(ipam, conf, "new2", "new2") != POOL[0]  # then pod1 (least recently released next)
    assert ipam("ADD", conf, cid="new3", args=k8s("new3")).rc != 0


def test_after_the_hold_never_used_addresses_come_first(ipam: Ipam, clock: Clock) -> None:
    conf = ipam.conf({"subnet": "10.1.0.0/28", "sticky": {"hold": 10}})
    a = add(ipam, conf, "c1", "a")
    delete(ipam, conf, "c1", "a")
    clock.advance(3600)
    others = [add(ipam, conf, f"x{i}", f"x{i}") for i in range(12)]  # every never-used address of .2-.14 but a's
    assert a not in others
    assert add(ipam, conf, "x12", "x12") == a  # the range is full: a's expired hold is reclaimed
    delete(ipam, conf, "x12", "x12")
    delete(ipam, conf, "c2", "a")  # a is gone: its record points at an address now held for x12
    out = ipam("ADD", conf, cid="c3", args=k8s("a"))
    assert out.rc != 0  # full: everything else leased, x12's hold is running


def test_hold_zero_is_best_effort(ipam: Ipam, clock: Clock) -> None:
    conf = sticky_conf(ipam, hold=0)
    a = add(ipam, conf, "c1", "a")
    delete(ipam, conf, "c1", "a")
    others = [add(ipam, conf, f"x{i}", f"x{i}") for i in range(4)]
    assert a not in others  # never-used first
    delete(ipam, conf, "x0", "x0")
    assert add(ipam, conf, "c2", "a") == a  # still free: back to its owner


def test_sticky_true_uses_the_default_hold_and_ifname_is_part_of_the_identity(ipam: Ipam, clock: Clock) -> None:
    conf = ipam.conf({**SMALL, "sticky": True})
    e0 = add(ipam, conf, "vm1", "vm", "eth0")
    e1 = add(ipam, conf, "vm1", "vm", "eth1")
    assert e0 != e1
    delete(ipam, conf, "vm1", "vm", "eth0")
    delete(ipam, conf, "vm1", "vm", "eth1")
    slot = parse_slot(ipam.leases()[e0.split("/")[0]])
    assert slot is not None and slot.until - slot.released == 3600 * S
    assert add(ipam, conf, "vm2", "vm", "eth1") == e1
    assert add(ipam, conf, "vm2", "vm", "eth0") == e0


def test_explicit_owner_from_cni_args_and_args_cni(ipam: Ipam, clock: Clock) -> None:
    conf = sticky_conf(ipam)
    a = ipam("ADD", conf, cid="vm-1", args="IGNITE_OWNER=ignite/my-vm").ips[0]  # accepted without IgnoreUnknown
    assert ipam("DEL", conf, cid="vm-1", args="IGNITE_OWNER=ignite/my-vm").rc == 0
    conf2 = {**conf, "args": {"cni": {"owner": "ignite/my-vm"}}}
    assert ipam("ADD", conf2, cid="vm-2").ips[0] == a


def test_the_owner_record_survives_a_del_without_cni_args(ipam: Ipam, clock: Clock) -> None:
    conf = sticky_conf(ipam)
    a = add(ipam, conf, "s1", "web")
    assert ipam("DEL", conf, cid="s1").rc == 0  # kubelet's second DEL carries no pod names
    assert add(ipam, conf, "s2", "web") == a


@pytest.mark.parametrize(("args", "top", "code"), [
    ("IGNITE_OWNER=", {}, 4),
    ("IGNITE_OWNER= padded", {}, 4),
    ("IGNITE_OWNER=a\tb", {}, 4),
    ("IgnoreUnknown=1;K8S_POD_NAMESPACE=ns;K8S_POD_NAME=Web/../x", {}, 4),
    ("IgnoreUnknown=1;K8S_POD_NAMESPACE=ns\n;K8S_POD_NAME=web", {}, 4),
    ("", {"args": {"cni": {"owner": 7}}}, 7),
    ("", {"args": {"cni": {"owner": "x" * 254}}}, 7),
    ("IGNITE_OWNER=a", {"args": {"cni": {"owner": "b"}}}, 7),
    ("", {"args": {"cni": "owner"}}, 7),
    ("K8S_POD_NAME=web", {}, 4),  # unknown key without IgnoreUnknown, as host-local
])
def test_error_when_the_owner_is_malformed(ipam: Ipam, args: str, top: dict[str, Any], code: int) -> None:
    out = ipam("ADD", {**sticky_conf(ipam), **top}, args=args)
    assert out.code == code, out.doc
    assert ipam.leases() == {}


# ------------------------------------------------------------------------------------------ requests

def test_requesting_another_owners_held_address_is_an_error_then_allowed_after_the_hold(
        ipam: Ipam, clock: Clock) -> None:
    conf = sticky_conf(ipam, hold=60)
    a = add(ipam, conf, "c1", "a").split("/")[0]
    delete(ipam, conf, "c1", "a")
    before = ipam.files()
    out = ipam("ADD", conf, cid="c2", args=k8s("b", cid="c2") + f";IP={a}")
    assert out.code == 7 and "held for k8s:ns/a" in out.doc["msg"]  # type: ignore[index]
    assert ipam.files() == before
    clock.advance(61)
    assert ipam("ADD", conf, cid="c2", args=k8s("b", cid="c2") + f";IP={a}").ips == [f"{a}/29"]
    assert add(ipam, conf, "c3", "a") != f"{a}/29"  # requests win; a gets another address


def test_an_owner_may_request_its_own_held_address(ipam: Ipam, clock: Clock) -> None:
    conf = sticky_conf(ipam)
    a = add(ipam, conf, "c1", "a").split("/")[0]
    delete(ipam, conf, "c1", "a")
    assert ipam("ADD", {**conf, "runtimeConfig": {"ips": [a]}}, cid="c2", args=k8s("a", cid="c2")).ips == [f"{a}/29"]


# -------------------------------------------------------------------------------------- reservations

def res_conf(ipam: Ipam, *items: dict[str, Any], is_sticky: bool = False) -> dict[str, Any]:
    return ipam.conf({**SMALL, "reservations": list(items), **({"sticky": True} if is_sticky else {})})


def test_a_reserved_address_is_never_given_to_another_owner(ipam: Ipam, clock: Clock) -> None:
    conf = res_conf(ipam, {"owner": "k8s:ns/db", "address": "10.1.0.2", "mac": "02:00:00:00:00:0A"})
    got = [add(ipam, conf, f"x{i}", f"x{i}") for i in range(4)]
    assert "10.1.0.2/29" not in got
    assert ipam("ADD", conf, cid="x9", args=k8s("x9")).rc != 0  # full for everyone else
    assert ipam("ADD", conf, cid="x9", args=k8s("x9") + ";IP=10.1.0.2").code == 7
    assert add(ipam, conf, "db-1", "db") == "10.1.0.2/29"
    delete(ipam, conf, "db-1", "db")
    assert ipam.leases()["10.1.0.2"] == b"_ignite_reserved_\r\neth0\r\nk8s:ns/db"
    assert sticky.reservation_mac(str(ipam.data_dir), NET, "k8s:ns/db", "eth0") == "02:00:00:00:00:0a"
    assert sticky.reservation_mac(str(ipam.data_dir), NET, "k8s:ns/db", "eth1") == ""
    assert add(ipam, conf, "db-2", "db") == "10.1.0.2/29"


def test_removing_a_config_reservation_frees_its_placeholder(ipam: Ipam) -> None:
    conf = res_conf(ipam, {"owner": "o", "address": "10.1.0.4"})
    assert ipam("STATUS", conf).rc == 0
    assert ipam.leases() == {"10.1.0.4": b"_ignite_reserved_\r\neth0\r\no"}
    assert ipam("STATUS", ipam.conf(SMALL)).rc == 0
    assert ipam.leases() == {}


@pytest.mark.parametrize(("item", "msg"), [
    ({"owner": "o", "address": "10.9.0.2"}, "in no range"),
    ({"owner": "o", "address": "10.1.0.1"}, "gateway"),
    ({"owner": "o", "address": "10.1.0.7"}, "in no range"),  # the broadcast address is outside the range
    ({"owner": "o", "address": "10.1.0.2%eth0"}, "invalid"),
    ({"owner": "o"}, "needs an address"),
    ({"owner": "", "address": "10.1.0.2"}, "owner"),
    ({"owner": "a\nb", "address": "10.1.0.2"}, "owner"),
    ({"address": "10.1.0.2"}, "owner"),
    ({"owner": "o", "address": "10.1.0.2", "mac": "01:00:5e:00:00:01"}, "multicast"),
    ({"owner": "o", "address": "10.1.0.2", "mac": "zz"}, "MAC"),
    ({"owner": "o", "address": "10.1.0.2", "ifname": "a/b"}, "interface name"),
    ({"owner": "o", "address": "10.1.0.2", "color": "red"}, "unknown keys"),
    ("10.1.0.2", "must be an object"),
])
def test_error_when_a_reservation_is_malformed(ipam: Ipam, item: Any, msg: str) -> None:
    out = ipam("ADD", res_conf(ipam, item))
    assert out.code == 7 and msg in out.doc["msg"], out.doc  # type: ignore[index]
    assert not ipam.data_dir.exists()


@pytest.mark.parametrize(("items", "msg"), [
    ([{"owner": "a", "address": "10.1.0.2"}, {"owner": "b", "address": "10.1.0.2"}], "reserved twice"),
    ([{"owner": "a", "address": "10.1.0.2"}, {"owner": "a", "address": "10.1.0.3"}], "two reservations"),
    ([{"owner": "a", "address": "10.1.0.2", "mac": "02:00:00:00:00:01"},
      {"owner": "b", "address": "10.1.0.3", "mac": "02:00:00:00:00:01"}], "MAC 02:00:00:00:00:01 is reserved twice"),
])
def test_error_when_reservations_collide(ipam: Ipam, items: list[dict[str, Any]], msg: str) -> None:
    out = ipam("ADD", res_conf(ipam, *items))
    assert out.code == 7 and msg in out.doc["msg"], out.doc  # type: ignore[index]
    assert not ipam.data_dir.exists()


@pytest.mark.parametrize(("sticky_value", "msg"), [
    ({"hold": "1 hour"}, "duration"), ({"hold": -1}, "out of range"), ({"hold": True}, "duration"),
    ({"holdTime": 5}, "unknown keys"), ("yes", "true, false or an object"),
])
def test_error_when_sticky_is_malformed(ipam: Ipam, sticky_value: Any, msg: str) -> None:
    out = ipam("ADD", ipam.conf({**SMALL, "sticky": sticky_value}))
    assert out.code == 7 and msg in out.doc["msg"], out.doc  # type: ignore[index]
    assert not ipam.data_dir.exists()


def test_runtime_reserve_and_unreserve(ipam: Ipam, clock: Clock) -> None:
    conf = ipam.conf({**SMALL, "sticky": True})
    net = admin.network_of(conf)
    admin.reserve(net, "vm-a", "10.1.0.5", mac="02:aa:00:00:00:01")
    assert ipam.leases() == {"10.1.0.5": b"_ignite_reserved_\r\neth0\r\nvm-a"}
    assert admin.reserve(net, "vm-a", "10.1.0.5", mac="02:aa:00:00:00:01").address.exploded == "10.1.0.5"
    before = ipam.files()
    for (owner, address, mac), msg in [(("vm-b", "10.1.0.5", ""), "already reserved for vm-a"),
                                       (("vm-a", "10.1.0.6", ""), "two reservations"),
                                       (("vm-b", "10.1.0.6", "02:aa:00:00:00:01"), "reserved twice"),
                                       (("vm-b", "10.1.0.1", ""), "gateway"),
                                       (("vm-b", "10.2.0.1", ""), "in no range")]:
        with pytest.raises(InvalidConfig, match=msg):
            admin.reserve(net, owner, address, mac=mac)
        assert ipam.files() == before
    assert ipam("ADD", conf, cid="vm-a-1", args="IGNITE_OWNER=vm-a").ips == ["10.1.0.5/29"]
    assert sticky.reservation_mac(str(ipam.data_dir), NET, "vm-a", "eth0") == "02:aa:00:00:00:01"
    assert sticky.attachment_of(str(ipam.data_dir), NET, "vm-a", "eth0") == "vm-a-1"
    other = ipam("ADD", conf, cid="vm-b-1", args="IGNITE_OWNER=vm-b").ips[0].split("/")[0]
    with pytest.raises(InvalidConfig, match="leased to container vm-b-1"):
        admin.reserve(net, "vm-c", other)
    assert ipam("DEL", conf, cid="vm-a-1", args="IGNITE_OWNER=vm-a").rc == 0
    assert sticky.attachment_of(str(ipam.data_dir), NET, "vm-a", "eth0") is None
    assert admin.unreserve(net, "vm-a") == ["10.1.0.5"]
    assert parse_slot(ipam.leases()["10.1.0.5"]).kind == "_ignite_held_"  # type: ignore[union-attr]
    with pytest.raises(InvalidConfig, match="not reserved"):
        admin.unreserve(net, "vm-a", "10.1.0.5")


def test_runtime_reserve_refuses_an_address_held_for_another_owner(ipam: Ipam, clock: Clock) -> None:
    conf = sticky_conf(ipam)
    a = add(ipam, conf, "c1", "a").split("/")[0]
    delete(ipam, conf, "c1", "a")
    with pytest.raises(InvalidConfig, match="held for k8s:ns/a"):
        admin.reserve(admin.network_of(conf), "b", a)


def test_leases_rows_show_owner_state_mac_and_container(ipam: Ipam, clock: Clock) -> None:
    conf = res_conf(ipam, {"owner": "k8s:ns/db", "address": "10.1.0.6", "mac": "02:00:00:00:00:06"}, is_sticky=True)
    add(ipam, conf, "web-1", "web")
    add(ipam, conf, "api-1", "api")
    delete(ipam, conf, "api-1", "api")
    rows = {r.address: r for r in admin.lease_rows(str(ipam.data_dir), NET)}
    assert rows["10.1.0.2"][:5] == ("10.1.0.2", "in use", "k8s:ns/web", "eth0", "web-1")
    assert rows["10.1.0.3"][:4] == ("10.1.0.3", "held", "k8s:ns/api", "eth0")
    assert rows["10.1.0.3"].until == pytest.approx(clock.ns / S + 3600)
    assert rows["10.1.0.6"][:6] == ("10.1.0.6", "reserved", "k8s:ns/db", "eth0", "", "02:00:00:00:00:06")
    clock.advance(3601)
    assert admin.lease_rows(str(ipam.data_dir), NET)[1].state == "remembered"


# ------------------------------------------------------------------------------------------- GC, reboot

def test_gc_release_starts_the_hold_and_leaves_placeholders(ipam: Ipam, clock: Clock) -> None:
    conf = res_conf(ipam, {"owner": "k8s:ns/db", "address": "10.1.0.6"}, is_sticky=True)
    web = add(ipam, conf, "web-1", "web").split("/")[0]
    keep = add(ipam, conf, "keep-1", "keep").split("/")[0]
    gc = {**conf, "cni.dev/valid-attachments": [{"containerID": "keep-1", "ifname": "eth0"}]}
    assert ipam("GC", gc).rc == 0
    leases = ipam.leases()
    assert leases[web].startswith(b"_ignite_held_\r\neth0\r\nk8s:ns/web\r\n")
    assert leases[keep] == b"keep-1\r\neth0"
    assert leases["10.1.0.6"] == b"_ignite_reserved_\r\neth0\r\nk8s:ns/db"
    assert add(ipam, conf, "web-2", "web") == f"{web}/29"


def test_reboot_keeps_only_the_data_dir_and_owners_get_their_addresses_back(tmp_path: Path, clock: Clock) -> None:
    before = Ipam(tmp_path / "before")
    conf = before.conf({"subnet": "10.1.0.0/24", "sticky": {"hold": "10m"}})
    owners = [f"pod{i}" for i in range(20)]
    got = {o: add(before, conf, f"{o}-sb1", o) for o in owners}
    add(before, conf, "vm-1", None)  # an Ignite VM: the owner is its ID
    shutil.copytree(before.data_dir, tmp_path / "after")  # the disk survives; mtimes and the index stamp do not
    after = Ipam(tmp_path / "after")
    conf = after.conf({"subnet": "10.1.0.0/24", "sticky": {"hold": "10m"}})
    clock.advance(120)
    assert after("GC", {**conf, "cni.dev/valid-attachments": []}).rc == 0  # the runtime's clean-up after boot
    assert add(after, conf, "intruder", "intruder") not in got.values()
    for o in reversed(owners):
        assert add(after, conf, f"{o}-sb2", o) == got[o]
    assert add(after, conf, "vm-1", None) == "10.1.0.22/24"


def test_owner_key_is_the_hash_of_owner_and_ifname() -> None:
    assert owner_key("a", "eth0") != owner_key("a", "eth1") != owner_key("a\0eth", "0")
    assert len(owner_key("a", "eth0")) == 32


def test_without_the_new_keys_a_hostile_pod_name_is_not_looked_at(ipam: Ipam) -> None:
    args = "IgnoreUnknown=1;K8S_POD_NAMESPACE=ns;K8S_POD_NAME=Web/../x"
    assert ipam("ADD", ipam.conf(SMALL), args=args).ips == ["10.1.0.2/29"]
