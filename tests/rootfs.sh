#!/usr/bin/env bash
# A Debian 12 minbase root file system with python3, cached as a tarball outside the checkout, for the Molecule
# chroot instances (ansible/molecule/default). Made once (≈ 2.5 min), reused after.
#   tests/rootfs.sh            prints the tarball's path
set -euo pipefail
CACHE="${VBANK_CACHE:-$HOME/.cache/vbank}"
TAR="$CACHE/rootfs-bookworm-minbase.tar.gz"
if [[ ! -s "$TAR" ]]; then
  mkdir -p "$CACHE"
  MIRROR=$(awk '/^URIs:/ {print $2; exit}' /etc/apt/sources.list.d/debian.sources 2>/dev/null || true)
  MIRROR=${MIRROR:-http://deb.debian.org/debian}
  WORK=$(mktemp -d)
  trap 'rm -rf "$WORK"' EXIT
  debootstrap --variant=minbase --include=python3 bookworm "$WORK/rootfs" "$MIRROR" >&2
  rm -rf "$WORK/rootfs/var/cache/apt/archives/"*.deb
  tar -C "$WORK/rootfs" -czf "$TAR.part" .
  mv "$TAR.part" "$TAR"
fi
echo "$TAR"
