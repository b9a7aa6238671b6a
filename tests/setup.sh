#!/usr/bin/env bash
# Install what vbank needs on Debian 12 to build, run (`vbank up`) and test: Debian packages, the Rust
# components, and the browser-test npm package (`--long`: also what the long suites need). Idempotent; installs only
# what is missing. Run as root (or with sudo).
set -euo pipefail
cd "$(dirname "$0")/.."

# Build: gcc/pkg-config for -sys crates. Run: softhsm2 (development HSM), opensc (pkcs11-tool), openssl (cross-checks).
# Tests: postgresql (store backend), chromium (browser tests), a CJK font so pages render, util-linux (unshare,
# taskset), curl. Recording fusion and export: ffmpeg (the CLI composes the MP4). Benchmarks: janus (the peer SFU
# of `vbank bench gateway`). Documents shown in calls: poppler-utils (pdftoppm) and LibreOffice headless (PowerPoint).
# KYC face comparison: dlib with BLAS/LAPACK (its example photos serve the tests as other people's faces).
# Install: systemd (systemd-analyze gates the units), debootstrap (the Molecule chroot's rootfs), binutils (strip).
# Backup and DR: restic (`vbank backup`), iproute2 (the drills' network namespaces), prometheus (promtool checks
# the alert rules), patroni and etcd-server (the HA state tier the db-failover drill builds), keepalived (the VIP
# the gateway-failover drill moves).
PACKAGES=(build-essential pkg-config curl ca-certificates openssl softhsm2 opensc postgresql chromium
          fonts-wqy-zenhei util-linux python3 python3-venv janus ffmpeg poppler-utils libreoffice-impress-nogui
          libdlib-dev liblapack-dev libblas-dev systemd debootstrap binutils restic iproute2
          prometheus patroni etcd-server keepalived)
# The long suites (tests/run.sh --long): the image build (mmdebstrap, lynis, qemu-img) and its boot test (QEMU).
[[ "${1:-}" == "--long" ]] && PACKAGES+=(mmdebstrap lynis qemu-system-x86 qemu-utils)
# The machine image may ship Node.js outside Debian's packages: use it when present.
command -v node >/dev/null && command -v npm >/dev/null || PACKAGES+=(nodejs npm)

missing=()
for p in "${PACKAGES[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if ((${#missing[@]})); then
  echo "setup: installing ${missing[*]}"
  SUDO=""; [[ $(id -u) -eq 0 ]] || SUDO="sudo"
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi

if ! command -v cargo >/dev/null; then
  echo "setup: no Rust toolchain. Install one with rustup (https://rustup.rs), then run this again." >&2
  exit 1
fi
for c in rustfmt clippy; do
  rustup component list --installed 2>/dev/null | grep -q "^$c" || rustup component add "$c" >/dev/null 2>&1 || true
done
# The pages' frame-encryption module (hsm/sframe-wasm) is built for WebAssembly.
rustup target list --installed 2>/dev/null | grep -q '^wasm32-unknown-unknown$' || rustup target add wasm32-unknown-unknown

# An independent RFC 8998 (国密 TLS 1.3) peer for the interop tests: BabaSSL/Tongsuo as embedded in PyPI tongsuopy.
VENV="$HOME/.cache/vbank/venv"
if ! "$VENV/bin/python" -c "import tongsuopy" 2>/dev/null; then
  python3 -m venv "$VENV"
  "$VENV/bin/pip" install -q --disable-pip-version-check tongsuopy==1.0.1
fi

# The KYC service's OCR models (PP-OCRv4 from PyPI rapidocr-onnxruntime 1.4.4, SHA-256 pinned); `vbank up` and the
# KYC tests find them here (VBANK_MODELS overrides).
PYTHON="$VENV/bin/python" bash appliance/kyc-service/models/fetch-ocr.sh "$HOME/.cache/vbank/models"
# And its face comparison models (dlib's ResNet encoder and 5-point landmarks, from PyPI face_recognition_models).
PYTHON="$VENV/bin/python" bash appliance/kyc-service/models/fetch-face.sh "$HOME/.cache/vbank/models"

if [[ ! -d tests/browser/node_modules/playwright-core ]]; then
  (cd tests/browser && npm ci --no-audit --no-fund --loglevel=error)
fi
echo "setup: ready"
