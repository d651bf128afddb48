"""The plugins' import-cost measures (issue 14 part 3, benchmarks/IMPORTS.md) keep their behaviour.

- The modules of the ADD/DEL path owned by the netlink/IPAM/config layer import no ``typing``, ``socket``,
  ``signal`` (or what those pull in: ``selectors``), ``ctypes`` or ``dataclasses`` at import time; checked in a
  fresh interpreter without ``site``, so nothing else has loaded them first.
- The regexes they no longer compile at import are replaced by str-method checks that accept exactly the same
  language, compared here on edge cases and on random strings over the characters that matter.
"""

from __future__ import annotations

import json
import random
import re

import pytest
from freshpy import run_fresh

from cni_ignite import ipparse
from cni_ignite.ipam.config import DURATION, duration_groups, ifname_bad_char
from cni_ignite.netconf import NAME_RE

# Modules of a bridge/IPAM ADD or DEL this layer owns (skel, firewall, guard and bridge.plugin have their own
# owners: they are imported by the whole path and checked by tests/frozen/test_frozen_imports.py).
OWN_PATH = (
    "cni_ignite", "cni_ignite.cli", "cni_ignite.errors", "cni_ignite.version", "cni_ignite.identity",
    "cni_ignite.netconf", "cni_ignite.result", "cni_ignite.ipparse", "cni_ignite.hostexec", "cni_ignite._sha",
    "cni_ignite.netlink", "cni_ignite.netlink.ops", "cni_ignite.netlink.netns", "cni_ignite.netlink.rtnl",
    "cni_ignite.netlink.sysctl", "cni_ignite.netlink.tap", "cni_ignite.netlink.conntrack",
    "cni_ignite.ipam.allocator", "cni_ignite.ipam.config", "cni_ignite.ipam.store", "cni_ignite.ipam.sticky",
    "cni_ignite.bridge.config", "cni_ignite.bridge.kernel", "cni_ignite.bridge.vm", "cni_ignite.bridge.routed",
    "cni_ignite.bridge.ipam_call",
)
NOT_ON_THE_PATH = {"typing", "socket", "selectors", "signal", "ctypes", "dataclasses", "inspect", "subprocess",
                   "hashlib", "json", "re", "enum"}


def test_own_path_modules_import_no_typing_socket_signal_ctypes_json_or_re() -> None:
    code = (
        "import sys\n"
        f"for name in {OWN_PATH!r}:\n"
        "    __import__(name)\n"
        "print(' '.join(sorted(sys.modules)))\n"  # not json: it would load json and re itself
    )
    out = run_fresh(code)
    loaded = set(out.split())
    assert set(OWN_PATH) <= loaded
    assert sorted(loaded & NOT_ON_THE_PATH) == []


NAME_PATTERN = re.compile(r"^[a-zA-Z0-9][a-zA-Z0-9_.\-]*\Z")
ADDRESS = re.compile(r"[0-9A-Fa-f.:]{2,45}\Z")
PREFIXED = re.compile(r"[0-9A-Fa-f.:]{2,45}(/[0-9.]{1,15})?\Z")


def _corpus(alphabet: str, longest: int, n: int = 30_000) -> list[str]:
    rng = random.Random(14)
    return [''.join(rng.choice(alphabet) for _ in range(rng.randint(0, longest))) for _ in range(n)]


@pytest.mark.parametrize("name", [
    "", "a", "Z9", "0", "a-b.c_d", "a\n", "\na", "-a", "_a", ".a", "a b", "a/b", "é", "aé", "٣", "a٣", "\uff41",
    "a\x00", "a\t", "a$", "A" * 300,
])
def test_name_pattern_is_the_regex(name: str) -> None:
    assert NAME_RE.match(name) == bool(NAME_PATTERN.match(name))
    assert NAME_RE.pattern == NAME_PATTERN.pattern


def test_name_pattern_is_the_regex_on_random_names() -> None:
    diff = [s for s in _corpus("aZ09_.-\n /é٣\x00$", 6) if NAME_RE.match(s) != bool(NAME_PATTERN.match(s))]
    assert diff == []


