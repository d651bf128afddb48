#!/bin/sh
# Build flanneld offline from a flannel source tree that vendors its dependencies (flannel tags up to v0.20.x
# carry vendor/; v0.21 and later do not, and there is no module proxy here).
#
#   tools/build-flanneld.sh SRC_DIR OUT_DIR
#
# SRC_DIR: a flannel-io/flannel tree, e.g. from a local clone:
#   mkdir -p build/flannel/src && git --git-dir <clone>/.git archive v0.20.2 | tar -x -C build/flannel/src
# OUT_DIR: where flanneld goes (build/flannel is what tests/node/test_flanneld_interop.py looks at).
# The Go build cache and GOPATH live under OUT_DIR/go; nothing is fetched (GOPROXY=off, -mod=vendor).
# cgo is on as in flannel's Makefile (its udp backend is C); a C compiler is needed.
set -eu
if [ $# -ne 2 ]; then
    echo "usage: $0 SRC_DIR OUT_DIR" >&2
    exit 2
fi
src=$(cd "$1" && pwd)
mkdir -p "$2"
out=$(cd "$2" && pwd)
if [ ! -d "$src/vendor" ] || [ ! -f "$src/go.mod" ]; then
    echo "$src: not a flannel tree with a vendor/ directory (flannel tags up to v0.20.x vendor their deps)" >&2
    exit 1
fi
version=$(cat "$src/.flannel-version" 2>/dev/null || echo unknown)
mkdir -p "$out/go/cache" "$out/go/path"
cd "$src"
env GOFLAGS=-mod=vendor GOPROXY=off GOSUMDB=off GO111MODULE=on CGO_ENABLED=1 \
    GOCACHE="$out/go/cache" GOPATH="$out/go/path" GOTOOLCHAIN=local \
    go build -o "$out/flanneld" \
    -ldflags "-X github.com/flannel-io/flannel/version.Version=$version" .
echo "built $out/flanneld ($version)"
