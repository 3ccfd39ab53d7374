#!/bin/sh
exec "$HV_BUILDDIR/test/fuzz/fuzz_mllp" "$HV_SRCDIR/test/fuzz/corpus/mllp"