@pytest.mark.parametrize("text", [
    "", "1", "10", "10.0.0.1", "10.0.0.1/24", "fe80::1/64", "::", "1" * 45, "1" * 46, "1" * 45 + "/1",
    "11/" + "1" * 15, "11/" + "1" * 16, "11/", "11//1", "1.2.3.4/", "1.2.3.4/2a", "1.2.3.4\n", "1.2.3.4/24\n",
    "g::1", "٣٣", "1.2.3.4/٣", "1.2.3.4 ", "/24",
])
def test_address_characters_are_the_regexes(text: str) -> None:
    assert ipparse._address_chars(text) == bool(ADDRESS.match(text))
    assert ipparse._prefixed_chars(text) == bool(PREFIXED.match(text))


def test_address_characters_are_the_regexes_on_random_text() -> None:
    diff = [s for s in _corpus("0a.:/9F\nG٣ ", 50)
            if ipparse._address_chars(s) != bool(ADDRESS.match(s))
            or ipparse._prefixed_chars(s) != bool(PREFIXED.match(s))]
    assert diff == []


def test_setns_through__ctypes_enters_and_reports_errno_without_the_ctypes_package() -> None:
    code = (
        "import errno, json, os, sys\n"
        "from cni_ignite.netlink import netns\n"
        "call = netns._libc_setns()\n"
        "out = {}\n"
        "fd = os.open(netns.SELF_NETNS, os.O_RDONLY)\n"
        "call(fd, netns.CLONE_NEWNET)  # our own netns: a no-op that must succeed\n"
        "before = netns.current_ns_id()\n"
        "for name, (bad, kind) in {'ebadf': (-1, netns.CLONE_NEWNET), 'einval': (fd, 0x04000000)}.items():\n"
        "    try:\n"
        "        call(bad, kind)\n"
        "    except OSError as exc:\n"
        "        out[name] = [exc.errno, exc.strerror]\n"
        "out['same'] = netns.current_ns_id() == before\n"
        "out['ctypes'] = 'ctypes' in sys.modules\n"
        "print(json.dumps(out))\n"
    )
    out = run_fresh(code)
    out = json.loads(out)
    assert out["ebadf"] == [9, "Bad file descriptor"]  # EBADF
    assert out["einval"][0] == 22  # EINVAL: a netns fd with CLONE_NEWUTS as nstype
    assert out["same"] is True
    assert out["ctypes"] is False


def test_tap_and_tc_load_only_in_vm_modes() -> None:
    """A plain ADD/DEL (vm mode "none", the default) imports neither the tap nor the tc message layer."""
    code = (
        "import sys, json\n"
        "import cni_ignite.netlink.rtnl, cni_ignite.bridge.kernel, cni_ignite.bridge.config\n"
        "print(json.dumps(sorted(sys.modules)))\n"
    )
    out = run_fresh(code)
    loaded = set(json.loads(out))
    assert "cni_ignite.netlink.rtnl" in loaded
    assert sorted(loaded & {"cni_ignite.netlink.tap", "cni_ignite.netlink._tc"}) == []


@pytest.mark.parametrize("text", [
    "", "0", "90s", "1h30m", "7d", "1d2h3m4s", "1s2m", "999999999s", "1000000000s", "0000000001h", "1h1h", "h", "1",
    "1x", "1h ", " 1h", "1h\n", "\u0663h", "1\u0663m", "12d", "-1s", "1.5h", "1H", "\uff11s",
])
def test_duration_is_the_regex(text: str) -> None:
    m = re.match(DURATION, text)
    assert duration_groups(text) == (m.groups() if m else None)


def test_duration_is_the_regex_on_random_text() -> None:
    diff = [s for s in _corpus("0129dhms x\u0663", 12)
            if duration_groups(s) != (((m := re.match(DURATION, s)) and m.groups()) or None)]
    assert diff == []


def test_ifname_check_is_the_regex() -> None:
    for s in [*_corpus("ae0/:. \t\u00a0\u2003\u3000\x1c\x85", 6), "eth0", "a b", "a\u2028"]:
        assert ifname_bad_char(s) == (re.search(r"[/:\s]", s) is not None), repr(s)
