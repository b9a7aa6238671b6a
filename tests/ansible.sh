#!/usr/bin/env bash
# The Ansible roles: ansible-lint (production profile), then the Molecule scenario (ansible/molecule/default) on a
# chroot of a cached Debian 12 rootfs inside `unshare -m`: converge, idempotence (a second run changes nothing),
# verify. The fixtures are made here: a release key, a bundle signed with it from this build's vbank (debug, its
# symbols stripped) and the frame-cipher module, and certificates from a throw-away CA.
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
strip -o "$FIX/vbank" "$VBANK_BIN"
"$FIX/vbank" --json release keygen --out "$FIX" >/dev/null
"$FIX/vbank" --json release build --version 0.0.0-test --key "$FIX/release.key" --binary "$FIX/vbank" \
  --wasm "$VBANK_SFRAME_WASM" --out "$FIX" >/dev/null
mkdir -p "$FIX/tls"
openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -days 2 -subj "/CN=test CA" \
  -keyout "$FIX/tls/ca.key" -out "$FIX/tls/ca.crt" 2>/dev/null
for name in public gateway keyd recorder kyc cli; do
  openssl req -new -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -subj "/CN=$name.vbank.internal" \
    -keyout "$FIX/tls/$name.key" -out "$FIX/tls/$name.csr" 2>/dev/null
  openssl x509 -req -in "$FIX/tls/$name.csr" -CA "$FIX/tls/ca.crt" -CAkey "$FIX/tls/ca.key" -days 2 \
    -out "$FIX/tls/$name.crt" 2>/dev/null
done

echo "--- molecule test (chroot)"
export MOLECULE_CHROOTS="$FIX/chroots" MOLECULE_FIXTURES="$FIX"
MOLECULE_ROOTFS_TAR=$(bash tests/rootfs.sh)
export MOLECULE_ROOTFS_TAR
mkdir -p "$MOLECULE_CHROOTS"
(cd ansible && unshare -m molecule test)
