"""The frozen bundle's one entry point: which program runs depends on the name it was started as.

    ignite-bridge  -> cni_ignite.cli.bridge_main      (a CNI plugin)
    ignite-ipam    -> cni_ignite.cli.ipam_main        (a CNI plugin)
    loopback       -> cni_ignite.cli.loopback_main    (a CNI plugin; installed only where none exists)
    anything else  -> cni_ignite.cli.admin_main       (`cni-ignite install|uninstall|status|leases`)

The runtime exec's ``/opt/cni/bin/ignite-ipam`` (a symlink into the bundle), so argv[0]'s basename
names the plugin; the bootloader itself resolves its real folder through /proc/self/exe.

Two hidden variables exist for the frozen tests (never set by a runtime):

- ``CNI_IGNITE_DEBUG_MODULES=1``: write ``sorted(sys.modules)`` as one JSON line to stderr at entry
  (before anything of ours is imported) and again at exit, so a test can prove the start-up path is
  lean (no ``inspect``/``subprocess``/``asyncio`` from PyInstaller runtime hooks or our imports).
- ``CNI_IGNITE_DEBUG_IMPORT=mod1,mod2``: import each module, print one JSON object of failures to
  stdout and exit 0 if none failed; proves every lazily imported module made it into the bundle.

Nothing here imports more than ``sys``/``os`` before dispatching.

Whenever Python runs at all, a plugin call answers with one CNI object on stdout: a failure before
``skel`` can answer (packaging/boot.py failed, or importing ``cli``/``skel``/``json``/... raised: an I/O
error reading a module file, memory, a broken bundle) is reported here by ``_answer_failure``, built without
importing anything (code 5 for an OS error, 11 for a resource shortage, else 999; the config's cniVersion
when stdin still holds it, else the newest). After ``skel`` has started its answer nothing more is written.
What runs before Python (the bootloader, libpython, ``encodings``) cannot answer: benchmarks/IMPORTS.md.
"""

import os
import sys

TYPE_CHECKING = False  # not typing.TYPE_CHECKING: no typing import on a plugin's path (cni_ignite/__init__.py)
if TYPE_CHECKING:
    from typing import NoReturn

PLUGINS = {"ignite-bridge": "bridge_main", "ignite-ipam": "ipam_main", "loopback": "loopback_main"}
# = cni_ignite.version.SUPPORTED (tests/frozen compare them): known without importing anything.
CNI_VERSIONS = ("0.1.0", "0.2.0", "0.3.0", "0.3.1", "0.4.0", "1.0.0", "1.1.0")


def _dump_modules(stage: str) -> None:
    names = ",".join('"' + m + '"' for m in sorted(sys.modules))
    sys.stderr.write('{"stage":"' + stage + '","modules":[' + names + "]}\n")
    sys.stderr.flush()


def _import_check(names: str) -> int:
    """``__import__`` rather than importlib: no extra module, and ``-X importtime`` builds (benchmarks/IMPORTS.md)
    time these imports too (importlib.import_module's are not logged)."""
    failed = {}
    for name in (n for n in names.split(",") if n):
        try:
            __import__(name)
        except Exception as exc:  # report every failure, not just the first
            failed[name] = f"{type(exc).__name__}: {exc}"
    # = json.dumps({"failed": failed}), without importing json (and re): -X importtime builds time the listed
    # modules' imports alone (benchmarks/IMPORTS.md)
    items = ", ".join(_json_str(k) + ": " + _json_str(v) for k, v in failed.items())
    sys.stdout.write('{"failed": {' + items + "}}\n")
    return 1 if failed else 0


def _version(name: str) -> int:
    """VERSION through the same skel.run the plugins use, without importing cli (its ``traceback``) or a
    plugin: ~4 ms less CPU per call. tests/frozen compare the answers with the source plugins'."""
    from cni_ignite import skel

    def no_handlers() -> "NoReturn":  # a string: no typing import on VERSION (benchmarks/IMPORTS.md)
        raise AssertionError("VERSION consults no handler")

    if sys.stdin is None:  # the runtime closed fd 0: skel then answers "no config on stdin"
        import io  # built in, and already imported by the interpreter's start

        stdin = io.BytesIO(b"")
    else:
        stdin = sys.stdin.buffer
    return skel.run(no_handlers, env=os.environ, stdin=stdin, stdout=sys.stdout, stderr=sys.stderr,
                    about=name)


def _dispatch(name: str) -> int:
    if name in PLUGINS and os.environ.get("CNI_COMMAND") == "VERSION":
        return _version(name)
    from cni_ignite import cli

    return int(getattr(cli, PLUGINS.get(name, "admin_main"))())


def _json_str(text: str) -> str:
    out = []
    for ch in text:
        o = ord(ch)
        if ch in '"\\':
            out.append("\\" + ch)
        elif 0x20 <= o < 0x7F:
            out.append(ch)
        elif o > 0xFFFF:
            o -= 0x10000
            out.append(f"\\u{0xD800 + (o >> 10):04x}\\u{0xDC00 + (o & 0x3FF):04x}")
        else:
            out.append(f"\\u{o:04x}")
    return '"' + "".join(out) + '"'


