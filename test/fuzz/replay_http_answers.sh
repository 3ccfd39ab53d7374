#!/bin/sh
set -e
if [ "$HV_FUZZ_MODE" = libfuzzer ]; then
  exec "$HV_BUILDDIR/test/fuzz/fuzz_http_answers" -runs=0 "$HV_SRCDIR/test/fuzz/corpus/http_answers"
fi
exec "$HV_BUILDDIR/test/fuzz/fuzz_http_answers" "$HV_SRCDIR/test/fuzz/corpus/http_answers"
