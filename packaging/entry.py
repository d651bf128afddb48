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
"""

import os
import sys

PLUGINS = {"ignite-bridge": "bridge_main", "ignite-ipam": "ipam_main", "loopback": "loopback_main"}


def _dump_modules(stage: str) -> None:
    names = ",".join('"' + m + '"' for m in sorted(sys.modules))
    sys.stderr.write('{"stage":"' + stage + '","modules":[' + names + "]}\n")
    sys.stderr.flush()


def _import_check(names: str) -> int:
    import importlib
    import json

    failed = {}
    for name in (n for n in names.split(",") if n):
        try:
            importlib.import_module(name)
        except Exception as exc:  # report every failure, not just the first
            failed[name] = f"{type(exc).__name__}: {exc}"
    sys.stdout.write(json.dumps({"failed": failed}) + "\n")
    return 1 if failed else 0


def _version(name: str) -> int:
    """VERSION through the same skel.run the plugins use, without importing cli (its ``traceback``) or a
    plugin: ~4 ms less CPU per call. tests/frozen compare the answers with the source plugins'."""
    from typing import NoReturn  # here, not at the top: the entry dump must show what the bootloader loaded

    from cni_ignite import skel

    def no_handlers() -> NoReturn:
        raise AssertionError("VERSION consults no handler")

    return skel.run(no_handlers, env=os.environ, stdin=sys.stdin.buffer, stdout=sys.stdout, stderr=sys.stderr,
                    about=name)


def _dispatch(name: str) -> int:
    if name in PLUGINS and os.environ.get("CNI_COMMAND") == "VERSION":
        return _version(name)
    from cni_ignite import cli

    return int(getattr(cli, PLUGINS.get(name, "admin_main"))())


def main() -> int:
    debug = os.environ.get("CNI_IGNITE_DEBUG_MODULES") == "1"
    if debug:
        _dump_modules("entry")
    check = os.environ.get("CNI_IGNITE_DEBUG_IMPORT")
    if check:
        return _import_check(check)
    try:
        return _dispatch(os.path.basename(sys.argv[0]) if sys.argv and sys.argv[0] else "")
    finally:
        if debug:
            _dump_modules("exit")


if __name__ == "__main__":
    status = main()
    if os.path.basename(sys.argv[0] if sys.argv else "") in PLUGINS:
        # A plugin call is over once its answer is written: skip the interpreter's teardown (freeing every
        # module and object, several ms per call). Nothing of ours needs atexit; the streams are flushed here.
        sys.stdout.flush()
        sys.stderr.flush()
        os._exit(status)
    sys.exit(status)
