"""test_terminology.py — the terminology module through the real binary: the `ucum` commands."""

import os

from harness import EngineTestCase, main, run_cli


class UcumCli(EngineTestCase):
    def test_convert_prints_the_value(self):
        rc, out, err = run_cli("ucum", "convert", "37", "Cel", "[degF]")
        self.assertEqual((rc, out, err), (0, "98.6\n", ""))
        rc, out, _ = run_cli("ucum", "convert", "100", "mg/dL", "g/L")
        self.assertEqual((rc, out), (0, "1\n"))

    def test_convert_refuses_incommensurable_units(self):
        rc, out, err = run_cli("ucum", "convert", "1", "mg", "mL")
        self.assertEqual(rc, 1)
        self.assertEqual(out, "")
        self.assertIn("cannot convert 'mg' (g) to 'mL' (m3): not commensurable", err)

    def test_validate_reports_column_and_reason(self):
        rc, out, _ = run_cli("ucum", "validate", "mg/dL")
        self.assertEqual(rc, 0)
        self.assertIn("g.m-3", out)
        rc, _, err = run_cli("ucum", "validate", "g/12h")
        self.assertEqual(rc, 1)
        self.assertIn("column 3", err)
        self.assertIn("12.h", err)

    def test_usage_errors_exit_2(self):
        rc, _, _ = run_cli("ucum", "convert", "1", "mg")
        self.assertEqual(rc, 2)
        rc, _, _ = run_cli("ucum", "convert", "x", "mg", "g")
        self.assertEqual(rc, 2)

    def test_essence_setting_is_honoured(self):
        env = {"HOLOVITALS_TERMINOLOGY_UCUM_ESSENCE": os.path.join(self.workdir, "missing.xml")}
        rc, _, err = run_cli("ucum", "validate", "m", env=env)
        self.assertEqual(rc, 1)
        self.assertIn("missing.xml", err)


SRC = os.environ.get("HV_SRCDIR", ".")
DATA = os.path.join(SRC, "test", "data", "terminology")


class TerminologyLoadCli(EngineTestCase):
    def test_load_and_search_fixtures(self):
        data = os.path.join(self.workdir, "var")
        rc, out, err = run_cli("terminology", "load", "loinc", os.path.join(DATA, "Loinc.csv"), "--data", data)
        self.assertEqual(rc, 0, err)
        self.assertEqual(out, "loaded loinc version 2.74: 13 concepts\n")
        rc, out, _ = run_cli("terminology", "search", "loinc", "hemoglobin blood", "--data", data)
        self.assertEqual(rc, 0)
        self.assertIn("718-7\tHemoglobin [Mass/volume] in Blood\n", out)
        rc, out, err = run_cli("terminology", "load", "snomed", os.path.join(DATA, "snomed"), "--data", data)
        self.assertEqual((rc, out), (0, "loaded snomed version 20240101: 8 concepts\n"), err)

    def test_failed_load_reports_and_keeps_previous(self):
        data = os.path.join(self.workdir, "var")
        rc, _, _ = run_cli("terminology", "load", "cpt", os.path.join(DATA, "cpt.csv"), "--data", data)
        self.assertEqual(rc, 0)
        bad = os.path.join(self.workdir, "bad.csv")
        with open(bad, "w") as f:
            f.write("code,description\n99213,ok\nXX,broken\n")
        rc, _, err = run_cli("terminology", "load", "cpt", bad, "--data", data)
        self.assertEqual(rc, 1)
        self.assertIn("line 3", err)
        self.assertIn("previous version stays in force", err)
        rc, out, _ = run_cli("terminology", "search", "cpt", "metabolic", "--data", data)
        self.assertIn("80053", out)
        rc, _, _ = run_cli("terminology", "load", "rxnorm", bad, "--data", data)
        self.assertEqual(rc, 2)

    def test_shipped_icd10cm_loads_in_full(self):
        data = os.path.join(self.workdir, "var")
        path = os.path.join(SRC, "terminology", "data", "icd10cm-order-2021.txt.gz")
        rc, out, err = run_cli("terminology", "load", "icd10cm", path, "--data", data, timeout=120)
        self.assertEqual((rc, out), (0, "loaded icd10cm version 2021: 95358 concepts\n"), err)
        rc, out, _ = run_cli("terminology", "search", "icd10cm", "cholera", "--data", data)
        self.assertTrue(out.startswith("A00"), out)


if __name__ == "__main__":
    main()
