#!/usr/bin/env bash
# Every disaster-recovery drill, as an operator runs it (`tests/run.sh --long`): `vbank drill run NAME` for each name
# `vbank drill list` gives, sealed with a drill officer's key made here; then each report's seal checked with
# `vbank drill verify` and with stock OpenSSL. Exit non-zero when a drill fails or misses an objective. Needs root
# (network namespaces) and VBANK_BIN.
set -euo pipefail
: "${VBANK_BIN:?set VBANK_BIN to the vbank binary}"
WORK=$(mktemp -d /tmp/vbank-drills.XXXX)
trap 'rm -rf "$WORK"' EXIT
"$VBANK_BIN" --json hsm officer-keygen --name drill-officer --out "$WORK" >/dev/null
REPORTS=${VBANK_DRILL_REPORTS:-$WORK/reports}
status=0
for name in $("$VBANK_BIN" --json drill list | python3 -c 'import json,sys; print(" ".join(d["name"] for d in json.load(sys.stdin)))'); do
  echo "--- drill $name"
  if ! out=$("$VBANK_BIN" --json drill run "$name" --signer drill-officer --signer-key "$WORK/drill-officer.key" \
      --report-dir "$REPORTS" --time-limit 900 2>"$WORK/$name.log"); then
    echo "drill $name FAILED:"; tail -n 30 "$WORK/$name.log"; status=1; continue
  fi
  report=$(python3 -c 'import json,sys; print(json.load(sys.stdin)["report"])' <<<"$out")
  "$VBANK_BIN" drill verify "$report" --public-key "$WORK/drill-officer.pub.pem"
  openssl pkeyutl -verify -rawin -digest sm3 -pkeyopt distid:vbank-drill-report -pubin \
    -inkey "$WORK/drill-officer.pub.pem" -sigfile "$report.sig" -in "$report" >/dev/null
done
exit $status
