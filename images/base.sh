#!/usr/bin/env bash
# The image's base system: Debian 12 by mmdebstrap (the debootstrap variant: required and important packages), with
# the kernel, systemd as init, python3 (for the Ansible roles), OpenSSH and the network tools. Cached as a tarball
# outside the checkout, keyed by the package list; made once (≈ 6 min), reused after.
#   images/base.sh            prints the tarball's path
set -euo pipefail
INCLUDE=linux-image-amd64,systemd-sysv,systemd-resolved,python3,openssh-server,nftables,ca-certificates
CACHE="${VBANK_CACHE:-$HOME/.cache/vbank}"
TAR="$CACHE/image-base-bookworm-$(echo "$INCLUDE" | sha256sum | cut -c1-12).tar"
if [[ ! -s "$TAR" ]]; then
  mkdir -p "$CACHE"
  MIRROR=$(awk '/^URIs:/ {print $2; exit}' /etc/apt/sources.list.d/debian.sources 2>/dev/null || true)
  MIRROR=${MIRROR:-http://deb.debian.org/debian}
  mmdebstrap --quiet --mode=root --format=tar --variant=debootstrap --include="$INCLUDE" bookworm "$TAR.part" "$MIRROR" >&2
  mv "$TAR.part" "$TAR"
fi
echo "$TAR"
