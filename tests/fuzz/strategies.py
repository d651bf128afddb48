"""Hypothesis strategies for everything cni-ignite parses or converts.

Each input comes in three flavours, mixed by the strategies: *valid* (what a runtime or an operator
would send), *wrong* (right keys, wrong types or values: null, lists for strings, huge and negative
integers, NaN, deep nesting) and *hostile* (text with quotes, newlines, ``;``, ``#``, NUL, ``..``, ``/``,
``%zone``, Unicode line breaks) aimed at the places where text reaches a rule script or a path.
"""

from __future__ import annotations

import ipaddress
import json
import string
from typing import Any

from hypothesis import strategies as st

from cni_ignite.result import DNS, Interface, IPConfig, Result, Route
from cni_ignite.version import SUPPORTED

# ------------------------------------------------------------------------------------------ text

# Characters that mean something to a shell, iptables-restore, nft, JSON or a path; Unicode line and
# space separators (str.splitlines and str.isspace know them, a regex "[ \t\n]" does not).
HOSTILE_CHARS = "\"'`\\\n\r\t\x00\x0b\x0c\x1b\x7f;#%/.:{}[]$&|<>*?!=, \u0085\u00a0\u2028\u2029\ufeff"
HOSTILE_FRAGMENTS = (
    "..", "../", "/..", "../../etc/passwd", "%eth0", "%lo\nCOMMIT\n", "fe80::1%lo", "\nCOMMIT\n",
    "\n-A FORWARD -j ACCEPT\n", "; flush ruleset", "# x", '" ; drop #', "'", "\\", "\x00", "\r\n",
    "{ }", "$(reboot)", "`id`", " -j ACCEPT", "-j DROP", "cni-ignite:", "*nat", "\u2028", "é",
)
PLAIN_CHARS = string.ascii_letters + string.digits + "-_."


def _text(alphabet: st.SearchStrategy[str], max_size: int) -> st.SearchStrategy[str]:
    return st.text(alphabet=alphabet, max_size=max_size)


# No lone surrogates: JSON decoders (Go's, and Python's on bytes) turn them into U+FFFD.
ANY_CHAR = st.characters(exclude_categories=("Cs",))


def hostile_text(max_size: int = 40) -> st.SearchStrategy[str]:
    """Text made of hostile characters and fragments with a few plain ones between them."""
    piece = st.one_of(
        st.sampled_from(HOSTILE_FRAGMENTS),
        _text(st.sampled_from(HOSTILE_CHARS), 4),
        _text(st.sampled_from(PLAIN_CHARS), 6),
    )
    return st.lists(piece, max_size=6).map("".join).map(lambda s: s[:max_size])


def any_text(max_size: int = 40) -> st.SearchStrategy[str]:
    return st.one_of(
        _text(st.sampled_from(PLAIN_CHARS), max_size),
        hostile_text(max_size),
        _text(ANY_CHAR, max_size),
    )


def plain_name(max_size: int = 20) -> st.SearchStrategy[str]:
    """A CNI-valid name (network name, container ID): ``[a-zA-Z0-9][a-zA-Z0-9_.-]*``."""
    return st.from_regex(rf"\A[a-zA-Z0-9][a-zA-Z0-9_.\-]{{0,{max_size - 1}}}\Z")


def names() -> st.SearchStrategy[str]:
    return st.one_of(plain_name(), plain_name(200), any_text(30))


def ifnames() -> st.SearchStrategy[str]:
    return st.one_of(st.sampled_from(["eth0", "eth1", "net1", "tap0", "ignite0", "br-x", "a"]),
                     _text(st.sampled_from(PLAIN_CHARS), 16), hostile_text(16), _text(ANY_CHAR, 16))


# ------------------------------------------------------------------------------------------ addresses

V4 = st.ip_addresses(v=4)
V6 = st.ip_addresses(v=6)
ADDR = st.one_of(V4, V6)


def is_v4_mapped(a: ipaddress.IPv4Address | ipaddress.IPv6Address) -> bool:
    return a.version == 6 and a.ipv4_mapped is not None  # type: ignore[union-attr]


def interfaces(v: int | None = None) -> st.SearchStrategy[ipaddress.IPv4Interface | ipaddress.IPv6Interface]:
    addrs = V4 if v == 4 else V6 if v == 6 else ADDR
    return addrs.flatmap(lambda a: st.integers(0, a.max_prefixlen).map(
        lambda p: ipaddress.ip_interface(f"{a}/{p}")))


