#!/usr/bin/env python3
"""test_fhir_client.py — a real third-party FHIR client (fhir-kit-client, from npm) against the server.

CRUD, vread, JSON Patch, history (instance, type with paging, system), delete, batch and
transaction, as fhirclient/client.mjs drives them, on SQLite and (when HV_TEST_PG_URL is
set) on PostgreSQL. The client is installed at test time with `npm ci` from the committed
package.json and package-lock.json into a node_modules under the build tree. A machine
without node/npm fails this test: scripts/setup.sh installs them.
"""

import os
import shutil
import subprocess

from harness import BUILDDIR, SRCDIR, EngineTestCase, main

PG_URL = os.environ.get("HV_TEST_PG_URL")
PKG_SRC = os.path.join(SRCDIR, "test", "integration", "fhirclient")
PKG_DIR = os.path.join(BUILDDIR, "test", "integration", "fhirclient-run")


def install_client():
    """npm ci into the build tree once (skipped when the lock has not changed)."""
    os.makedirs(PKG_DIR, exist_ok=True)
    for name in ("package.json", "package-lock.json", "client.mjs"):
        shutil.copyfile(os.path.join(PKG_SRC, name), os.path.join(PKG_DIR, name))
    stamp = os.path.join(PKG_DIR, "node_modules", "fhir-kit-client", "package.json")
    if not os.path.exists(stamp):
        subprocess.run(["npm", "ci", "--no-audit", "--no-fund", "--loglevel=error"], cwd=PKG_DIR,
                       check=True, timeout=300)


class FhirKitClientTest(EngineTestCase):
    DB = None

    def test_fhir_kit_client_crud_history_batch_transaction(self):
        install_client()
        args = []
        if self.DB:
            subprocess.run(["psql", "-q", "-X", self.DB, "-c", "DROP SCHEMA IF EXISTS fhir CASCADE"],
                           check=True, capture_output=True, timeout=30)
            args = ["--db", self.DB]
        eng = self.engine(args=args)
        p = subprocess.run(["node", "client.mjs", eng.base + "/fhir"], cwd=PKG_DIR, capture_output=True,
                           text=True, timeout=120)
        self.assertEqual(p.returncode, 0, p.stdout + p.stderr)
        self.assertIn("ok - failed transaction rolls back", p.stdout)


if PG_URL:
    class FhirKitClientPgTest(FhirKitClientTest):
        DB = None

        @classmethod
        def setUpClass(cls):
            # A database of its own: test_fhir_store.py may run at the same time.
            # Unique per run: two test runs may share the server.
            cls.DB_NAME = "hv_test_fhir_client_%d" % os.getpid()
            base = PG_URL.rpartition("/")[0]
            for sql in ("DROP DATABASE IF EXISTS " + cls.DB_NAME, "CREATE DATABASE " + cls.DB_NAME):
                subprocess.run(["psql", "-q", "-X", PG_URL, "-c", sql], check=True, capture_output=True, timeout=60)
            cls.DB = base + "/" + cls.DB_NAME

        @classmethod
        def tearDownClass(cls):
            subprocess.run(["psql", "-q", "-X", PG_URL, "-c", "DROP DATABASE IF EXISTS " + cls.DB_NAME],
                           capture_output=True, timeout=60)


if __name__ == "__main__":
    main()
