#!/usr/bin/env bash
# An independent reader of TFLite metadata for the tests (tests/test_tflite_metadata.py,
# tests/cli/test_build_images.py): tflite-support 0.4.4, the TFLite Support library's own
# MetadataDisplayer, in a venv of its own - it pins protobuf < 4, which cannot share an
# environment with litert-torch. Idempotent; cached under $EDGEPACK_TFLITE_SUPPORT_DIR
# (default .ci/work/tflite-support).
set -euo pipefail
repo_root=$(cd "$(dirname "$0")/../.." && pwd)
work=${EDGEPACK_TFLITE_SUPPORT_DIR:-$repo_root/.ci/work/tflite-support}
stamp="$work/.complete-0.4.4"
if [ -e "$stamp" ]; then
    echo "50-tflite-support: cached: $work"
    exit 0
fi
rm -rf "$work"
"${PYTHON:-python3}" -m venv "$work"
"$work/bin/pip" install --quiet --disable-pip-version-check tflite-support==0.4.4
"$work/bin/python" -c "from tflite_support import metadata; metadata.MetadataDisplayer"
touch "$stamp"
echo "50-tflite-support: installed $work"
