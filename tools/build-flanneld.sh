#!/bin/sh
# Build flanneld (and, optionally, flannel's CNI plugin) offline: there is no module proxy here.
#
#   tools/build-flanneld.sh SRC_DIR OUT_DIR [CNI_SRC_DIR]
#
# SRC_DIR: a flannel-io/flannel tree that vendors its dependencies (tags up to v0.20.x carry vendor/; v0.21 and
#   later do not), e.g. from a local clone:
#     mkdir -p build/flannel/src && git --git-dir <clone>/.git archive v0.20.2 | tar -x -C build/flannel/src
#   An optional SRC_DIR/.flannel-version file (e.g. "v0.20.2") is stamped into the binary (flanneld --version).
# OUT_DIR: where flanneld goes; build/flannel is where tests/node/test_flanneld_interop.py looks.
# CNI_SRC_DIR: a flannel-io/cni-plugin tree (e.g. tag v1.1.2 or v1.9.1-flannel1). Its tags vendor nothing, but
#   flannel.go + flannel_linux.go only need containernetworking/cni's pkg/{invoke,skel,types}: they are built in
#   GOPATH mode against Debian's golang-github-appc-cni-dev (/usr/share/gocode) into OUT_DIR/flannel.
# The Go build cache lives under OUT_DIR/go; nothing is fetched (GOPROXY=off, -mod=vendor).
set -eu
if [ $# -lt 2 ] || [ $# -gt 3 ]; then
    echo "usage: $0 SRC_DIR OUT_DIR [CNI_SRC_DIR]" >&2
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
# cgo is on as in flannel's Makefile (its udp backend is C): a C compiler is needed.
(cd "$src" && env GOFLAGS=-mod=vendor GOPROXY=off GOSUMDB=off GO111MODULE=on CGO_ENABLED=1 \
    GOCACHE="$out/go/cache" GOPATH="$out/go/path" GOTOOLCHAIN=local \
    go build -o "$out/flanneld" -ldflags "-X github.com/flannel-io/flannel/version.Version=$version" .)
echo "built $out/flanneld ($version)"

if [ $# -eq 3 ]; then
    cni=$(cd "$3" && pwd)
    gopath=${DEBIAN_GOPATH:-/usr/share/gocode}
    if [ ! -d "$gopath/src/github.com/containernetworking/cni/pkg/skel" ]; then
        echo "$gopath: no containernetworking/cni (apt-get install golang-github-appc-cni-dev)" >&2
        exit 1
    fi
    work="$out/go/cni-plugin"
    rm -rf "$work"
    mkdir -p "$work"
    cp "$cni/flannel.go" "$cni/flannel_linux.go" "$work/"
    (cd "$work" && env GO111MODULE=off GOPATH="$gopath" GOPROXY=off GOFLAGS= CGO_ENABLED=0 \
        GOCACHE="$out/go/cache" GOTOOLCHAIN=local go build -o "$out/flannel" flannel.go flannel_linux.go)
    echo "built $out/flannel (flannel's CNI plugin, from $cni)"
fi