def networks(v: int | None = None) -> st.SearchStrategy[ipaddress.IPv4Network | ipaddress.IPv6Network]:
    return interfaces(v).map(lambda i: i.network)


def address_texts() -> st.SearchStrategy[str]:
    """Address text as input: valid (plain, with a prefix, upper case), scoped, and broken."""
    return st.one_of(
        ADDR.map(str),
        interfaces().map(str),
        V6.map(lambda a: str(a).upper()),
        V6.map(lambda a: a.exploded),
        st.tuples(V6, hostile_text(10)).map(lambda t: f"{t[0]}%{t[1]}"),
        st.tuples(ADDR, hostile_text(10)).map(lambda t: f"{t[0]}{t[1]}"),
        st.tuples(hostile_text(10), ADDR).map(lambda t: f"{t[0]}{t[1]}"),
        st.tuples(V4, st.sampled_from(["/33", "/-1", "/024", "/255.255.0.0", "/", "//8", "/8/8", "/ 8"]))
        .map(lambda t: f"{t[0]}{t[1]}"),
        st.sampled_from(["", " 10.0.0.1", "10.0.0.1 ", "010.0.0.1", "10.0.0", "::ffff:10.0.0.1",
                         "1::2::3", "fe80::1%", "0x0a.0.0.1", "\u0661\u0660.0.0.1", "10.0.0.1\n", "::", "0.0.0.0"]),
        _text(st.sampled_from("0123456789abcdefABCDEF.:/%"), 45),
    )


def macs() -> st.SearchStrategy[str]:
    return st.one_of(
        st.binary(min_size=6, max_size=6).map(lambda b: ":".join(f"{x:02x}" for x in b)),
        st.binary(min_size=6, max_size=6).map(lambda b: ":".join(f"{x:02X}" for x in b)),
        any_text(20),
    )


# ------------------------------------------------------------------------------------------ JSON

HUGE_INTS = st.one_of(st.integers(-(2**70), 2**70), st.sampled_from([2**31, 2**32, 2**63, 2**64, -(2**63) - 1,
                                                                      10**30, -1, 0, 65536, 4095]))
SCALARS = st.one_of(
    st.none(), st.booleans(), st.integers(-5, 70000), HUGE_INTS,
    st.floats(allow_nan=True, allow_infinity=True),  # json.dumps writes NaN/Infinity; json.loads reads them
    any_text(30), address_texts(),
)


def json_values(max_leaves: int = 12) -> st.SearchStrategy[Any]:
    return st.recursive(
        SCALARS,
        lambda kids: st.one_of(st.lists(kids, max_size=4),
                               st.dictionaries(st.one_of(any_text(12), st.sampled_from(CONF_KEYS)), kids,
                                               max_size=4)),
        max_leaves=max_leaves,
    )


def wrong(valid: st.SearchStrategy[Any]) -> st.SearchStrategy[Any]:
    """Mostly the valid value, sometimes any JSON value in its place."""
    return st.one_of(valid, valid, json_values(6))


DEEP = "\u0000DEEP\u0000"  # a marker value: :func:`to_json` replaces it with deeply nested JSON text


def deep_json(depth: int, kind: str) -> str:
    """Nested JSON text built without recursion: ``[[[...]]]`` or ``{"a":{"a":...}}``."""
    if kind == "list":
        return "[" * depth + "]" * depth
    return '{"a":' * depth + "1" + "}" * depth


def to_json(doc: Any, deep: tuple[int, str] = (0, "list")) -> bytes:
    """json.dumps that may put a deeply nested value where the DEEP marker is (allow_nan: as Python would)."""
    text = json.dumps(doc)
    if deep[0]:
        text = text.replace(json.dumps(DEEP), deep_json(*deep))
    return text.encode()


DEEP_SPEC = st.tuples(st.sampled_from([0, 0, 50, 400, 900, 990, 1200, 5000, 100000]), st.sampled_from(["list", "dict"]))


# ------------------------------------------------------------------------------------------ network config

VERSIONS = st.one_of(st.sampled_from(SUPPORTED), st.sampled_from(["0.0.0", "1.0.1", "2.0.0", "1.1", "", "v1.0.0",
                                                                 "1.0.0\n", "\u0661.0.0", "1.0.0 ", "01.0.0"]))
