"""The bundle's bootstrap script, in place of PyInstaller's ``pyiboot01_bootstrap`` (packaging/cni-ignite.spec).

It does what a CNI plugin needs of the original: install PyInstaller's importer (``pyimod02_importers``, which
also fixes ``__file__`` of the interpreter's frozen stdlib modules) and set ``sys.frozen``. It leaves out:

- ``pyimod03_ctypes.install()``, which imports ``ctypes`` (``_ctypes`` + libffi) on every start, ~1-2 ms
  of CPU for VERSION, IPAM and DEL calls that never use it. Its only effect is that ``ctypes.CDLL(name)``
  also looks in ``sys._MEIPASS``; our one ctypes use is ``CDLL(None)`` (libc, cni_ignite/netlink/netns.py).
- the ``os.listdir(sys._MEIPASS)`` + ``isdir`` per entry looking for ``*.egg`` folders (we bundle none).
- ``VIRTUAL_ENV`` scrubbing and ``import encodings``/``warnings`` (done by the interpreter already / unused).

It adds a finder in front of the path-based one: ``cni-ignite.modules`` (written by the spec after COLLECT:
a marshalled dict, module name -> file under ``_internal``) answers where each bundled module is without
the per-import directory probing of PathFinder, PyInstaller's finder and its fallback FileFinder. A module
not in it (or a missing/unreadable index) is found the ordinary way.

It never raises: a failure (an I/O error reading a module, memory) is kept in ``sys._cni_ignite_boot_error``
for packaging/entry.py, which answers with a CNI error object instead of PyInstaller's "Failed to execute
script" and a traceback on stderr alone. tests/frozen/test_frozen_imports.py pins what this replaces.
"""

import sys


class _IndexFinder:
    """A meta path finder over the bundle's module index (name -> (path relative to _MEIPASS, kind))."""

    def __init__(self, base: str, index: dict) -> None:  # type: ignore[type-arg]
        import _frozen_importlib_external as ext

        self.base, self.index, self.ext = base, index, ext

    def find_spec(self, fullname, path=None, target=None):  # type: ignore[no-untyped-def]
        entry = self.index.get(fullname)
        if entry is None:
            return None
        rel, kind = entry
        filename = self.base + rel
        ext = self.ext
        loader = ext.ExtensionFileLoader(fullname, filename) if kind == "e" else \
            ext.SourcelessFileLoader(fullname, filename)
        locations = [filename.rpartition("/")[0]] if kind == "p" else None
        return ext.spec_from_file_location(fullname, filename, loader=loader,
                                           submodule_search_locations=locations)

    def invalidate_caches(self) -> None:
        pass


def _install_index() -> None:
    import marshal

    base = sys._MEIPASS + "/"  # type: ignore[attr-defined]
    try:
        with open(base + "cni-ignite.modules", "rb") as f:
            index = marshal.loads(f.read())
    except (OSError, ValueError, EOFError, TypeError):
        return  # an optimisation only: without it imports take the ordinary path
    import _frozen_importlib

    at = next((i + 1 for i, f in enumerate(sys.meta_path) if f is _frozen_importlib.FrozenImporter), 0)
    sys.meta_path.insert(at, _IndexFinder(base, index))


try:
    import pyimod02_importers  # type: ignore[import-not-found]  # (in the PKG archive)

    pyimod02_importers.install()
    sys.frozen = True  # type: ignore[attr-defined]
    _install_index()
except BaseException as exc:
    sys._cni_ignite_boot_error = exc  # type: ignore[attr-defined]
