#!/bin/sh
exec "$HV_BUILDDIR/test/fuzz/fuzz_terminology_csv" "$HV_SRCDIR/test/fuzz/corpus/terminology_csv"
