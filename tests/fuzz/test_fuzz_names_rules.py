"""Names, rule text and paths for any input: chain names and comments within iptables/nft limits and
collision-free, nothing from the input breaking out of its token in an iptables-restore or nft script,
and every state or lease path inside its folder."""

from __future__ import annotations

import ipaddress
import os
import re
from typing import Any

import pytest
from hypothesis import assume, given
from hypothesis import strategies as st
from strategies import (
    address_texts,
    any_text,
    conditions,
    hostile_text,
    ifnames,
    names,
    plain_name,
    port_mappings,
)

from cni_ignite import ipparse, skel
from cni_ignite.bridge.config import host_veth_name, parse_bridge_config
from cni_ignite.errors import CniError
from cni_ignite.firewall import naming, rules, state
from cni_ignite.firewall.base import Attachment, FirewallConfig, Owner, parse_firewall_config
from cni_ignite.ipam.store import INDEX_DIR, LAST_RESERVED, DiskStore, lease_name
from cni_ignite.ipam.store import owner_key as lease_owner_key
from cni_ignite.netconf import NAME_RE, parse_netconf

HEX = re.compile(r"[0-9a-f]+\Z")
IPT_CHAIN = re.compile(r"[A-Za-z0-9_\-]{1,28}\Z")
NFT_NAME = re.compile(r"[A-Za-z][A-Za-z0-9_\-]{0,63}\Z")  # nft identifiers we use: no quoting needed
SHARED_IPT = {naming.IPT_POSTROUTING, naming.IPT_DNAT, naming.IPT_FORWARD, naming.IPT_ADMIN, naming.IPT_INPUT}
NFT_BASE = set(rules.NFT_BASE_RULES) | {"admin"}


def accepted_ifname(name: str) -> bool:
    try:
        skel.validate_ifname(name)
    except CniError:
        return False
    return True


def accepted_bridge(name: str) -> str | None:
    """The bridge name ignite-bridge's config parser accepts for `name` (None: refused)."""
    conf = parse_netconf(b'{"cniVersion":"1.0.0","name":"n","type":"ignite-bridge"}')
    try:
        return parse_bridge_config(conf._replace(raw={"bridge": name}), "").bridge
    except CniError:
        return None


# ------------------------------------------------------------------------------------------ naming

@given(any_text(300), any_text(100), any_text(30))
def test_chain_names_and_comments_fit_the_limits_for_any_owner(network: str, cid: str, ifname: str) -> None:
    key = Owner(network, cid, ifname).key
    assert HEX.match(key) and len(key) == naming.KEY_LEN
    for chain in naming.ipt_chains(key):
        assert IPT_CHAIN.match(chain) and chain not in SHARED_IPT
    for chain in (*naming.nft_chains(key), naming.nft_cond_chain(key)):
        assert NFT_NAME.match(chain) and chain not in NFT_BASE
    assert re.fullmatch(r"cni-ignite:[0-9a-f]{20}", naming.comment(key))


@given(st.lists(st.tuples(st.one_of(plain_name(), plain_name(120)), plain_name(64), ifnames()), min_size=2,
                max_size=6, unique=True))
def test_owner_keys_and_chain_names_of_distinct_attachments_differ(owners: list[tuple[str, str, str]]) -> None:
    owners = [o for o in owners if accepted_ifname(o[2])]
    keys = [Owner(*o).key for o in owners]
    assert len(set(keys)) == len(keys)
    chains = [c for k in keys for c in (*naming.ipt_chains(k), *naming.nft_chains(k), naming.nft_cond_chain(k))]
    assert len(set(chains)) == len(chains)


@given(st.tuples(plain_name(), plain_name(), st.sampled_from(["eth0", "net1"])), st.integers(0, 2), st.integers(1, 5))
def test_owner_key_fields_do_not_run_into_each_other(owner: tuple[str, str, str], field: int, n: int) -> None:
    """Moving characters from one field to the next gives another key (the fields are NUL-separated)."""
    a = list(owner)
    nxt = (field + 1) % 3
    assume(len(a[field]) > n)
    b = list(a)
    b[field], b[nxt] = a[field][:-n], a[field][-n:] + a[nxt]
    assert naming.owner_key(*a) != naming.owner_key(*b)


@given(st.one_of(any_text(300), names()))
def test_network_dir_is_one_safe_path_component(network: str) -> None:
    d = naming.network_dir(network)
    assert d and "/" not in d and "\x00" not in d and d not in (".", "..") and len(d.encode()) <= 255
    assert d.isprintable() and d == d.strip()


@given(st.lists(st.one_of(plain_name(), plain_name(300)), min_size=2, max_size=5, unique=True))
def test_network_dirs_of_accepted_network_names_differ(networks: list[str]) -> None:
    dirs = [naming.network_dir(n) for n in networks]
    assert len(set(dirs)) == len(dirs)


