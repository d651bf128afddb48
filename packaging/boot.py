"""The bundle's bootstrap script, in place of PyInstaller's ``pyiboot01_bootstrap`` (packaging/cni-ignite.spec).

It does what a CNI plugin needs of the original: install PyInstaller's importer (``pyimod02_importers``, which
also fixes ``__file__`` of the interpreter's frozen stdlib modules) and set ``sys.frozen``. It leaves out:

- ``pyimod03_ctypes.install()``, which imports ``ctypes`` (``_ctypes`` + libffi) on every start, ~1-2 ms
  of CPU for VERSION, IPAM and DEL calls that never use it. Its only effect is that ``ctypes.CDLL(name)``
  also looks in ``sys._MEIPASS``; our one ctypes use is ``CDLL(None)`` (libc, cni_ignite/netlink/netns.py).
- the ``os.listdir(sys._MEIPASS)`` + ``isdir`` per entry looking for ``*.egg`` folders (we bundle none).
- ``VIRTUAL_ENV`` scrubbing and ``import encodings``/``warnings`` (done by the interpreter already / unused).

It never raises: a failure (an I/O error reading a module, memory) is kept in ``sys._cni_ignite_boot_error``
for packaging/entry.py, which answers with a CNI error object instead of PyInstaller's "Failed to execute
script" and a traceback on stderr alone. tests/frozen/test_frozen_imports.py pins what this replaces.
"""

import sys

try:
    import pyimod02_importers

    pyimod02_importers.install()
    sys.frozen = True  # type: ignore[attr-defined]
except BaseException as exc:
    sys._cni_ignite_boot_error = exc  # type: ignore[attr-defined]
