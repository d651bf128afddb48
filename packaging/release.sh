#!/usr/bin/env bash
# The downloadable release (called by `make release`, after `make build`):
#
#   dist/cni-ignite-<version>-linux-<arch>.tar.gz          flat, rooted at ./, as cni-plugins-linux-amd64-vX.tgz
#   dist/cni-ignite-<version>-linux-<arch>.tar.gz.sha256   `sha256sum -c` format
#
# Contents:
#   ./cni-ignite/                 the onedir bundle (its executable is the admin command and all three plugins)
#   ./ignite-bridge -> cni-ignite/cni-ignite
#   ./ignite-ipam   -> cni-ignite/cni-ignite
#   ./conf/*.conflist             the shipped networks
#   ./systemd/*                   packaging/*.service|*.timer|*.socket, when there are any
#   ./README.md  ./LICENSE
#
# Environment: DIST (default dist: where the bundle is), RELEASE_DIR (default $DIST: where the files go).
# Reproducible-ish: entries sorted by name, owner/group 0 (numeric), every mtime the last commit's time
# (SOURCE_DATE_EPOCH overrides), gzip without name/timestamp. Byte-identical output needs a byte-identical
# bundle, which PyInstaller gives only for the same inputs on the same machine.
set -euo pipefail
cd "$(dirname "$0")/.."

dist=${DIST:-dist}
release_dir=${RELEASE_DIR:-$dist}
exe=$dist/cni-ignite/cni-ignite
[ -x "$exe" ] || { echo "release: no $exe; run \`make build\` first" >&2; exit 1; }
version=$(env -i PATH=/usr/sbin:/usr/bin:/sbin:/bin "$exe" version)
case "$(uname -m)" in
  x86_64) arch=amd64 ;;
  aarch64) arch=arm64 ;;
  *) arch=$(uname -m) ;;
esac
name="cni-ignite-${version}-linux-${arch}"
epoch=${SOURCE_DATE_EPOCH:-$(git log -1 --format=%ct 2>/dev/null || echo 0)}

stage=$(mktemp -d)
trap 'rm -rf "$stage"' EXIT
cp -a "$dist/cni-ignite" "$stage/cni-ignite"
ln -s cni-ignite/cni-ignite "$stage/ignite-bridge"
ln -s cni-ignite/cni-ignite "$stage/ignite-ipam"
mkdir "$stage/conf"
cp conf/*.conflist "$stage/conf/"
shopt -s nullglob
units=(packaging/*.service packaging/*.timer packaging/*.socket)
if [ ${#units[@]} -gt 0 ]; then
  mkdir "$stage/systemd"
  cp "${units[@]}" "$stage/systemd/"
fi
cp README.md LICENSE "$stage/"
chmod -R u+rwX,go+rX,go-w "$stage"

mkdir -p "$release_dir"
out="$release_dir/${name}.tar.gz"
tar --sort=name --mtime="@${epoch}" --owner=0 --group=0 --numeric-owner --format=gnu \
  -C "$stage" -cf - . | gzip -9 -n >"$out.tmp"
mv "$out.tmp" "$out"
(cd "$release_dir" && sha256sum "${name}.tar.gz" >"${name}.tar.gz.sha256")
echo "release: $out ($(du -h "$out" | cut -f1)), $(cut -c1-16 <"$out.sha256")… in $out.sha256"
