#!/usr/bin/env bash
# Creates tests/kserve_server/.venv with the KServe Python model server (requirements.txt) for the OIP v2 backend
# tests. Idempotent: does nothing when the venv already matches requirements.txt. Without it those tests skip and say
# so. kserve pins protobuf/pandas older than the service's own, hence a venv of its own.
set -euo pipefail
cd "$(dirname "$0")"
PYTHON="${PYTHON:-python3.11}"
stamp=.venv/.cds-onnx-installed-requirements.txt
if [ -f "$stamp" ] && cmp -s requirements.txt "$stamp"; then
  exit 0
fi
if ! command -v "$PYTHON" >/dev/null 2>&1; then
  echo "tests/kserve_server/setup.sh: $PYTHON not found (set PYTHON=...)" >&2
  exit 1
fi
test -x .venv/bin/python || "$PYTHON" -m venv .venv
.venv/bin/python -m pip install --quiet -r requirements.txt
cp requirements.txt "$stamp"
