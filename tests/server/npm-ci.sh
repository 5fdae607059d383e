#!/usr/bin/env bash
# Install the server tests' node modules (openai, ajv) into tests/server/node_modules from
# package-lock.json with `npm ci`, unless the ones there were installed from this very
# lockfile. Never installs globally. Called by scripts/install-deps.sh and by the CTest
# fixture server_npm_ci.
set -euo pipefail
cd "$(dirname "$0")"
if ! command -v npm >/dev/null 2>&1; then
  echo "npm-ci: npm not found; the server tests will be skipped" >&2
  exit 0
fi
if [ -f node_modules/.ruvllm-lock ] && cmp -s node_modules/.ruvllm-lock package-lock.json; then
  exit 0
fi
npm ci --no-audit --no-fund --prefer-offline --loglevel=error
cp package-lock.json node_modules/.ruvllm-lock