CONF_KEYS = ("cniVersion", "name", "type", "ipam", "bridge", "isGateway", "isDefaultGateway", "ipMasq", "mtu",
             "hairpinMode", "promiscMode", "vlan", "vlanTrunk", "mode", "vm", "dns", "runtimeConfig", "args",
             "prevResult", "capabilities", "backend", "ipMasqBackend", "markMasqBit", "externalSetMarkChain",
             "conditionsV4", "conditionsV6", "stateDir", "forward", "snat", "masqAll", "logFile", "logLevel",
             "logMaxBytes", "subnet", "ranges", "routes", "dataDir", "resolvConf", "sticky", "reservations",
             "rangeStart", "rangeEnd", "gateway", "hostPort", "containerPort", "protocol", "hostIP", "ips",
             "portMappings", "ipRanges", "mac", "owner", "ifname", "address", "hold", "dst", "gw",
             "disableContainerInterface", "forceAddress", "macspoofchk", "portIsolation", "enabledad",
             "preserveDefaultVlan", "cni", "id", "minID", "maxID", "tap", "uid", "gid", "guestMac")


def go_case(key: str) -> st.SearchStrategy[str]:
    """A key as a JSON producer might spell it: as given, Go field style (HostPort), all upper or lower."""
    return st.sampled_from([key, key[:1].upper() + key[1:], key.upper(), key.lower()])


def go_dict(fields: dict[str, st.SearchStrategy[Any]]) -> st.SearchStrategy[dict[str, Any]]:
    """An object with some of `fields`, each key in any spelling Go's decoder would accept."""
    items = [st.tuples(go_case(k), v) for k, v in fields.items()]
    return st.lists(st.one_of(*items), max_size=len(fields) + 1).map(dict)


def ranges() -> st.SearchStrategy[dict[str, Any]]:
    def one(net: ipaddress.IPv4Network | ipaddress.IPv6Network) -> st.SearchStrategy[dict[str, Any]]:
        hosts = st.integers(0, net.num_addresses - 1).map(lambda i: str(net.network_address + i))
        return go_dict({"subnet": st.just(str(net)), "rangeStart": wrong(hosts), "rangeEnd": wrong(hosts),
                        "gateway": st.one_of(hosts, address_texts(), st.none())})

    return st.one_of(
        st.one_of(networks(4).filter(lambda n: n.prefixlen >= 8), networks(6).filter(lambda n: n.prefixlen >= 64))
        .flatmap(one),
        go_dict({"subnet": address_texts(), "rangeStart": address_texts(), "rangeEnd": address_texts(),
                 "gateway": address_texts()}),
    )


def routes_in() -> st.SearchStrategy[dict[str, Any]]:
    return go_dict({"dst": st.one_of(networks().map(str), address_texts()), "gw": st.one_of(ADDR.map(str),
                                                                                             address_texts())})


def reservations() -> st.SearchStrategy[dict[str, Any]]:
    return go_dict({"owner": wrong(any_text(30)), "address": wrong(address_texts()), "ifname": wrong(ifnames()),
                    "mac": wrong(macs()), "extra": json_values(2)})


def durations() -> st.SearchStrategy[Any]:
    return st.one_of(st.integers(-10, 10**12), st.sampled_from(["90s", "30m", "1h30m", "7d", "0", "", "1h30",
                                                               "9999999999d", "1m1h", "\u0661s"]), any_text(10))


def ipam_blocks() -> st.SearchStrategy[dict[str, Any]]:
    return go_dict({
        "type": st.sampled_from(["ignite-ipam", "host-local", ""]),
        "subnet": wrong(st.one_of(networks(4).map(str), address_texts())),
        "rangeStart": address_texts(), "rangeEnd": address_texts(), "gateway": address_texts(),
        "ranges": wrong(st.lists(wrong(st.lists(wrong(ranges()), max_size=3)), max_size=3)),
        "routes": wrong(st.lists(wrong(routes_in()), max_size=3)),
        "dataDir": wrong(st.one_of(st.just("/tmp/x"), any_text(30).map(lambda s: "/" + s), any_text(20))),
        "resolvConf": wrong(any_text(30)),
        "sticky": st.one_of(st.booleans(), go_dict({"hold": durations()}), json_values(3)),
        "reservations": wrong(st.lists(wrong(reservations()), max_size=3)),
    })