def _top_level_cni_version(data: bytes) -> str:
    """The top-level "cniVersion" string of a JSON object, by a scan that needs no import; "" if none."""
    depth, i, n, key = 0, 0, len(data), b'"cniVersion"'
    while i < n:
        c = data[i]
        if c == 0x22:  # a string: a key at depth 1 may be ours
            if depth == 1 and data.startswith(key, i):
                j = i + len(key)
                while j < n and data[j] in b" \t\r\n":
                    j += 1
                if j < n and data[j] == 0x3A:  # ':'
                    j += 1
                    while j < n and data[j] in b" \t\r\n":
                        j += 1
                    end = data.find(b'"', j + 1)
                    if j < n and data[j] == 0x22 and end > 0:
                        return data[j + 1:end].decode("ascii", "replace")
                    return ""
            i += 1
            while i < n and data[i] != 0x22:
                i += 2 if data[i] == 0x5C else 1  # skip escapes
        elif c in b"{[":
            depth += 1
        elif c in b"}]":
            depth -= 1
        i += 1
    return ""


def _stdin_cni_version() -> str:
    """The config's cniVersion if stdin still holds the config (the failure came before skel read it)."""
    chunks: list[bytes] = []
    try:
        while len(chunks) < 256:  # <= 16 MiB
            chunk = os.read(0, 65536)
            if not chunk:
                break
            chunks.append(chunk)
    except BaseException:  # a closed or unreadable stdin: the newest version it is
        pass
    version = _top_level_cni_version(b"".join(chunks))
    return version if version in CNI_VERSIONS else CNI_VERSIONS[-1]


def _root_os_error(exc: BaseException) -> BaseException:
    """The first OSError/MemoryError behind `exc` (its __cause__/__context__ chain), else `exc`: PyInstaller's
    importer raises RuntimeError('Failed to setup PYZ archive reader!') from the EIO that opening the archive
    met, and that EIO is what decides the code (5, or 11 for a shortage)."""
    seen = 0
    cur: BaseException | None = exc
    while cur is not None and seen < 16:
        if isinstance(cur, (OSError, MemoryError)):
            return cur
        cur = cur.__cause__ or cur.__context__
        seen += 1
    return exc


def _answer_failure(exc: BaseException) -> int:
    """Report a failure skel could not: one CNI error object on fd 1 (unless skel has started its answer)."""
    skel = sys.modules.get("cni_ignite.skel")
    answered = bool(getattr(skel, "answered", False))
    exc = _root_os_error(exc)
    if isinstance(exc, MemoryError) or (isinstance(exc, OSError) and exc.errno in (12, 11, 24, 23)):
        code, msg = 11, "cni-ignite could not load its modules"  # ENOMEM, EAGAIN, EMFILE, ENFILE: try again
    elif isinstance(exc, OSError):
        code, msg = 5, "cni-ignite could not load its modules"  # e.g. EIO reading a module file
    else:
        code, msg = 999, "internal error: " + type(exc).__name__
    try:
        details = type(exc).__name__ + ": " + str(exc)
    except BaseException:
        details = type(exc).__name__
    try:  # noqa: SIM105  (no contextlib here: importing may be what fails)
        os.write(2, ("cni-ignite: " + details + "\n").encode("utf-8", "replace"))
    except BaseException:
        pass
    if answered:
        return 1
    doc = ('{"cniVersion":' + _json_str(_stdin_cni_version()) + ',"code":' + str(code) + ',"msg":' +
           _json_str(msg) + ',"details":' + _json_str(details) + "}\n").encode()
    try:
        while doc:
            doc = doc[os.write(1, doc):]
    except BaseException:
        pass
    return 1


def main() -> int:
    debug = os.environ.get("CNI_IGNITE_DEBUG_MODULES") == "1"
    if debug:
        _dump_modules("entry")
    check = os.environ.get("CNI_IGNITE_DEBUG_IMPORT")
    if check:
        return _import_check(check)
    name = os.path.basename(sys.argv[0]) if sys.argv and sys.argv[0] else ""
    if name in PLUGINS:
        # One short-lived process per call, which ends with os._exit: the cyclic garbage collector only costs
        # time here (its gen-0/1 passes over the freshly imported modules' objects, ~0.1 ms each, and a gen-2
        # pass of ~1.5 ms when a threshold is crossed late in the call). Garbage cycles are freed at exit.
        import gc  # built in

        gc.disable()
    try:
        boot_error = getattr(sys, "_cni_ignite_boot_error", None)
        if boot_error is not None:
            raise boot_error
        return _dispatch(name)
    except SystemExit:
        raise
    except BaseException as exc:
        if name not in PLUGINS:
            raise  # the admin command: a traceback on a terminal is the better report
        return _answer_failure(exc)
    finally:
        if debug:
            _dump_modules("exit")


if __name__ == "__main__":
    status = main()
    if os.path.basename(sys.argv[0] if sys.argv else "") in PLUGINS:
        # A plugin call is over once its answer is written: skip the interpreter's teardown (freeing every
        # module and object, several ms per call). Nothing of ours needs atexit; the streams are flushed here
        # (skel wrote its answer to fd 1 directly: nothing of it can be left in the buffer).
        for stream in (sys.stdout, sys.stderr):
            try:  # noqa: SIM105
                stream.flush()
            except BaseException:
                pass
        os._exit(status)
    sys.exit(status)
