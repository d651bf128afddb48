"""sha256 without OpenSSL: ``hashlib`` loads ``_hashlib`` (libcrypto), ~3-4 ms on every plugin start,
for a few short digests of names. CPython's builtin ``_sha256`` gives the same digests."""

from __future__ import annotations

TYPE_CHECKING = False  # not typing.TYPE_CHECKING: no typing import on a plugin's path (cni_ignite/__init__.py)

if TYPE_CHECKING:
    from hashlib import sha256
else:
    try:
        from _sha256 import sha256
    except ImportError:  # a Python built without the builtin module
        from hashlib import sha256

__all__ = ["sha256"]
