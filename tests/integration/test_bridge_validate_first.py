"""ADD validates the whole configuration, the in-process ignite-ipam block included, before it changes
anything: a bad value is error 7 and the host namespace is left exactly as it was."""

from __future__ import annotations

import pytest
from bridgeenv import HostEnv, base_conf

pytestmark = pytest.mark.privileged


@pytest.mark.parametrize("ipam_change", [
    {"subnet": 42},
    {"subnet": "10.61.0.0/33"},
    {"dataDir": "relative/dir"},
    {"dataDir": "/tmp/../var/lib/cni"},
    {"ranges": "not-a-list"},
    {"routes": [{"dst": "nonsense"}]},
], ids=["subnet-number", "subnet-bad-prefix", "dataDir-relative", "dataDir-dotdot", "ranges-type", "route-dst"])
def test_an_invalid_ignite_ipam_block_is_error_7_before_the_bridge_is_created(netns, ipam_change):
    env = HostEnv(netns)
    conf = base_conf(env.data_dir)
    conf["ipam"] = {**conf["ipam"], **ipam_change}
    c1 = env.container()
    links_before = env.links()
    res = env.run("ADD", conf, "bad-ipam", c1)
    assert res.rc != 0 and res.out is not None and res.out["code"] == 7, res
    assert env.links() == links_before and "ignite0" not in env.links()
    assert env.ns_sh(c1, "ip", "-o", "link").count(":") == env.ns_sh(c1, "ip", "-o", "link", "show", "lo").count(":")
    assert env.leases() == []


def test_a_delegated_ipam_missing_from_cni_path_fails_before_the_bridge_is_created(netns):
    env = HostEnv(netns)
    conf = base_conf(env.data_dir)
    conf["ipam"] = {"type": "no-such-ipam-plugin"}
    c1 = env.container()
    res = env.run("ADD", conf, "no-ipam", c1)
    assert res.rc != 0 and res.out is not None and "no-such-ipam-plugin" in res.out["msg"], res
    assert "ignite0" not in env.links()