def test_network_dir_of_a_long_name_is_not_the_folder_of_another_network() -> None:
    long = "a" * 101  # a valid CNI network name (NAME_RE has no length limit) that network_dir hashes
    assert NAME_RE.match(long)
    hashed = naming.network_dir(long)
    assert not NAME_RE.match(hashed)  # "_net-<16 hex>" is no network's name, so no network shares its folder
    assert naming.network_dir("ports") != "ports"  # nor does a network share the port registry's folder


# ------------------------------------------------------------------------------------------ paths

@given(st.one_of(any_text(300), names()), any_text(80), any_text(20), st.just("/tmp/state"))
def test_state_record_path_stays_in_the_state_dir(network: str, cid: str, ifname: str, state_dir: str) -> None:
    path = state.record_path(state_dir, Owner(network, cid, ifname))
    assert os.path.dirname(os.path.dirname(path)) == state_dir
    assert os.path.normpath(path) == path and os.path.commonpath([state_dir, path]) == state_dir


@given(plain_name(200), st.one_of(address_texts(), hostile_text(40)), any_text(60), any_text(20))
def test_lease_paths_stay_in_the_network_folder(network: str, name: str, cid: str, ifname: str) -> None:
    """ipam.store: the network folder is inside dataDir; a lease is named by the text of a parsed address
    and only a canonical address text names a lease; index files are hashes."""
    data_dir = "/var/lib/cni/networks"
    store = DiskStore(data_dir, network)
    assert os.path.dirname(store.dir) == data_dir and os.path.normpath(store.dir) == store.dir
    assert os.path.dirname(store.idx) == os.path.join(data_dir, INDEX_DIR)
    ip = lease_name(name)
    if ip is not None:
        assert str(ip) == name and os.path.dirname(os.path.join(store.dir, str(ip))) == store.dir
    key = lease_owner_key((cid, ifname))
    assert re.fullmatch(r"a-[0-9a-f]{32}", key)
    assert "/" not in f"{LAST_RESERVED}{0}"


@given(st.one_of(st.lists(port_mappings(), max_size=4), st.none()), any_text(40), any_text(40))
def test_port_registry_paths_stay_in_the_registry(maps: Any, network: str, cid: str) -> None:
    from cni_ignite.firewall.base import parse_port_mappings

    try:
        mappings = parse_port_mappings(maps)
    except CniError:
        return
    for m in mappings:
        folder = f"{m.protocol}_{m.host_port}"
        token = state.addr_token(m)
        assert re.fullmatch(r"(tcp|udp|sctp)_[0-9]{1,5}", folder)
        assert token and "/" not in token and token not in (".", "..") and set(token) <= set("0123456789abcdefany.:")
        assert state._entry_token(f"{folder}/{token}") == token  # the registry reads back what it wrote


# ------------------------------------------------------------------------------------------ rule text

def _firewall_config(doc: dict[str, Any]) -> FirewallConfig | None:
    try:
        conf = parse_netconf(__import__("json").dumps({"cniVersion": "1.0.0", "name": "n", "type": "ignite-bridge",
                                                       **doc}).encode())
        return parse_firewall_config(conf.raw, conf.runtime_config)
    except CniError:
        return None


FW_DOCS = st.fixed_dictionaries({}, optional={
    "ipMasq": st.booleans(), "forward": st.booleans(), "snat": st.booleans(), "masqAll": st.booleans(),
    "backend": st.sampled_from(["auto", "iptables", "nftables"]), "conditionsV4": conditions(),
    "conditionsV6": conditions(), "markMasqBit": st.integers(0, 31),
    "externalSetMarkChain": st.one_of(plain_name(28), any_text(30)),
    "runtimeConfig": st.fixed_dictionaries({"portMappings": st.lists(port_mappings(), max_size=4)}),
})
ADDRESSES = st.lists(st.one_of(address_texts(), st.ip_addresses().map(str)), max_size=4)


def _addresses(texts: list[str]) -> tuple[Any, ...]:
    out = []
    for t in texts:
        try:
            out.append(ipparse.ip_interface(t))
        except ValueError:
            continue
    return tuple(out)


QUOTED = re.compile(r'"[^"\n]*"')
SAFE_IN_QUOTES = re.compile(r'[^"\x00\n\r\\]*\Z')  # nft reads any other byte inside "..." as part of the name


