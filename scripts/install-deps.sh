#!/usr/bin/env bash
# Installs the Debian packages that building and testing ruvllm needs, when missing.
# Safe to run repeatedly: it does nothing when everything is present.
set -euo pipefail

pkgs=(
  build-essential cmake pkg-config
  clang libclang-rt-14-dev      # libFuzzer and sanitizer runtimes
  libjansson-dev                # JSON
  libpcre2-dev                  # pre-tokenizer regexes
  libutf8proc-dev               # Unicode normalization and categories
  libmicrohttpd-dev             # HTTP server
  libcurl4-openssl-dev          # model download
  chromium                      # the server's chat page test (headless)
)

# The server tests' node modules (openai, ajv), into tests/server/node_modules, from the
# lockfile; uses the machine's node and npm when present (never Debian's npm, never global).
bash "$(dirname "$0")/../tests/server/npm-ci.sh" || echo "install-deps: npm ci failed; the server tests will fail" >&2

missing=()
for p in "${pkgs[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
[ ${#missing[@]} -eq 0 ] && exit 0

echo "install-deps: installing ${missing[*]}" >&2
SUDO=
[ "$(id -u)" -ne 0 ] && SUDO=sudo
export DEBIAN_FRONTEND=noninteractive
$SUDO apt-get update -qq || echo "install-deps: apt-get update failed; trying the cached lists" >&2
$SUDO apt-get install -y -qq --no-install-recommends "${missing[@]}"
