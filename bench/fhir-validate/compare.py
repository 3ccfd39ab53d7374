#!/usr/bin/env python3
"""compare.py — do two holovitals builds report the same validation issues?

Splits every input file into single resources (a Bundle gives itself and each
entry.resource), writes them to a scratch directory, runs
`BIN fhir validate FILE...` with each build over the same files, and compares the
OperationOutcome printed for each resource byte for byte. Prints the counts and the
first differing resources; exits 1 on any difference.

  bench/fhir-validate/compare.py A_BIN B_BIN [--limit N] PATH...

PATH is a JSON file or a directory of them (e.g. the reference data's
fhir/examples and fhir/synthea, or /tmp/s13-peer100k/pop). --limit caps the number of
resources (0, the default, takes all).
"""
import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile

BATCH = 2000  # files a `fhir validate` run gets: keeps the command line short


def inputs(paths):
    for p in paths:
        if os.path.isdir(p):
            for name in sorted(os.listdir(p)):
                if name.endswith(".json"):
                    yield os.path.join(p, name)
        else:
            yield p


def resources(paths):
    for path in inputs(paths):
        with open(path, "rb") as f:
            doc = json.load(f)
        yield doc
        if isinstance(doc, dict) and doc.get("resourceType") == "Bundle":
            for entry in doc.get("entry") or []:
                res = entry.get("resource") if isinstance(entry, dict) else None
                if isinstance(res, dict):
                    yield res


def run(binary, files):
    """The OperationOutcome text per file, in order (the CLI heads each with ==> FILE <==)."""
    out = []
    for i in range(0, len(files), BATCH):
        batch = files[i:i + BATCH]
        p = subprocess.run([binary, "fhir", "validate"] + batch, stdout=subprocess.PIPE,
                           stderr=subprocess.PIPE, check=False)
        if p.returncode not in (0, 1):
            sys.exit("%s failed (%d): %s" % (binary, p.returncode, p.stderr.decode()[:500]))
        parts = p.stdout.decode().split("==> ")[1:]
        if len(parts) != len(batch):
            sys.exit("%s printed %d outcomes for %d files" % (binary, len(parts), len(batch)))
        out.extend(parts)
    return out


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("a")
    ap.add_argument("b")
    ap.add_argument("paths", nargs="+")
    ap.add_argument("--limit", type=int, default=0)
    args = ap.parse_args()
    scratch = tempfile.mkdtemp(prefix="hv-validate-")
    try:
        files = []
        for res in resources(args.paths):
            if args.limit and len(files) >= args.limit:
                break
            name = os.path.join(scratch, "%07d.json" % len(files))
            with open(name, "w") as f:
                json.dump(res, f)
            files.append(name)
        a = run(args.a, files)
        b = run(args.b, files)
        differ = [i for i in range(len(files)) if a[i] != b[i]]
        with_issues = sum(1 for t in a if "No issues detected" not in t)
        print("resources %d, with issues %d, outcomes differing %d"
              % (len(files), with_issues, len(differ)))
        for i in differ[:5]:
            print("--- %s\n%s\n+++ %s\n%s" % (args.a, a[i], args.b, b[i]))
        return 1 if differ else 0
    finally:
        shutil.rmtree(scratch)


if __name__ == "__main__":
    sys.exit(main())
