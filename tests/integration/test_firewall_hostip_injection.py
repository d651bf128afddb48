"""A port mapping's hostIP is input text: it must never reach an iptables-restore / nft script.

Python's ipaddress keeps any text after ``%`` in an IPv6 address (newlines included), so a scoped hostIP
once smuggled whole restore-script lines into ip6tables. ADD must refuse it with code 7 and leave nothing.
"""

from __future__ import annotations

import shutil

import pytest
from bridgeenv import HostEnv, base_conf

pytestmark = pytest.mark.privileged

HOSTILE = ("fe80::1%lo\nCOMMIT\n*filter\n-I INPUT 1 -m comment --comment INJECTED -j ACCEPT\nCOMMIT\n"
           "*nat\n-A CNI-IGNITE-DNAT -d fe80::1")


def dual_stack(env: HostEnv, backend: str, host_ip: str) -> dict:
    conf = base_conf(env.data_dir, ipMasq=True, backend=backend, stateDir=env.data_dir + "/state")
    conf["ipam"] = {"type": "ignite-ipam", "dataDir": env.data_dir,
                    "ranges": [[{"subnet": "10.63.0.0/24"}], [{"subnet": "fd00:63::/64"}]]}
    conf["runtimeConfig"] = {"portMappings": [{"hostPort": 8443, "containerPort": 443, "protocol": "tcp",
                                               "hostIP": host_ip}]}
    return conf


def leftovers(env: HostEnv) -> list[str]:
    text = env.host_sh("ip6tables-save", check=False) + env.host_sh("iptables-save", check=False)
    text += env.host_sh("nft", "list", "ruleset", check=False)
    return [ln for ln in text.splitlines()
            if "INJECTED" in ln or "CNI-IG" in ln or "cni-ignite" in ln or "cni_ignite" in ln or "10.63." in ln
            or "fd00:63:" in ln]


@pytest.mark.parametrize("backend", ["iptables", "nftables"])
@pytest.mark.parametrize("host_ip", [HOSTILE, "fe80::1%lo", "2001:db8::1%eth0", " 192.0.2.1", "192.0.2.1\n"])
def test_scoped_or_decorated_host_ip_is_refused_with_code_7_and_leaves_nothing(netns, backend, host_ip):
    env = HostEnv(netns)
    try:
        c1 = env.container()
        conf = dual_stack(env, backend, host_ip)
        res = env.run("ADD", conf, "inject", c1)
        assert res.rc != 0 and res.out is not None, res.stdout + res.stderr
        assert res.out["code"] == 7, res.out
        assert "hostIP" in res.out["msg"] + res.out.get("details", "")
        assert leftovers(env) == []
        assert env.leases() == []
        assert "veth" not in env.host_sh("ip", "-o", "link")
        # DEL with the same hostile conf (a runtime retries DEL until it succeeds) must succeed, leave nothing.
        env.run("DEL", conf, "inject", c1).ok()
        assert leftovers(env) == []
    finally:
        shutil.rmtree(env.data_dir, ignore_errors=True)