def port_mappings() -> st.SearchStrategy[dict[str, Any]]:
    """A portMappings entry: go-cni capitalised keys (HostPort, ContainerPort, Protocol, HostIP) included."""
    ports = st.one_of(st.integers(1, 65535), st.integers(-5, 70000), HUGE_INTS)
    return go_dict({"hostPort": wrong(ports), "containerPort": wrong(ports),
                    "protocol": wrong(st.sampled_from(["tcp", "udp", "sctp", "TCP", "Udp", "icmp", "", "tcp\n"])),
                    "hostIP": wrong(st.one_of(st.just(""), st.just("0.0.0.0"), st.just("::"), address_texts()))})


def runtime_configs() -> st.SearchStrategy[dict[str, Any]]:
    return go_dict({
        "portMappings": wrong(st.lists(wrong(port_mappings()), max_size=5)),
        "ipRanges": wrong(st.lists(wrong(st.lists(wrong(ranges()), max_size=2)), max_size=2)),
        "ips": wrong(st.lists(wrong(address_texts()), max_size=3)),
        "mac": wrong(macs()),
        "bandwidth": json_values(3),
        "dns": json_values(3),
    })


def args_blocks() -> st.SearchStrategy[Any]:
    return wrong(go_dict({"cni": wrong(go_dict({"ips": wrong(st.lists(wrong(address_texts()), max_size=3)),
                                                 "mac": wrong(macs()), "owner": wrong(any_text(40))}))}))


def conditions() -> st.SearchStrategy[Any]:
    return wrong(st.lists(st.one_of(st.sampled_from(["-s 10.0.0.0/8", "! -i lo", "ip saddr 10.0.0.0/8",
                                                     "meta mark 1", "-m comment --comment \"a b\""]),
                                    any_text(30)), max_size=3))


def vm_blocks() -> st.SearchStrategy[Any]:
    return wrong(go_dict({"mode": wrong(st.sampled_from(["none", "tc-redirect", "bridge", "x"])),
                          "tap": wrong(ifnames()), "uid": wrong(HUGE_INTS), "gid": wrong(HUGE_INTS),
                          "guestMac": wrong(macs())}))


def netconf_docs(plugin_type: str | None = None) -> st.SearchStrategy[dict[str, Any]]:
    """A network configuration as a plugin receives it on stdin (inserted runtime keys included)."""
    fields: dict[str, st.SearchStrategy[Any]] = {
        "cniVersion": wrong(VERSIONS),
        "name": wrong(names()),
        "type": wrong(st.sampled_from(["ignite-bridge", "ignite-ipam"]) if plugin_type is None
                      else st.just(plugin_type)),
        "ipam": wrong(ipam_blocks()),
        "bridge": wrong(ifnames()),
        "isGateway": wrong(st.booleans()), "isDefaultGateway": wrong(st.booleans()),
        "ipMasq": wrong(st.booleans()), "hairpinMode": wrong(st.booleans()), "promiscMode": wrong(st.booleans()),
        "mtu": wrong(st.integers(0, 70000)), "vlan": wrong(st.integers(-1, 5000)),
        "vlanTrunk": wrong(st.lists(go_dict({"id": HUGE_INTS, "minID": HUGE_INTS, "maxID": HUGE_INTS}), max_size=3)),
        "mode": wrong(st.sampled_from(["bridge", "routed", "Routed", "x"])),
        "vm": vm_blocks(),
        "dns": wrong(go_dict({"nameservers": wrong(st.lists(any_text(20), max_size=2))})),
        "runtimeConfig": wrong(runtime_configs()),
        "args": args_blocks(),
        "prevResult": wrong(result_docs()),
        "capabilities": json_values(3),
        "backend": wrong(st.sampled_from(["auto", "iptables", "nftables", "ebpf"])),
        "markMasqBit": wrong(st.integers(-1, 40)),
        "externalSetMarkChain": wrong(st.one_of(plain_name(28), any_text(30))),
        "conditionsV4": conditions(), "conditionsV6": conditions(),
        "stateDir": wrong(st.one_of(st.just("/run/x"), any_text(30).map(lambda s: "/" + s))),
        "forward": wrong(st.booleans()), "snat": wrong(st.booleans()), "masqAll": wrong(st.booleans()),
        "logLevel": wrong(st.sampled_from(["error", "info", "debug", "trace"])),
        "logMaxBytes": wrong(HUGE_INTS),
        "disableContainerInterface": wrong(st.booleans()),
        "cni.dev/valid-attachments": json_values(4),
        "unknownKey": json_values(4),
        "deep": st.just(DEEP),
    }
    # The keys are the exact spellings here: the top level is read by exact key (as the reference plugins).
    items = [st.tuples(st.just(k), v) for k, v in fields.items()]
    return st.lists(st.one_of(*items), max_size=12).map(dict)


