#!/bin/sh
set -e
if [ "$HV_FUZZ_MODE" = libfuzzer ]; then
  exec "$HV_BUILDDIR/test/fuzz/fuzz_chan_set" -runs=0 "$HV_SRCDIR/test/fuzz/corpus/chan_set"
fi
exec "$HV_BUILDDIR/test/fuzz/fuzz_chan_set" "$HV_SRCDIR/test/fuzz/corpus/chan_set"
