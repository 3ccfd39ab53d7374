#!/usr/bin/env bash
# Builds HoloVitals in build/DIR with the given configure options (out of the source tree,
# so several configurations live side by side). Usage: scripts/build.sh DIR [configure options…]
set -euo pipefail
top=$(cd "$(dirname "$0")/.." && pwd)
dir=$1; shift
cd "$top"
if [ ! -x configure ] || [ configure.ac -nt configure ]; then
  autoreconf -fi >/dev/null
fi
if [ -f config.status ]; then
  # out-of-tree builds need an unconfigured source tree
  echo "build.sh: cleaning the in-tree configuration (make distclean) for out-of-tree builds"
  make -s distclean >/dev/null 2>&1 || rm -f config.status
fi
mkdir -p "build/$dir"
cd "build/$dir"
want="$*"
if [ ! -f Makefile ] || [ "$(cat .configured-with 2>/dev/null)" != "$want" ]; then
  "$top/configure" -q "$@"
  echo "$want" > .configured-with
fi
make -j"$(nproc)" -s
