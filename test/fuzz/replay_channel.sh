#!/bin/sh
set -e
if [ "$HV_FUZZ_MODE" = libfuzzer ]; then
  exec "$HV_BUILDDIR/test/fuzz/fuzz_channel" -runs=0 "$HV_SRCDIR/test/fuzz/corpus/channel"
fi
exec "$HV_BUILDDIR/test/fuzz/fuzz_channel" "$HV_SRCDIR/test/fuzz/corpus/channel"