def stdin_bytes(plugin_type: str | None = None) -> st.SearchStrategy[bytes]:
    """What a plugin may find on stdin: a config document, any JSON, deep nesting, or not JSON at all."""
    return st.one_of(
        st.tuples(netconf_docs(plugin_type), DEEP_SPEC).map(lambda t: to_json(t[0], t[1])),
        st.tuples(netconf_docs(plugin_type), DEEP_SPEC).map(lambda t: to_json(t[0], t[1])),
        json_values().map(lambda v: json.dumps(v).encode()),
        st.binary(max_size=64),
        st.sampled_from([b"", b"{", b"null", b"[]", b'{"cniVersion":"1.0.0"}', b"\xff\xfe{}", b'{"a":1}garbage',
                         b'{"name":"n","cniVersion":"1.0.0","name":"x\\u0000"}', b"1" * 5000]),
        DEEP_SPEC.map(lambda d: deep_json(max(d[0], 1), d[1]).encode()),
    )


# ------------------------------------------------------------------------------------------ CNI_ARGS, env

ARG_KEYS = ("IP", "MAC", "IgnoreUnknown", "K8S_POD_NAME", "K8S_POD_NAMESPACE", "IGNITE_OWNER", "TC_REDIRECT_TAP_NAME",
            "TC_REDIRECT_TAP_UID", "TC_REDIRECT_TAP_GID", "ip", "ignoreunknown", "", "X")
ARG_VALUES = ("1", "true", "TRUE", "True", "0", "false", "yes", "", "10.0.0.2", "10.0.0.2,fd00::2", "aa:bb:cc:dd:ee:ff",
              "a=b", "x y", "k8s:ns/p")


def cni_args() -> st.SearchStrategy[str]:
    """CNI_ARGS text: well-formed ``K=V;...`` pairs, broken pairs, and any text."""
    pair = st.one_of(
        st.tuples(st.sampled_from(ARG_KEYS), st.sampled_from(ARG_VALUES)).map("=".join),
        st.tuples(st.sampled_from(ARG_KEYS), any_text(12)).map("=".join),
        st.tuples(any_text(8), any_text(8)).map("=".join),
        st.sampled_from(["", "=", "IP", "==", "IP==1", "IgnoreUnknown=1=1"]),
    )
    return st.one_of(st.lists(pair, max_size=6).map(";".join), any_text(40))


def cni_envs() -> st.SearchStrategy[dict[str, str]]:
    """The CNI environment: every variable present, missing, empty or hostile."""
    def var(valid: st.SearchStrategy[str]) -> st.SearchStrategy[str | None]:
        return st.one_of(valid, valid, st.none(), st.just(""), any_text(30))

    fields = {
        "CNI_COMMAND": var(st.sampled_from(["ADD", "DEL", "CHECK", "GC", "STATUS", "add", "VERSION"])),
        "CNI_CONTAINERID": var(plain_name(64)),
        "CNI_NETNS": var(st.sampled_from(["/var/run/netns/x", "/proc/1/ns/net"])),
        "CNI_IFNAME": var(ifnames()),
        "CNI_ARGS": var(cni_args()),
        "CNI_PATH": var(st.just("/opt/cni/bin")),
    }
    return st.fixed_dictionaries(fields).map(
        lambda d: {k: v.replace("\x00", "") for k, v in d.items() if v is not None})  # a real env has no NUL


# ------------------------------------------------------------------------------------------ results

