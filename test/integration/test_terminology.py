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


if __name__ == "__main__":
    main()
