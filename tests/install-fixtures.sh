#!/usr/bin/env bash
# What a bank brings to an install, made for the tests: a release key and a bundle signed with it from this build's
# vbank (debug, its symbols stripped), the frame-cipher module and the KYC models (tests/setup.sh fetched them), and
# certificates from a throw-away CA.
#   VBANK_BIN=… VBANK_SFRAME_WASM=… tests/install-fixtures.sh DIR
set -euo pipefail
FIX=$1
mkdir -p "$FIX/tls"
strip -o "$FIX/vbank" "$VBANK_BIN"
"$FIX/vbank" --json release keygen --out "$FIX" >/dev/null
"$FIX/vbank" --json release build --version 0.0.0-test --key "$FIX/release.key" --binary "$FIX/vbank" \
  --wasm "$VBANK_SFRAME_WASM" --models "${VBANK_MODELS:-$HOME/.cache/vbank/models}" --out "$FIX" >/dev/null
openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -days 2 -subj "/CN=test CA" \
  -keyout "$FIX/tls/ca.key" -out "$FIX/tls/ca.crt" 2>/dev/null
# X.509 v3 with the names as subjectAltName (rustls refuses v1); the public one names the test nodes' URLs.
for name in public gateway keyd recorder kyc cli; do
  if [[ $name == public ]]; then san="DNS:vbank.test,DNS:vbank-a.test"; else san="DNS:$name.vbank.internal"; fi
  cn=${san%%,*}
  openssl req -new -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -subj "/CN=${cn#DNS:}" \
    -keyout "$FIX/tls/$name.key" -out "$FIX/tls/$name.csr" 2>/dev/null
  printf 'subjectAltName=%s\nbasicConstraints=CA:FALSE\n' "$san" > "$FIX/tls/$name.ext"
  openssl x509 -req -in "$FIX/tls/$name.csr" -CA "$FIX/tls/ca.crt" -CAkey "$FIX/tls/ca.key" -days 2 \
    -extfile "$FIX/tls/$name.ext" -out "$FIX/tls/$name.crt" 2>/dev/null
done
