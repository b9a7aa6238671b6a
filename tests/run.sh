#!/usr/bin/env bash
# Every vbank test: formatting, lints, unit and integration tests (both store backends, SoftHSM2, journald,
# end-to-end `vbank up`), the browser tests in headless Chromium, and the Ansible roles (lint, Molecule on a chroot).
#   tests/run.sh          the default suite (what CI runs)
#   tests/run.sh --long   adds the heavy suites: the hardened image (build, lynis, QEMU boot: tests/image.sh)
# The systemd units' security gate and the release bundle's checks are Rust tests (appliance/vbank/tests/release.rs).
# Ends with one line "N passed, N failed".
set -euo pipefail
cd "$(dirname "$0")/.."
LONG=0
for a in "$@"; do
  case "$a" in
    --long) LONG=1 ;;
    *) echo "usage: tests/run.sh [--long]" >&2; exit 2 ;;
  esac
done

# Reuse a warm build across clones (CI clones afresh; the cache lives outside the checkout).
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$HOME/.cache/vbank/target}"
export CARGO_TERM_COLOR=never
if ((LONG)); then bash tests/setup.sh --long; else bash tests/setup.sh; fi

LOGS=$(mktemp -d)
LOG=$LOGS/cargo-test.log
rm -rf tests/artifacts/logs   # the browser tests leave each vbank up's log here, for the scan below
passed=0; failed=0
step() { echo; echo "=== $*"; }

step "cargo fmt --check"
cargo fmt --all --check

step "cargo clippy --all-targets -D warnings"
cargo clippy --workspace --all-targets --quiet -- -D warnings

step "cargo test"
set +e
cargo test --workspace --no-fail-fast 2>&1 | tee "$LOG"
rust_status=${PIPESTATUS[0]}
set -e
p=$(grep -Eo '^test result: [A-Za-z]+\. [0-9]+ passed; [0-9]+ failed' "$LOG" | awk '{s+=$4} END {print s+0}')
f=$(grep -Eo '^test result: [A-Za-z]+\. [0-9]+ passed; [0-9]+ failed' "$LOG" | awk '{s+=$6} END {print s+0}')
passed=$((passed + p)); failed=$((failed + f))
if ((rust_status != 0 && f == 0)); then failed=$((failed + 1)); fi   # a build failure counts as one failure

step "browser tests (headless Chromium)"
export VBANK_BIN="$CARGO_TARGET_DIR/debug/vbank"
# The pages' frame-encryption module, as the gateway will serve it.
cargo build --quiet --release -p vbank-sframe-wasm --target wasm32-unknown-unknown
export VBANK_SFRAME_WASM="$CARGO_TARGET_DIR/wasm32-unknown-unknown/release/vbank_sframe_wasm.wasm"
set +e
LOG=$LOGS/browser.log
(cd tests/browser && node --test --test-concurrency=1 .) 2>&1 | tee "$LOG"
node_status=${PIPESTATUS[0]}
set -e
p=$(grep -E '^# pass [0-9]+' "$LOG" | awk '{print $3}'); f=$(grep -E '^# fail [0-9]+' "$LOG" | awk '{print $3}')
passed=$((passed + ${p:-0})); failed=$((failed + ${f:-0}))
if ((node_status != 0 && ${f:-0} == 0)); then failed=$((failed + 1)); fi

# The Ansible roles: ansible-lint, then Molecule on a chroot (converge, idempotence, verify).
step "ansible: lint and Molecule (chroot)"
set +e
bash tests/ansible.sh 2>&1 | tee "$LOGS/ansible.log" | grep -E '^--- |Executed|PLAY RECAP|changed=|Passed|Failed|ERROR|fatal'
ansible_status=${PIPESTATUS[0]}
set -e
if ((ansible_status == 0)); then passed=$((passed + 1)); else failed=$((failed + 1)); echo "ansible failed: $LOGS/ansible.log"; fi

# Personal data must not reach a log: no resident ID number (18 characters standing alone) and none of the simulated
# people's names (appliance/vbank/src/up/kyc_dev.rs) in anything the suite printed or any service wrote. A hit is
# reported by place only, masked.
step "personal data in logs"
hits=$(grep -rnoE '(^|[^0-9A-Za-z])[0-9]{17}[0-9Xx]([^0-9A-Za-z]|$)|测试甲|测试乙' "$LOGS" tests/artifacts/logs 2>/dev/null \
  | sed -E 's/[0-9]{17}[0-9Xx]/<ID number>/; s/测试甲|测试乙/<name>/' || true)
if [[ -n "$hits" ]]; then
  echo "personal data found in logs:"; echo "$hits"; failed=$((failed + 1))
else
  echo "no ID numbers or fixture names in $(find "$LOGS" tests/artifacts/logs -type f 2>/dev/null | wc -l) logs"; passed=$((passed + 1))
fi

# One long suite: its script's output to the screen and $LOGS/<log>, one pass or failure.
long_suite() {
  step "long: $1"
  set +e
  bash "$2" 2>&1 | tee "$LOGS/$3"
  local status=${PIPESTATUS[0]}
  set -e
  if ((status == 0)); then passed=$((passed + 1)); else failed=$((failed + 1)); fi
}
if ((LONG)); then
  long_suite "the hardened image (build, lynis, boot under QEMU)" tests/image.sh image.log
  long_suite "every disaster-recovery drill, as an operator runs it" tests/drills.sh drills.log
fi

echo
echo "${passed} passed, ${failed} failed"
((failed == 0))