def cni_results(*, oracle_safe: bool = False) -> st.SearchStrategy[Result]:
    """A valid internal Result. `oracle_safe`: only what libcni 1.1.2 (Go 1.19) also represents the same way:
    no IPv4-mapped IPv6 (Go prints them as IPv4) and no text Go's JSON would alter."""
    addrs = ADDR.filter(lambda a: not is_v4_mapped(a)) if oracle_safe else ADDR
    text = _text(st.characters(exclude_categories=("Cs",)), 20)

    def iface_addr(version: int) -> st.SearchStrategy[Any]:
        return (addrs.filter(lambda a: a.version == version)
                .flatmap(lambda a: st.integers(0, a.max_prefixlen).map(lambda p: ipaddress.ip_interface(f"{a}/{p}"))))

    def ipconfig(n_ifaces: int) -> st.SearchStrategy[IPConfig]:
        return st.sampled_from([4, 6]).flatmap(lambda v: st.builds(
            IPConfig, address=iface_addr(v), gateway=st.none() | addrs.filter(lambda a: a.version == v),
            interface=st.none() | st.integers(0, max(n_ifaces - 1, 0))))

    route = st.sampled_from([4, 6]).flatmap(lambda v: st.builds(
        Route, dst=iface_addr(v).map(lambda i: i.network), gw=st.none() | addrs.filter(lambda a: a.version == v),
        mtu=st.integers(0, 9000), advmss=st.integers(0, 9000), priority=st.integers(0, 2**31),
        table=st.none() | st.integers(0, 2**31), scope=st.none() | st.integers(0, 255)))
    iface = st.builds(Interface, name=st.one_of(ifnames(), text), mac=st.just("") | macs(), sandbox=st.just("") | text,
                      mtu=st.integers(0, 65535), socket_path=st.just("") | text, pci_id=st.just("") | text)
    dns = st.builds(DNS, nameservers=st.lists(text, max_size=3).map(tuple), domain=text,
                    search=st.lists(text, max_size=3).map(tuple), options=st.lists(text, max_size=3).map(tuple))
    return st.lists(iface, max_size=3).map(tuple).flatmap(lambda ifs: st.builds(
        Result, interfaces=st.just(ifs), ips=st.lists(ipconfig(len(ifs)), max_size=4).map(tuple),
        routes=st.lists(route, max_size=4).map(tuple), dns=dns))


def result_docs() -> st.SearchStrategy[Any]:
    """A result document of any version (as printed by a delegated IPAM or passed as prevResult), valid or
    broken in one place."""
    from cni_ignite.errors import CniError
    from cni_ignite.result import encode

    def enc(t: tuple[Result, str]) -> Any:
        try:
            return encode(*t)
        except CniError:  # 0.2.0 without an address
            return {"cniVersion": t[1]}

    valid = st.tuples(cni_results(), st.sampled_from(SUPPORTED)).map(enc)
    return st.one_of(valid, st.tuples(valid, st.sampled_from(["ips", "interfaces", "routes", "dns", "ip4", "ip6",
                                                               "cniVersion"]), json_values(6))
                     .map(lambda t: {**t[0], t[1]: t[2]} if isinstance(t[0], dict) else t[0]),
                     valid.flatmap(_break_inside), json_values())


def _break_inside(doc: Any) -> st.SearchStrategy[Any]:
    """Replace one value somewhere inside the document by any JSON value."""
    paths: list[tuple[Any, ...]] = []

    def walk(node: Any, path: tuple[Any, ...]) -> None:
        if isinstance(node, dict):
            for k, v in node.items():
                paths.append((*path, k))
                walk(v, (*path, k))
        elif isinstance(node, list):
            for i, v in enumerate(node):
                paths.append((*path, i))
                walk(v, (*path, i))

    walk(doc, ())
    if not paths:
        return st.just(doc)

    def put(t: tuple[tuple[Any, ...], Any]) -> Any:
        path, value = t
        out = json.loads(json.dumps(doc))
        node = out
        for p in path[:-1]:
            node = node[p]
        node[path[-1]] = value
        return out

    return st.tuples(st.sampled_from(paths), json_values(4)).map(put)


def conflist_docs() -> st.SearchStrategy[Any]:
    """A .conflist: name and cniVersion at the top, plugin configurations (any of them broken) in a list."""
    plugin = st.one_of(netconf_docs("ignite-bridge"), netconf_docs("ignite-ipam"),
                       ipam_blocks().map(lambda b: {"type": "ignite-bridge", "ipam": {**b, "type": "ignite-ipam"}}),
                       json_values(4))
    return st.one_of(
        st.fixed_dictionaries({"cniVersion": wrong(VERSIONS), "name": wrong(names())},
                              optional={"plugins": wrong(st.lists(plugin, max_size=4)), "disableCheck": json_values(2),
                                        "disableGC": json_values(2), "deep": st.just(DEEP)}),
        netconf_docs(),
    )
