#!/usr/bin/env bash
# Freezes cni-ignite into ONE onedir bundle (called by `make build`):
#
#   dist/cni-ignite/cni-ignite      the executable (dispatches on its argv[0] name)
#   dist/cni-ignite/_internal/      libpython, extension modules, conf/10-ignite.conflist
#   dist/cni-ignite/cni-ignite-launch  the warm-start launcher (C): hands plugin calls to `cni-ignite worker`,
#                                   else execs cni-ignite (docs/WORKER.md; `install --worker` links to it)
#   dist/ignite-bridge -> cni-ignite/cni-ignite
#   dist/ignite-ipam   -> cni-ignite/cni-ignite
#   (started as `loopback`, the executable is also the loopback plugin: `cni-ignite install` links it
#   only into a bin dir that has none)
#
# Install with `dist/cni-ignite/cni-ignite install` (see cni_ignite/admin.py). Skips the build when
# its inputs are unchanged since the last one (dist/.build-stamp). Options:
#   --force     rebuild even if up to date
#   --variants  also build, for benchmarks/startup_bench.py only (never shipped): the onefile variant
#               (build/onefile/cni-ignite) and onedir with PyInstaller's runtime hooks kept
#               (build/with-hooks/cni-ignite/)
# Environment: PYTHON (default: $VENV/bin/python, VENV default .venv).
set -euo pipefail
cd "$(dirname "$0")/.."

PY=${PYTHON:-${VENV:-.venv}/bin/python}
force=0
variants=0
for arg in "$@"; do
  case "$arg" in
    --force) force=1 ;;
    --variants) variants=1 ;;
    *) echo "build: unknown option $arg" >&2; exit 2 ;;
  esac
done

inputs_hash() {
  {
    find cni_ignite packaging conf -type f \( -name '*.py' -o -name '*.spec' -o -name '*.sh' -o -name '*.conflist' -o -name '*.c' \) \
      -print0 | sort -z | xargs -0 sha256sum
    sha256sum pyproject.toml
    "$PY" -c 'import sys, PyInstaller; print(sys.version, PyInstaller.__version__)'
  } | sha256sum | cut -c1-32
}

stamp=dist/.build-stamp
want=$(inputs_hash)
if [ "$force" -eq 0 ] && [ -x dist/cni-ignite/cni-ignite ] && [ "$(cat "$stamp" 2>/dev/null)" = "$want" ]; then
  echo "build: dist/cni-ignite is up to date"
else
  echo "build: PyInstaller onedir -> dist/cni-ignite"
  rm -rf dist/cni-ignite dist/ignite-bridge dist/ignite-ipam "$stamp"
  "$PY" -m PyInstaller --noconfirm --clean --log-level WARN \
    --distpath dist --workpath build/pyinstaller packaging/cni-ignite.spec
  ln -s cni-ignite/cni-ignite dist/ignite-bridge
  ln -s cni-ignite/cni-ignite dist/ignite-ipam
  # The warm-start launcher (packaging/launcher.c, docs/WORKER.md) and the build id it shares with the bundle's
  # `cni-ignite worker`: a launcher hands its calls only to a worker of its own build.
  printf '%s\n' "$want" >dist/cni-ignite/_internal/cni-ignite.build-id
  ${CC:-cc} -O2 -Wall -Wextra -Werror -std=c99 -DCNI_IGNITE_BUILD_ID="\"$want\"" \
    -o dist/cni-ignite/cni-ignite-launch packaging/launcher.c
  strip dist/cni-ignite/cni-ignite-launch
  # Smoke test: every plugin name answers VERSION from the frozen binary (loopback through argv[0] only:
  # no dist/loopback, so that dist/ on a CNI_PATH never shadows the host's own loopback).
  smoke=$(mktemp -d)
  trap 'rm -rf "$smoke"' EXIT
  ln -s "$PWD/dist/cni-ignite/cni-ignite" "$smoke/loopback"
  mkdir "$smoke/launch"  # the launcher without a worker: runs the bundle's executable itself
  ln -s "$PWD/dist/cni-ignite/cni-ignite-launch" "$smoke/launch/ignite-bridge"
  for exe in "$PWD/dist/ignite-bridge" "$PWD/dist/ignite-ipam" "$smoke/loopback" "$smoke/launch/ignite-bridge"; do
    out=$(cd / && env -i CNI_COMMAND=VERSION CNI_IGNITE_WORKER_SOCKET="$smoke/none.sock" "$exe" </dev/null)
    case "$out" in
      *supportedVersions*) ;;
      *) echo "build: $(basename "$exe") VERSION failed: $out" >&2; exit 1 ;;
    esac
  done
  echo "$want" >"$stamp"
  echo "build: $(du -sh dist/cni-ignite | cut -f1) in dist/cni-ignite ($(find dist/cni-ignite -type f | wc -l) files)"
fi

if [ "$variants" -eq 1 ]; then
  echo "build: benchmark variants -> build/onefile/cni-ignite, build/with-hooks/cni-ignite/"
  rm -rf build/onefile build/with-hooks
  CNI_IGNITE_ONEFILE=1 "$PY" -m PyInstaller --noconfirm --clean --log-level WARN \
    --distpath build/onefile --workpath build/pyinstaller-onefile packaging/cni-ignite.spec
  CNI_IGNITE_KEEP_HOOKS=1 "$PY" -m PyInstaller --noconfirm --clean --log-level WARN \
    --distpath build/with-hooks --workpath build/pyinstaller-with-hooks packaging/cni-ignite.spec
fi
