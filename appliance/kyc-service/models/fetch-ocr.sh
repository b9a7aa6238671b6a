#!/usr/bin/env bash
# Install the OCR models `vbank kyc` uses (PP-OCRv4 text detection and recognition, Apache-2.0) into DIR, from the
# PyPI package rapidocr-onnxruntime 1.4.4. Every file is checked by SHA-256 — the wheel's and each model's — and
# nothing is used that does not match. On an air-gapped machine, pass the wheel you brought: --wheel PATH.
#   [PYTHON=python-with-pip] fetch-ocr.sh DIR [--wheel rapidocr_onnxruntime-1.4.4-py3-none-any.whl]
set -euo pipefail
dir=${1:?usage: fetch-ocr.sh DIR [--wheel PATH]}
wheel=${3:-}
WHEEL_NAME=rapidocr_onnxruntime-1.4.4-py3-none-any.whl
WHEEL_SHA256=971d7d5f223a7a808662229df1ef69893809d8457d834e6373d3854bc1782cbf
declare -A MODELS=(
  [ch_PP-OCRv4_det_infer.onnx]=d2a7720d45a54257208b1e13e36a8479894cb74155a5efe29462512d42f49da9
  [ch_PP-OCRv4_rec_infer.onnx]=48fc40f24f6d2a207a2b1091d3437eb3cc3eb6b676dc3ef9c37384005483683b
)

ok() { [[ -f "$dir/$1" ]] && echo "${MODELS[$1]}  $dir/$1" | sha256sum --check --status; }
all_ok=1
for m in "${!MODELS[@]}"; do ok "$m" || all_ok=0; done
if ((all_ok)); then echo "OCR models present and verified in $dir"; exit 0; fi

mkdir -p "$dir"
scratch=$(mktemp -d)
trap 'rm -rf "$scratch"' EXIT
if [[ -z "$wheel" ]]; then
  "${PYTHON:-python3}" -m pip download --quiet --no-deps --only-binary=:all: rapidocr-onnxruntime==1.4.4 -d "$scratch" \
    || { echo "cannot download $WHEEL_NAME: bring it and pass --wheel PATH" >&2; exit 1; }
  wheel="$scratch/$WHEEL_NAME"
fi
echo "$WHEEL_SHA256  $wheel" | sha256sum --check --status \
  || { echo "$wheel is not rapidocr-onnxruntime 1.4.4 (SHA-256 differs): refusing it" >&2; exit 1; }
for m in "${!MODELS[@]}"; do
  python3 -c 'import sys, zipfile; open(sys.argv[3], "wb").write(zipfile.ZipFile(sys.argv[1]).read(sys.argv[2]))' \
    "$wheel" "rapidocr_onnxruntime/models/$m" "$scratch/$m"
  echo "${MODELS[$m]}  $scratch/$m" | sha256sum --check --status \
    || { echo "$m in the wheel does not match its pinned SHA-256: refusing it" >&2; exit 1; }
  install -m 0644 "$scratch/$m" "$dir/$m"
done
echo "OCR models installed and verified in $dir"
