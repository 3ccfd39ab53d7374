"""test_mappings_oracle.py — the HL7 v2 → FHIR output stays byte-identical.

Every HL7 v2 message of the reference (../shared/reference/hl7v2 and hl7-v2-to-fhir: *.hl7,
*.txt, *.er7, *.msg — 257 files) and the two messages of bench/mappings
(test/data/mappings/bench_*.hl7) are mapped by test/integration/v2_oracle, strict without
--explain and lenient with --explain. The SHA-256 of each result line (Bundle, OperationOutcome,
explanation or error, as exact bytes in json-c's plain form, member order included) must equal
the one committed in test/data/mappings/v2_oracle.tsv. A speed change to the engine must not
change a byte; a deliberate mapping change regenerates the file:

    HV_ORACLE_REGEN=1 python3 test/integration/test_mappings_oracle.py

and says so in its commit. HV_ORACLE_DUMP=DIR writes each result to DIR (one file per
message and mode) to diff two builds' outputs.
"""

import hashlib
import os
import subprocess
import unittest

from harness import BUILDDIR, REFERENCE, SRCDIR, main

DRIVER = os.environ.get("HV_V2_ORACLE", os.path.join(BUILDDIR, "test", "integration", "v2_oracle"))
MANIFEST = os.path.join(SRCDIR, "test", "data", "mappings", "v2_oracle.tsv")
EXTS = (".hl7", ".txt", ".er7", ".msg")


def inputs():
    """(name, path) of every message: reference files by path under the reference, sorted."""
    ref = os.environ.get("HV_REFERENCE_DIR", REFERENCE)
    out = []
    for top in ("hl7v2", "hl7-v2-to-fhir"):
        for root, _dirs, files in os.walk(os.path.join(ref, top)):
            for f in files:
                if f.endswith(EXTS):
                    p = os.path.join(root, f)
                    out.append(("ref/" + os.path.relpath(p, ref), p))
    data = os.path.join(SRCDIR, "test", "data", "mappings")
    for f in sorted(os.listdir(data)):
        if f.startswith("bench_") and f.endswith(".hl7"):
            out.append(("bench/" + f, os.path.join(data, f)))
    return sorted(out)


def run_all(files):
    """The two result lines per file, as bytes."""
    proc = subprocess.run([DRIVER] + [p for _n, p in files], stdout=subprocess.PIPE,
                          stderr=subprocess.PIPE, timeout=600, check=False)
    if proc.returncode != 0:
        raise AssertionError("v2_oracle failed: %s" % proc.stderr.decode(errors="replace"))
    lines = proc.stdout.split(b"\n")
    if lines and lines[-1] == b"":
        lines.pop()
    if len(lines) != 2 * len(files):
        raise AssertionError("v2_oracle printed %d lines for %d files" % (len(lines), len(files)))
    return lines


class V2OracleTest(unittest.TestCase):
    def test_every_reference_message_maps_to_the_committed_bytes(self):
        files = inputs()
        self.assertGreaterEqual(len(files), 250, "reference messages not found")
        lines = run_all(files)
        got = {}
        for i, (name, _p) in enumerate(files):
            got[name] = (hashlib.sha256(lines[2 * i]).hexdigest(),
                         hashlib.sha256(lines[2 * i + 1]).hexdigest())
        dump = os.environ.get("HV_ORACLE_DUMP")
        if dump:
            os.makedirs(dump, exist_ok=True)
            for i, (name, _p) in enumerate(files):
                base = os.path.join(dump, name.replace("/", "__"))
                with open(base + ".strict.json", "wb") as f:
                    f.write(lines[2 * i] + b"\n")
                with open(base + ".lenient.json", "wb") as f:
                    f.write(lines[2 * i + 1] + b"\n")
        if os.environ.get("HV_ORACLE_REGEN"):
            with open(MANIFEST, "w", encoding="utf-8") as f:
                f.write("# HL7 v2 -> FHIR output oracle: SHA-256 of v2_oracle's strict and lenient+explain\n"
                        "# result lines per message. Regenerated only deliberately (HV_ORACLE_REGEN=1,\n"
                        "# see test/integration/test_mappings_oracle.py).\n")
                for name in sorted(got):
                    f.write("%s\t%s\t%s\n" % (name, got[name][0], got[name][1]))
        want = {}
        with open(MANIFEST, encoding="utf-8") as f:
            for line in f:
                if line.startswith("#") or not line.strip():
                    continue
                name, s, l = line.rstrip("\n").split("\t")
                want[name] = (s, l)
        self.assertEqual(sorted(want), sorted(got), "the set of messages changed")
        diff = ["%s (%s)" % (n, "strict" if want[n][0] != got[n][0] else "lenient")
                for n in sorted(got) if want[n] != got[n]]
        print("%d messages, %d differ" % (len(got), len(diff)))
        self.assertEqual(diff, [], "%d of %d mapped messages differ from the oracle" % (len(diff), len(got)))


if __name__ == "__main__":
    main()