def _check_ipt_text(text: str, cfg: FirewallConfig, verb: str, rules_in_text: int) -> None:
    """Every line one whole iptables-restore line of a form we write, as many `verb` rule lines as rules
    (an injected newline would add one), no quote outside the admin's conditions, no NUL/CR/;/#."""
    lines = text.split("\n")
    assert lines[-1] == "" and lines[-2] == "COMMIT"
    assert sum(1 for line in lines if line.startswith(f"{verb} ")) == rules_in_text, text
    for line in lines[:-1]:
        assert not any(c in line for c in "\x00\r;#") and line.isprintable(), repr(line)
        bare = line
        for cond in (*cfg.conditions_v4, *cfg.conditions_v6):
            bare = bare.replace(cond, "")
        assert not any(c in bare for c in "\"'\\"), repr(line)
        assert re.fullmatch(r"\*(nat|filter)|:[A-Za-z0-9_\-]{1,28} - \[0:0\]|-[NX] [A-Za-z0-9_\-]{1,28}"
                            r"|-[ADCI] [A-Za-z0-9_\-]{1,28} [^\n]+|COMMIT", line), repr(line)


NFT_STATEMENT = re.compile(
    r"(add|flush|delete) chain inet cni_ignite [a-z0-9\-]+"
    r"|add rule inet cni_ignite [a-z0-9\-]+ [^\n]* comment \"\""
    r"|(add|delete) element inet cni_ignite [a-z0-9]+ \{ [^\n{}]* \}")


def _check_nft_text(text: str, cfg: FirewallConfig, elements: int, verb: str) -> None:
    """Every line one whole statement of a form we write, as many element statements as the plan has
    elements (input reaches the script only through elements and conditions rules), every quoted string
    closed on its line and free of NUL, newline and backslash."""
    lines = text.split("\n")
    assert lines[-1] == ""
    assert sum(1 for line in lines if line.startswith(f"{verb} element ")) == elements, text
    for line in lines[:-1]:
        for q in QUOTED.findall(line):
            assert SAFE_IN_QUOTES.match(q[1:-1]), repr(q)
        bare = QUOTED.sub('""', line)
        assert NFT_STATEMENT.fullmatch(bare), repr(line)
        for cond in (*cfg.conditions_v4, *cfg.conditions_v6):
            bare = bare.replace(cond, "")
        assert not any(c in bare for c in "\x00\r;#'\\") and bare.isprintable(), repr(line)
        assert bare.count('"') % 2 == 0, repr(line)


@given(FW_DOCS, st.one_of(plain_name(), plain_name(200)), plain_name(64), ifnames(), ADDRESSES,
       st.one_of(ifnames(), st.just("veth")))
def test_rule_text_keeps_every_input_inside_its_token(doc: dict[str, Any], network: str, cid: str, ifname: str,
                                                      addr_texts: list[str], iface: str) -> None:
    cfg = _firewall_config(doc)
    assume(cfg is not None and accepted_ifname(ifname))
    assert cfg is not None
    host_iface = host_veth_name(network, cid, ifname) if iface == "veth" else accepted_bridge(iface)
    assume(host_iface is not None)
    assert host_iface is not None
    att = Attachment(Owner(network, cid, ifname), _addresses(addr_texts), host_iface)
    for family in (4, 6):
        plan = rules.iptables_plan(att, cfg, family)
        for table in plan.tables():
            mine = [r for r in plan.rules if r.table == table]
            _check_ipt_text(rules.iptables_add_text(plan, table), cfg, "-A", len(mine))
            shared = [f"{r.chain} {r.spec}" for r in mine]
            _check_ipt_text(rules.iptables_delete_text(table, shared, plan.own_chains.get(table, [])), cfg, "-D",
                            len(shared))
    try:
        nft = rules.nft_plan(att, cfg)
    except CniError:
        assert any(att.of_family(f) for f in (4, 6))  # only a host interface nft cannot name is refused
        return
    _check_nft_text(rules.nft_add_text(nft), cfg, len(nft.elements), "add")
    _check_nft_text(rules.nft_delete_text(nft.elements, list(nft.chains), ensure=False), cfg, len(nft.elements),
                    "delete")


@pytest.mark.parametrize("name", ["br\x000", "\x00", "ignite0\x00x", "br\x7f", "br\u2028"])
def test_bridge_name_with_a_nul_is_refused(name: str) -> None:
    """Found by test_rule_text_keeps_every_input_inside_its_token (minimal input: bridge "\\x00"): a NUL
    is valid JSON text, and netlink (IFLA_IFNAME) and nft cut the name there, acting on another interface."""
    assert accepted_bridge(name) is None


def test_interface_address_text_in_rules_is_the_parsed_value() -> None:
    """Regression guard: a scoped or odd-spelled address never reaches rule text as typed."""
    for text in ("fe80::1%lo\nCOMMIT", "FD00::2/64", "10.0.0.2/255.255.255.0"):
        try:
            addr = ipparse.ip_interface(text)
        except ValueError:
            continue
        assert str(addr) == str(ipaddress.ip_interface(str(addr)))
