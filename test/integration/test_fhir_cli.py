"""test_fhir_cli.py — `holovitals fhir validate` and `fhir convert` as a user runs them."""

import json
import os

from harness import SRCDIR, EngineTestCase, main, run_cli


def reference():
    # The CI clone has shared/ beside the project root; a worktree under wt/ one level up.
    for rel in ("..", os.path.join("..", "..")):
        p = os.path.abspath(os.path.join(SRCDIR, rel, "shared", "reference"))
        if os.path.isdir(p):
            return p
    raise AssertionError("reference data not found beside " + SRCDIR)


class FhirCli(EngineTestCase):
    def write(self, name, text):
        p = os.path.join(self.workdir, name)
        with open(p, "w", encoding="utf-8") as f:
            f.write(text)
        return p

    def test_validate_valid_example_exits_0(self):
        ex = os.path.join(reference(), "fhir", "examples", "Patient-example.json")
        rc, out, err = run_cli("fhir", "validate", ex)
        self.assertEqual(rc, 0, err)
        oo = json.loads(out)
        self.assertEqual(oo["resourceType"], "OperationOutcome")
        self.assertEqual(oo["issue"][0]["severity"], "information")

    def test_validate_reports_errors_with_paths_and_exits_1(self):
        bad = self.write("bad.json", json.dumps({"resourceType": "Patient", "gender": "woman",
                                                 "name": [{"nick": "x"}],
                                                 "contact": [{"gender": "male"}]}))
        rc, out, _ = run_cli("fhir", "validate", bad)
        self.assertEqual(rc, 1)
        issues = json.loads(out)["issue"]
        where = {i["expression"][0]: i for i in issues if i["severity"] == "error"}
        self.assertEqual(where["Patient.gender"]["code"], "code-invalid")
        self.assertEqual(where["Patient.name[0].nick"]["code"], "structure")
        self.assertEqual(where["Patient.contact[0]"]["details"]["coding"][0]["code"], "pat-1")

    def test_validate_syntax_error_names_line_and_column(self):
        bad = self.write("syntax.json", '{"resourceType": "Patient",\n  "id": x}')
        rc, out, _ = run_cli("fhir", "validate", bad)
        self.assertEqual(rc, 1)
        issue = json.loads(out)["issue"][0]
        self.assertEqual(issue["severity"], "fatal")
        self.assertIn("line 2, column 9", issue["diagnostics"])

    def test_validate_several_files_prints_one_outcome_each(self):
        good = os.path.join(reference(), "fhir", "examples", "Patient-example.json")
        bad = self.write("bad.json", '{"resourceType": "Patient", "active": "yes"}')
        rc, out, _ = run_cli("fhir", "validate", good, bad)
        self.assertEqual(rc, 1)
        self.assertEqual(out.count("==> "), 2)
        self.assertEqual(out.count('"resourceType": "OperationOutcome"'), 2)

    def test_validate_against_a_profile_by_file_and_by_url(self):
        uscore = os.path.join(reference(), "fhir", "definitions", "uscore-v5.0.1-structuredefinitions.json")
        with open(uscore, encoding="utf-8") as f:
            bp = [sd for sd in json.load(f) if sd["id"] == "us-core-blood-pressure"][0]
        prof = self.write("bp.json", json.dumps(bp))
        ex = os.path.join(reference(), "fhir", "examples", "Observation-blood-pressure.json")
        rc, out, err = run_cli("fhir", "validate", "--profile", prof, ex)
        self.assertEqual(rc, 0, out + err)
        with open(ex, encoding="utf-8") as f:
            obs = json.load(f)
        obs["code"]["coding"][0]["code"] = "1234-5"
        bad = self.write("bp-bad.json", json.dumps(obs))
        url = "http://hl7.org/fhir/us/core/StructureDefinition/us-core-blood-pressure"
        rc, out, _ = run_cli("fhir", "validate", "--profile", url, bad,
                             env={"HOLOVITALS_FHIR_PROFILE_PATH": uscore})
        self.assertEqual(rc, 1)
        errors = [i for i in json.loads(out)["issue"] if i["severity"] == "error"]
        self.assertEqual([i["expression"][0] for i in errors], ["Observation.code"])
        rc, out, _ = run_cli("fhir", "validate", "--profile", "http://example.org/none", ex)
        self.assertEqual(rc, 1)
        self.assertIn("unknown profile", out)

    def test_convert_json_to_xml_and_back(self):
        ex = os.path.join(reference(), "fhir", "examples", "Observation-example.json")
        rc, xml, err = run_cli("fhir", "convert", "--to", "xml", ex)
        self.assertEqual(rc, 0, err)
        self.assertTrue(xml.startswith('<?xml version="1.0" encoding="UTF-8"?>\n<Observation xmlns="http://hl7.org/fhir">'))
        x = self.write("obs.xml", xml)
        rc, js, err = run_cli("fhir", "convert", "--to", "json", x)
        self.assertEqual(rc, 0, err)
        with open(ex, encoding="utf-8") as f:
            self.assertEqual(json.loads(js), json.load(f))
        rc, out, _ = run_cli("fhir", "validate", x)  # XML input validates too
        self.assertEqual(rc, 0, out)

    def test_standard_input(self):
        rc, out, _ = run_cli("fhir", "validate", "-", input='{"resourceType": "Patient", "active": "yes"}')
        self.assertEqual(rc, 1)
        self.assertEqual(json.loads(out)["issue"][0]["expression"], ["Patient.active"])
        rc, out, err = run_cli("fhir", "convert", "--to", "xml", "-",
                               input='{"resourceType": "Patient", "active": true}')
        self.assertEqual(rc, 0, err)
        self.assertIn('<active value="true"/>', out)

    def test_convert_usage_and_bad_input(self):
        rc, _, err = run_cli("fhir", "convert", "x.json")
        self.assertEqual(rc, 2)
        self.assertIn("usage", err)
        bad = self.write("bad.xml", "<Patient xmlns='http://hl7.org/fhir'><foo/></Patient>")
        rc, _, err = run_cli("fhir", "convert", "--to", "json", bad)
        self.assertEqual(rc, 1)
        self.assertIn("Patient.foo", err)
        # A file that cannot be read: named once, with the system's reason.
        missing = os.path.join(os.path.dirname(bad), "no-such.json")
        rc, _, err = run_cli("fhir", "convert", "--to", "json", missing)
        self.assertEqual(rc, 1)
        self.assertEqual(err, "holovitals fhir convert: %s: cannot read: No such file or directory\n" % missing)


if __name__ == "__main__":
    main()
