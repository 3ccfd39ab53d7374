#!/bin/sh
# Replays the committed auth corpus (JWTs and scope strings) through its fuzz target.
# A libFuzzer build (--enable-fuzzers) runs the corpus once with -runs=0.
set -e
if [ "$HV_FUZZ_MODE" = libfuzzer ]; then
  exec "$HV_BUILDDIR/test/fuzz/fuzz_auth" -runs=0 "$HV_SRCDIR/test/fuzz/corpus/auth"
fi
exec "$HV_BUILDDIR/test/fuzz/fuzz_auth" "$HV_SRCDIR/test/fuzz/corpus/auth"
