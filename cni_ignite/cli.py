"""Entry points. The only module that touches os.environ and sys.std*; each entry imports only its path."""

from __future__ import annotations

import os
import sys

from . import __version__

TYPE_CHECKING = False  # not typing.TYPE_CHECKING: no typing import on a plugin's path (cni_ignite/__init__.py)
if TYPE_CHECKING:
    from typing import IO

    from . import skel


def _log_internal(exc: BaseException) -> None:
    """A traceback goes to stderr (never stdout, which carries the protocol)."""
    import traceback

    sys.stderr.write("".join(traceback.format_exception(exc)))


def _ipam_handlers() -> skel.Handlers:
    from .ipam.plugin import HANDLERS

    return HANDLERS


def _bridge_handlers() -> skel.Handlers:
    from .bridge.plugin import HANDLERS

    return HANDLERS


def _loopback_handlers() -> skel.Handlers:
    from .loopback import HANDLERS

    return HANDLERS


def _stdin() -> IO[bytes]:
    """The config's stream: stdin, or an empty one when the runtime closed fd 0 (Python then has no sys.stdin),
    so that skel answers "no config on stdin" rather than an internal error."""
    if sys.stdin is None:
        import io  # built in, and already imported by the interpreter's start

        return io.BytesIO(b"")
    return sys.stdin.buffer


def ipam_main() -> int:
    from . import skel

    return skel.run(_ipam_handlers, env=os.environ, stdin=_stdin(), stdout=sys.stdout, stderr=sys.stderr,
                    about=f"ignite-ipam {__version__}: host-local compatible IPAM for cni-ignite",
                    on_internal_error=_log_internal)


def bridge_main() -> int:
    from . import skel

    return skel.run(_bridge_handlers, env=os.environ, stdin=_stdin(), stdout=sys.stdout, stderr=sys.stderr,
                    about=f"ignite-bridge {__version__}: bridge, veth and microVM tap plugin for cni-ignite",
                    on_internal_error=_log_internal)


def loopback_main() -> int:
    from . import skel

    return skel.run(_loopback_handlers, env=os.environ, stdin=_stdin(), stdout=sys.stdout, stderr=sys.stderr,
                    about=f"loopback (cni-ignite {__version__}): sets lo up in the container's network namespace",
                    on_internal_error=_log_internal)


def admin_main(argv: list[str] | None = None) -> int:
    from .admin import main

    return main(sys.argv[1:] if argv is None else argv)


if __name__ == "__main__":  # python -m cni_ignite.cli <ipam|bridge|loopback|admin>
    which = sys.argv.pop(1) if len(sys.argv) > 1 else ""
    sys.exit({"ipam": ipam_main, "bridge": bridge_main, "loopback": loopback_main}.get(which, admin_main)())
