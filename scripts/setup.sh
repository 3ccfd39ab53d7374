#!/usr/bin/env bash
# Installs what HoloVitals needs on Debian 12 and is missing: build tools, the libraries
# configure looks for, and the servers and peers the tests and benchmarks use. Idempotent:
# a second run installs nothing. Works as root, or as a user with sudo.
set -euo pipefail

packages=(
  build-essential autoconf automake libtool pkg-config
  libuv1-dev libhttp-parser-dev libjson-c-dev libxml2-dev libcurl4-openssl-dev
  libssl-dev libsqlite3-dev libpq-dev libtesseract-dev tesseract-ocr tesseract-ocr-eng
  libcmocka-dev libunistring-dev clang libclang-rt-14-dev
  libmimalloc-dev
  curl wrk nginx-light postgresql nodejs npm python3 chromium
)

sudo=""
if [ "$(id -u)" -ne 0 ]; then sudo="sudo"; fi

missing=()
for p in "${packages[@]}"; do
  if ! dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "ok installed"; then
    # nodejs/npm may come from another source (nodesource, nvm); accept a working binary.
    case "$p" in
      nodejs) command -v node >/dev/null 2>&1 && continue ;;
      npm) command -v npm >/dev/null 2>&1 && continue ;;
      python3) command -v python3 >/dev/null 2>&1 && continue ;;
    esac
    missing+=("$p")
  fi
done

if [ "${#missing[@]}" -gt 0 ]; then
  echo "setup: installing ${missing[*]}"
  export DEBIAN_FRONTEND=noninteractive
  $sudo apt-get update -qq
  $sudo apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
else
  echo "setup: all packages present"
fi

# nginx and PostgreSQL are started by the tests and benchmarks on their own ports as needed;
# the packaged system services are not required.

# The SMART App Launch integration test drives a real SMART client, npm `fhirclient` (pinned in
# test/integration/smart-client/package-lock.json); its peer dependencies (React Native) are
# not needed under Node.
top=$(cd "$(dirname "$0")/.." && pwd)
if [ ! -d "$top/test/integration/smart-client/node_modules/fhirclient" ]; then
  echo "setup: installing test/integration/smart-client (npm ci)"
  (cd "$top/test/integration/smart-client" && npm ci --no-audit --no-fund --legacy-peer-deps --loglevel=error)
fi

# The console's browser tests drive Debian's Chromium (installed above) through npm
# `playwright-core` (pinned in test/browser/package-lock.json; it downloads no browser).
if [ ! -d "$top/test/browser/node_modules/playwright-core" ]; then
  echo "setup: installing test/browser (npm ci)"
  (cd "$top/test/browser" && npm ci --no-audit --no-fund --loglevel=error)
fi
