#!/bin/sh
set -e
if [ "$HV_FUZZ_MODE" = libfuzzer ]; then
  exec "$HV_BUILDDIR/test/fuzz/fuzz_split_bundle" -runs=0 "$HV_SRCDIR/test/fuzz/corpus/split_bundle"
fi
exec "$HV_BUILDDIR/test/fuzz/fuzz_split_bundle" "$HV_SRCDIR/test/fuzz/corpus/split_bundle"
