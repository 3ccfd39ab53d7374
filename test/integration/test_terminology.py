"""test_terminology.py — the terminology module through the real binary: the `ucum` commands."""

import os
import time

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


class MedicalStandardsApi(EngineTestCase):
    """The medical-standards endpoints over HTTP, on the fixtures."""

    def setUp(self):
        super().setUp()
        self.eng = self.engine(start=False)
        for kind, path in (("loinc", "Loinc.csv"), ("snomed", "snomed"),
                           ("icd10cm", "icd10cm-order-sample-2021.txt"), ("cpt", "cpt.csv"),
                           ("fhir", "fhir-valuesets.json")):
            rc, _, err = run_cli("terminology", "load", kind, os.path.join(DATA, path), "--data", self.eng.data)
            self.assertEqual(rc, 0, err)
        self.eng.start()

    def test_searches_and_lookup(self):
        st, body = self.eng.get_json("/loinc/search?q=glucose%20serum&limit=5")
        self.assertEqual(st, 200)
        self.assertEqual(body["system"], "http://loinc.org")
        self.assertEqual(body["version"], "2.74")
        codes = [r["code"] for r in body["results"]]
        self.assertIn("2345-7", codes)
        self.assertEqual(body["count"], len(codes))
        st, body = self.eng.get_json("/loinc/718-7")
        self.assertEqual(st, 200)
        self.assertEqual(body["display"], "Hemoglobin [Mass/volume] in Blood")
        self.assertEqual(body["properties"]["exampleUcumUnits"], "g/dL")
        st, body = self.eng.get_json("/loinc/1-8")
        self.assertEqual((st, body["error"]), (404, "not_found"))
        st, body = self.eng.get_json("/loinc/718-8")
        self.assertEqual((st, body["error"]), (400, "invalid_code"))
        st, body = self.eng.get_json("/snomed/search?q=type%202%20diabetes")
        self.assertEqual(st, 200)
        self.assertEqual(body["results"][0]["code"], "44054006")
        st, body = self.eng.get_json("/icd10/search?q=cholera")
        self.assertEqual(st, 200)
        self.assertEqual(body["results"][0]["code"], "A00")
        self.assertEqual(body["results"][0]["properties"], {"billable": False})
        st, body = self.eng.get_json("/cpt/search?q=metabolic")
        self.assertEqual((st, body["results"][0]["code"]), (200, "80053"))
        st, body = self.eng.get_json("/cpt/search")
        self.assertEqual((st, body["error"]), (400, "missing_parameter"))
        st, body = self.eng.get_json("/loinc/search?q=x&limit=-1")
        self.assertEqual(st, 400)

    def test_convert_units(self):
        st, body = self.eng.post_json("/convert/units", {"value": 100, "from": "mg/dL", "to": "g/L"})
        self.assertEqual((st, body["result"]), (200, 1))
        st, body = self.eng.post_json("/convert/units", {"value": 37, "from": "Cel", "to": "[degF]"})
        self.assertEqual((st, body["result"]), (200, 98.6))
        st, body = self.eng.post_json("/convert/units", {"value": 1, "from": "mg", "to": "mL"})
        self.assertEqual((st, body["error"]), (422, "incommensurable_units"))
        st, body = self.eng.post_json("/convert/units", {"value": 1, "from": "g/12h", "to": "g/h"})
        self.assertEqual((st, body["error"], body["column"]), (422, "invalid_unit", 3))
        st, body = self.eng.post_json("/convert/units", {"from": "g"})
        self.assertEqual(st, 400)
        st, _, _ = self.eng.request("POST", "/convert/units", body="{", headers={"Content-Type": "application/json"})
        self.assertEqual(st, 400)

    def test_standardize_validate_batch_and_review(self):
        st, body = self.eng.post_json("/standardize/lab-result", {
            "code": "GLU", "text": "Glucose, serum", "value": 95, "unit": "mg/dl",
            "referenceRange": {"low": 70, "high": 99}})
        self.assertEqual(st, 200)
        self.assertEqual(body["status"], "standardized")
        self.assertEqual(body["loinc"]["code"], "2345-7")
        self.assertEqual(body["interpretation"], "N")
        st, body = self.eng.post_json("/standardize/lab-result", {"code": "2345-7", "value": 9000, "unit": "mg/dL"})
        self.assertEqual((st, body["status"], body["plausibility"]["plausible"]), (200, "review", False))
        st, body = self.eng.post_json("/validate/lab-result", {"code": "2345-7", "value": 5, "unit": "mmol/L"})
        self.assertEqual((st, body["valid"]), (200, False))
        self.assertEqual(body["issues"][0]["code"], "incommensurable-unit")
        st, body = self.eng.post_json("/standardize/batch", {"results": [
            {"text": "Sodium serum", "value": 140, "unit": "mmol/L"},
            {"text": "Hemoglobin blood", "value": 13, "unit": "g/dL"}, 7]})
        self.assertEqual((st, body["count"]), (200, 3))
        self.assertEqual([r.get("loinc", {}).get("code") for r in body["results"]], ["2951-2", "718-7", None])
        self.assertEqual(body["results"][2]["status"], "error")
        st, body = self.eng.get_json("/standardize/review")
        self.assertEqual(st, 200)
        self.assertGreaterEqual(body["count"], 1)
        self.assertEqual(body["items"][0]["candidate"], "2345-7")
        st, body = self.eng.post_json("/standardize/lab-result", {"value": 1})
        self.assertEqual(st, 400)
        st, body = self.eng.post_json("/standardize/batch", [{"text": "x"}] * 1001)
        self.assertEqual(st, 413)

    def test_lookup_cache_hits_and_reload_invalidates(self):
        hits0 = self.eng.metric("hv_terminology_cache_hits_total") or 0
        st, first = self.eng.get_json("/loinc/2345-7")
        st, again = self.eng.get_json("/loinc/2345-7")
        self.assertEqual((st, again), (200, first))
        self.assertEqual(self.eng.metric("hv_terminology_cache_hits_total"), hits0 + 1)
        self.assertGreaterEqual(self.eng.metric("hv_terminology_cache_misses_total"), 1)
        self.assertIsNotNone(self.eng.metric("hv_ucum_cache_hits"))
        # A load from another process (a new version) empties the cache within a few seconds.
        rc, _, err = run_cli("terminology", "load", "loinc", os.path.join(DATA, "Loinc.csv"),
                             "--version", "9.99", "--data", self.eng.data)
        self.assertEqual(rc, 0, err)
        deadline = time.monotonic() + 10
        version = None
        while time.monotonic() < deadline:
            st, body = self.eng.get_json("/loinc/2345-7")
            version = body.get("version")
            if version == "9.99":
                break
            time.sleep(0.2)
        self.assertEqual(version, "9.99")
        self.assertGreaterEqual(self.eng.metric("hv_terminology_cache_flushes_total"), 1)

    def params(self, body):
        return {p["name"]: p for p in body["parameter"]} if body.get("resourceType") == "Parameters" else None

    def test_fhir_lookup_validate_subsumes(self):
        st, body = self.eng.get_json("/fhir/CodeSystem/$lookup?system=http://loinc.org&code=2345-7")
        self.assertEqual(st, 200)
        p = self.params(body)
        self.assertEqual(p["name"]["valueString"], "LOINC")
        self.assertEqual(p["display"]["valueString"], "Glucose [Mass/volume] in Serum or Plasma")
        props = {x["part"][0]["valueCode"]: x["part"][1] for x in body["parameter"] if x["name"] == "property"}
        self.assertEqual(props["COMPONENT"]["valueString"], "Glucose")
        self.assertEqual(props["EXAMPLE_UCUM_UNITS"]["valueString"], "mg/dL")
        st, body = self.eng.post_json("/fhir/CodeSystem/$lookup", {"resourceType": "Parameters", "parameter": [
            {"name": "coding", "valueCoding": {"system": "http://hl7.org/fhir/sid/icd-10-cm", "code": "E11.00"}}]})
        self.assertEqual(st, 200)
        props = {x["part"][0]["valueCode"]: x["part"][1] for x in body["parameter"] if x["name"] == "property"}
        self.assertEqual(props["parent"]["valueCode"], "E11.0")
        st, body = self.eng.get_json("/fhir/CodeSystem/$lookup?system=http://loinc.org&code=0000-0")
        self.assertEqual((st, body["resourceType"]), (404, "OperationOutcome"))
        st, body = self.eng.get_json("/fhir/CodeSystem/$validate-code?url=http://loinc.org&code=718-7")
        self.assertEqual((st, self.params(body)["result"]["valueBoolean"]), (200, True))
        st, body = self.eng.get_json("/fhir/CodeSystem/$validate-code?url=http://loinc.org&code=718-7&display=Blood")
        self.assertEqual(self.params(body)["result"]["valueBoolean"], False)
        st, body = self.eng.get_json("/fhir/CodeSystem/$subsumes?system=http://snomed.info/sct&codeA=73211009&codeB=44054006")
        self.assertEqual(self.params(body)["outcome"]["valueCode"], "subsumes")
        st, body = self.eng.get_json("/fhir/CodeSystem/$subsumes?system=http://snomed.info/sct&codeA=44054006&codeB=73211009")
        self.assertEqual(self.params(body)["outcome"]["valueCode"], "subsumed-by")
        st, body = self.eng.get_json("/fhir/CodeSystem/$subsumes?system=http://snomed.info/sct&codeA=44054006&codeB=46635009")
        self.assertEqual(self.params(body)["outcome"]["valueCode"], "not-subsumed")
        st, body = self.eng.request("POST", "/fhir/CodeSystem/$lookup", body={"resourceType": "Patient"})[0], None
        self.assertEqual(st, 400)

    def test_fhir_valueset_expand_and_validate(self):
        isa = "http://snomed.info/sct%3Ffhir_vs%3Disa/73211009"
        st, body = self.eng.get_json("/fhir/ValueSet/$expand?url=" + isa)
        self.assertEqual((st, body["resourceType"]), (200, "ValueSet"))
        self.assertEqual(sorted(c["code"] for c in body["expansion"]["contains"]), ["44054006", "46635009", "73211009"])
        st, body = self.eng.get_json("/fhir/ValueSet/$expand?url=http://loinc.org/vs&filter=glucose&count=2&offset=1")
        self.assertEqual(len(body["expansion"]["contains"]), 2)
        self.assertEqual(body["expansion"]["offset"], 1)
        st, body = self.eng.get_json("/fhir/ValueSet/$validate-code?url=%s&system=http://snomed.info/sct&code=46635009" % isa)
        self.assertEqual(self.params(body)["result"]["valueBoolean"], True)
        st, body = self.eng.get_json("/fhir/ValueSet/$validate-code?url=%s&system=http://snomed.info/sct&code=404684003" % isa)
        self.assertEqual(self.params(body)["result"]["valueBoolean"], False)
        st, body = self.eng.get_json("/fhir/ValueSet/$expand?url=http://example.org/vs")
        self.assertEqual((st, body["resourceType"]), (404, "OperationOutcome"))

    def test_fhir_specification_value_sets(self):
        st, body = self.eng.get_json("/fhir/ValueSet/$expand?url=http://hl7.org/fhir/ValueSet/administrative-gender")
        self.assertEqual(st, 200)
        self.assertEqual(body["expansion"]["total"], 4)
        self.assertIn("female", [c["code"] for c in body["expansion"]["contains"]])
        st, body = self.eng.get_json("/fhir/ValueSet/$expand?url=urn:holovitals:test:vs:polygons")
        self.assertEqual(sorted(c["code"] for c in body["expansion"]["contains"]), ["polygon", "triangle"])
        st, body = self.eng.get_json("/fhir/ValueSet/$expand?url=urn:holovitals:test:vs:mixed&filter=circ")
        self.assertEqual([c["code"] for c in body["expansion"]["contains"]], ["circle"])
        st, body = self.eng.get_json("/fhir/ValueSet/$expand?url=urn:holovitals:test:vs:mixed&count=1&offset=1")
        self.assertEqual((body["expansion"]["total"], len(body["expansion"]["contains"])), (3, 1))
        st, body = self.eng.get_json("/fhir/ValueSet/$validate-code?url=urn:holovitals:test:vs:polygons"
                                     "&system=urn:holovitals:test:shapes&code=square")
        self.assertEqual(self.params(body)["result"]["valueBoolean"], False)
        st, body = self.eng.get_json("/fhir/ValueSet/$validate-code?url=http://hl7.org/fhir/ValueSet/observation-status"
                                     "&system=http://hl7.org/fhir/observation-status&code=final")
        self.assertEqual(self.params(body)["result"]["valueBoolean"], True)
        st, body = self.eng.get_json("/fhir/ValueSet/$expand?url=urn:holovitals:test:vs:bad-op")
        self.assertEqual((st, body["issue"][0]["code"]), (422, "not-supported"))
        st, body = self.eng.get_json("/fhir/ValueSet/$expand?url=urn:holovitals:test:vs:bad-regex")
        self.assertEqual((st, body["issue"][0]["code"]), (422, "invalid"))
        st, body = self.eng.get_json("/fhir/CodeSystem/$lookup?system=http://hl7.org/fhir/observation-status&code=amended")
        self.assertEqual((st, self.params(body)["display"]["valueString"]), (200, "Amended"))

    def expand(self, name):
        st, body = self.eng.get_json("/fhir/ValueSet/$expand?url=urn:holovitals:test:vs:" + name)
        self.assertEqual(st, 200, body)
        return sorted(c["code"] for c in body["expansion"].get("contains", []))

    def test_value_set_filters(self):
        # regex matches the whole code (R4 codesystem-filter-operator).
        self.assertEqual(self.expand("regex"), ["circle"])
        self.assertEqual(self.expand("not-polygon"), ["circle", "round", "shape"])
        self.assertEqual(self.expand("generalizes"), ["polygon", "shape", "triangle"])
        self.assertEqual(self.expand("exclude-filter"), ["circle", "polygon", "round", "shape"])
        self.assertEqual(self.expand("in"), ["circle", "triangle"])
        # The filters of one include all apply; LOINC's own property codes are understood.
        self.assertEqual(self.expand("loinc-chem-qn"), ["14749-6", "2339-0", "2345-7", "99990-4"])
        self.assertEqual(self.expand("loinc-method"), ["6690-2"])
        # 46635009's is-a to 44054006 is inactive in the fixture: only the active graph counts.
        self.assertEqual(self.expand("diabetes-not-type2"), ["46635009", "73211009"])
        st, body = self.eng.get_json("/fhir/ValueSet/$validate-code?url=urn:holovitals:test:vs:not-polygon"
                                     "&system=urn:holovitals:test:shapes&code=square")
        self.assertEqual(self.params(body)["result"]["valueBoolean"], False)

    def test_conceptmap_per_sender(self):
        cm = {"resourceType": "ConceptMap", "name": "labA", "group": [{
            "target": "http://loinc.org",
            "element": [{"code": "HGB", "target": [{"code": "718-7", "equivalence": "equivalent"}]}]}]}
        st, body = self.eng.request("PUT", "/standardize/conceptmap/LAB-A", body=cm)[0], None
        self.assertEqual(st, 200)
        st, body = self.eng.post_json("/standardize/lab-result",
                                      {"sender": "LAB-A", "code": "HGB", "text": "?", "value": 13, "unit": "g/dL"})
        self.assertEqual((st, body["loinc"]["method"], body["loinc"]["code"]), (200, "conceptmap", "718-7"))
        st = self.eng.request("PUT", "/standardize/conceptmap/LAB-A", body={"resourceType": "Patient"})[0]
        self.assertEqual(st, 400)
        st, body = self.eng.get_json("/fhir/ConceptMap/$translate?url=urn:holovitals:conceptmap:LAB-A&code=HGB")
        self.assertEqual(st, 200)
        match = [p for p in body["parameter"] if p["name"] == "match"][0]
        self.assertEqual(match["part"][1]["valueCoding"]["code"], "718-7")
        st, body = self.eng.get_json("/fhir/ConceptMap/$translate?url=urn:holovitals:conceptmap:LAB-A&code=NOPE")
        self.assertEqual(body["parameter"][0]["valueBoolean"], False)


if __name__ == "__main__":
    main()
