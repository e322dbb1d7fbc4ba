#!/usr/bin/env bash
# Installs the pinned npm packages of the test FHIR server (tests/fhir_server/server.mjs).
# Idempotent: does nothing when node_modules already matches package-lock.json.
set -euo pipefail
cd "$(dirname "$0")"
stamp=node_modules/.cds-onnx-installed-lock.json
if [ -f "$stamp" ] && cmp -s package-lock.json "$stamp"; then
  exit 0
fi
if ! command -v npm >/dev/null 2>&1; then
  echo "tests/fhir_server/setup.sh: npm not found; install Node.js 20+ (apt-get install nodejs npm)" >&2
  exit 1
fi
npm ci --no-audit --no-fund --loglevel=error
cp package-lock.json "$stamp"
