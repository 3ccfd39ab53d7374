#!/bin/sh
exec "$HV_BUILDDIR/test/fuzz/fuzz_ucum" "$HV_SRCDIR/test/fuzz/corpus/ucum"
