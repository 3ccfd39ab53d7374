#!/usr/bin/env bash
# Quick start: installs what is missing, builds, and runs the engine with its defaults
# (SQLite under ./var, the channels in ./channels, HTTP on 8080, MLLP on 2575).
# Extra arguments go to `holovitals serve` (e.g. --http 127.0.0.1:18080).
set -euo pipefail
top=$(cd "$(dirname "$0")/.." && pwd)
"$top/scripts/setup.sh"
"$top/scripts/build.sh" release --enable-werror
cd "$top"
exec "$top/build/release/holovitals" serve "$@"
