#!/usr/bin/env bash
# Installs what building, testing and the demo need on a Debian 12 machine (run as root), then the
# project venv. Idempotent: packages already present are not reinstalled.
set -euo pipefail
cd "$(dirname "$0")/.."

# binutils (objdump, objcopy, strip) and the shared libpython3.11 are what PyInstaller needs to freeze (make build);
# gcc and libc6-dev build the warm-start launcher (packaging/launcher.c).
APT_PACKAGES=(iptables nftables iproute2 iputils-ping containernetworking-plugins python3-venv busybox-static procps podman containerd crun golang-go golang-github-appc-cni-dev binutils gcc libc6-dev libpython3.11 etcd-server etcd-client strace)
missing=()
for p in "${APT_PACKAGES[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if [ ${#missing[@]} -gt 0 ]; then
  if [ "$(id -u)" -ne 0 ]; then
    echo "setup: missing Debian packages (${missing[*]}); run as root or install them" >&2
    exit 1
  fi
  echo "setup: apt-get install ${missing[*]}"
  apt-get update -qq
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi

PY=${PYTHON:-python3}
if [ ! -x .venv/bin/python ]; then
  echo "setup: creating .venv with $($PY --version)"
  "$PY" -m venv .venv
fi
stamp=.venv/.installed-$(sha256sum pyproject.toml | cut -c1-16)
if [ ! -f "$stamp" ]; then
  echo "setup: installing cni-ignite and its test/freeze tools into .venv"
  .venv/bin/pip install -q --disable-pip-version-check -e '.[test,freeze]'
  rm -f .venv/.installed-*
  touch "$stamp"
fi
