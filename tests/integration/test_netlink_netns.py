"""Namespaces by fd: NetnsGone, entering and always returning, sysctls written inside a throwaway netns."""

from __future__ import annotations

import os

import pytest
from nsutil import Namespaces, in_ns, path

from cni_ignite.netlink import sysctl
from cni_ignite.netlink.netns import current_ns_id, entered, is_current, ns_id, open_netns, socket_in
from cni_ignite.netlink.ops import NetnsGone
from cni_ignite.netlink.rtnl import Rtnl

pytestmark = pytest.mark.privileged


def test_error_when_netns_path_does_not_exist() -> None:
    with pytest.raises(NetnsGone):
        open_netns("/var/run/netns/cnit-does-not-exist")
    with pytest.raises(NetnsGone):
        Rtnl("/var/run/netns/cnit-does-not-exist")


def test_netns_gone_after_the_namespace_is_deleted(netns: Namespaces) -> None:
    name = netns.new()
    assert not is_current(path(name))
    netns.cleanup()
    with pytest.raises(NetnsGone):
        Rtnl(path(name))


def test_own_netns_is_recognised() -> None:
    assert is_current("/proc/self/ns/net")
    assert ns_id("/proc/self/ns/net") == current_ns_id()


def test_entered_returns_to_the_original_netns_even_when_the_body_fails(netns: Namespaces) -> None:
    name = netns.new()
    before = current_ns_id()
    fd = open_netns(path(name))
    try:
        with pytest.raises(RuntimeError), entered(fd):
            assert current_ns_id() == ns_id(fd)
            raise RuntimeError("boom")
        assert current_ns_id() == before
    finally:
        os.close(fd)


def test_ops_in_a_netns_opened_by_fd_stay_in_that_netns(netns: Namespaces) -> None:
    name = netns.new()
    fd = open_netns(path(name))
    try:
        with Rtnl(fd) as rtnl:
            rtnl.create_bridge("br-fd")
            assert {link.name for link in rtnl.links()} == {"lo", "br-fd"}
        os.close(fd)
        fd = -1
        in_ns(name, ["ip", "link", "show", "br-fd"])
        with Rtnl() as here:
            assert here.link("br-fd") is None  # our own namespace is untouched
    finally:
        if fd >= 0:
            os.close(fd)


def test_socket_created_inside_a_netns_keeps_seeing_it(netns: Namespaces) -> None:
    import socket

    name = netns.new()
    fd = open_netns(path(name))
    try:
        sock = socket_in(fd, socket.AF_INET, socket.SOCK_DGRAM)
        with sock:
            sock.bind(("127.0.0.1", 0))
            port = sock.getsockname()[1]
            # the port is bound in the throwaway netns, so it is free here
            with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as other:
                other.bind(("127.0.0.1", port))
    finally:
        os.close(fd)


def test_sysctls_are_written_inside_the_netns_and_skipped_when_unchanged(netns: Namespaces) -> None:
    name = netns.new()
    root_forward = sysctl.read("net.ipv4.ip_forward")
    fd = open_netns(path(name))
    try:
        with entered(fd):
            assert sysctl.read("net.ipv4.ip_forward") == "0"
            assert sysctl.enable_ip_forward(4) is True
            assert sysctl.enable_ip_forward(4) is False
            assert sysctl.arp_notify("lo") is True
            sysctl.set_dad("lo", enabled=False)
            sysctl.route_localnet("lo")
            sysctl.enable_ipv6("lo")
            assert sysctl.read("net/ipv6/conf/lo/accept_dad") == "0"
            with pytest.raises(sysctl.SysctlMissing):
                sysctl.set_ipv4("nope0", "arp_notify", 1)
    finally:
        os.close(fd)
    assert in_ns(name, ["cat", "/proc/sys/net/ipv4/ip_forward"]).stdout.strip() == b"1"
    assert in_ns(name, ["cat", "/proc/sys/net/ipv4/conf/lo/arp_notify"]).stdout.strip() == b"1"
    assert sysctl.read("net.ipv4.ip_forward") == root_forward
