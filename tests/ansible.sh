#!/usr/bin/env bash
# The Ansible roles: ansible-lint (production profile), then the Molecule scenario (ansible/molecule/default) on a
# chroot of a cached Debian 12 rootfs inside `unshare -m`: converge, idempotence (a second run changes nothing),
# verify. The fixtures (a signed bundle, the release key, certificates) come from tests/install-fixtures.sh.
#   VBANK_BIN=… VBANK_SFRAME_WASM=… tests/ansible.sh
set -euo pipefail
cd "$(dirname "$0")/.."
VENV="${VBANK_CACHE:-$HOME/.cache/vbank}/ansible-venv"
if ! "$VENV/bin/pip" freeze 2>/dev/null | grep -qx "molecule==26.10.0"; then
  python3 -m venv "$VENV"
  "$VENV/bin/pip" install -q -r ansible/requirements.txt
fi
export PATH="$VENV/bin:$PATH"

echo "--- ansible-lint"
(cd ansible && ansible-lint)

FIX=$(mktemp -d)
trap 'rm -rf "$FIX"' EXIT
bash tests/install-fixtures.sh "$FIX"

echo "--- molecule test (chroot)"
export MOLECULE_CHROOTS="$FIX/chroots" MOLECULE_FIXTURES="$FIX"
MOLECULE_ROOTFS_TAR=$(bash tests/rootfs.sh)
export MOLECULE_ROOTFS_TAR
mkdir -p "$MOLECULE_CHROOTS"
(cd ansible && unshare -m molecule test)
