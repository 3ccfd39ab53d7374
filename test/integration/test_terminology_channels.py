"""test_terminology_channels.py — the terminology module's channel steps through a real engine.

A channel `http source → loinc-standardize → map-codes → file-write` receives FHIR
Observations and Bundles; the files written show what each step did: the LOINC
coding put first (the local one kept), the value converted to the LOINC example
unit with the received quantity kept, interpretation from the reference range,
the verdict tag; a low-confidence or implausible result left as received (or
errored when the channel says so); codes mapped by a ConceptMap (add / replace,
unmapped kept or errored). Misconfigured steps are refused with their position.
"""

import json
import os
import time

from harness import EngineTestCase, main, run_cli

SRC = os.environ.get("HV_SRCDIR", ".")
DATA = os.path.join(SRC, "test", "data", "terminology")
TAG = "https://holovitals.dev/fhir/CodeSystem/standardization"
ORIGINAL = "https://holovitals.dev/fhir/StructureDefinition/original-quantity"

CONCEPTMAP = {
    "resourceType": "ConceptMap",
    "status": "active",
    "group": [
        {"source": "urn:lab-a:codes", "target": "http://loinc.org",
         "element": [{"code": "GLU", "target": [{"code": "2345-7", "display": "Glucose", "equivalence": "equivalent"}]},
                     {"code": "XX", "target": [{"code": "0-0", "equivalence": "unmatched"}]}]},
        {"source": "urn:lab-a:status", "target": "http://hl7.org/fhir/observation-status",
         "unmapped": {"mode": "provided"}},
    ],
}


def obs(code, value, unit, system="urn:lab-a:codes", text=None, low=None, high=None):
    o = {"resourceType": "Observation", "status": "final",
         "code": {"coding": [{"system": system, "code": code}]},
         "valueQuantity": {"value": value, "unit": unit}}
    if text:
        o["code"]["text"] = text
    if low is not None:
        o["referenceRange"] = [{"low": {"value": low, "unit": unit}, "high": {"value": high, "unit": unit}}]
    return o


class TerminologySteps(EngineTestCase):
    def setUp(self):
        super().setUp()
        self.eng = self.engine(start=False)
        rc, _, err = run_cli("terminology", "load", "loinc", os.path.join(DATA, "Loinc.csv"), "--data", self.eng.data)
        self.assertEqual(rc, 0, err)
        self.out = os.path.join(self.workdir, "out")

    def channel(self, cid, steps):
        os.makedirs(os.path.join(self.out, cid), exist_ok=True)
        with open(os.path.join(self.eng.channels, cid + ".json"), "w") as f:
            json.dump({"id": cid, "source": {"type": "http"}, "steps": steps,
                       "destinations": [{"name": "f", "type": "file-write", "dir": os.path.join(self.out, cid),
                                         "filename": "${id}.json"}]}, f)

    def send(self, cid, resource):
        st, body = self.eng.post_json("/channels/%s/in" % cid, resource)
        self.assertIn(st, (200, 201, 202), body)
        return body

    def written(self, cid, n, timeout=10):
        d = os.path.join(self.out, cid)
        deadline = time.monotonic() + timeout
        files = []
        while time.monotonic() < deadline:
            files = sorted(f for f in os.listdir(d) if not f.startswith(".")) if os.path.isdir(d) else []
            if len(files) >= n:
                break
            time.sleep(0.05)
        self.assertEqual(len(files), n, files)
        out = []
        for f in sorted(files, key=lambda x: int(x.split(".")[0])):
            with open(os.path.join(d, f)) as fh:
                out.append(json.load(fh))
        return out

    def tag(self, res):
        return [t["code"] for t in res.get("meta", {}).get("tag", []) if t["system"] == TAG]

    def test_loinc_standardize_applies_match_conversion_and_interpretation(self):
        self.channel("lab", [{"type": "loinc-standardize"}])
        self.eng.start()
        # A local code with a text that names the LOINC concept, in g/L: converted to mg/dL.
        self.send("lab", obs("GLU1", 1.26, "g/L", text="Glucose [Mass/volume] in Serum or Plasma",
                             low=0.7, high=1.0))
        # A Bundle: one result standardized, one that cannot be matched (left as received).
        self.send("lab", {"resourceType": "Bundle", "type": "transaction", "entry": [
            {"resource": obs("HGB", 13.5, "g/dL", text="Hemoglobin [Mass/volume] in Blood")},
            {"resource": obs("ZZZ", 1, "mg", text="Quantum flux of the left ear")},
            {"resource": {"resourceType": "Patient", "id": "p"}}]})
        a, b = self.written("lab", 2)
        self.assertEqual(a["code"]["coding"][0], {"system": "http://loinc.org", "code": "2345-7",
                                                   "display": "Glucose [Mass/volume] in Serum or Plasma"})
        self.assertEqual(a["code"]["coding"][1], {"system": "urn:lab-a:codes", "code": "GLU1"})
        self.assertEqual(a["valueQuantity"]["code"], "mg/dL")
        self.assertEqual(a["valueQuantity"]["system"], "http://unitsofmeasure.org")
        self.assertAlmostEqual(a["valueQuantity"]["value"], 126, delta=1e-9)
        self.assertEqual([e["valueQuantity"] for e in a["extension"] if e["url"] == ORIGINAL],
                         [{"value": 1.26, "unit": "g/L"}])
        self.assertEqual(a["interpretation"][0]["coding"][0]["code"], "H")
        self.assertEqual(self.tag(a), ["standardized"])
        hgb, unknown, patient = (e["resource"] for e in b["entry"])
        self.assertEqual(hgb["code"]["coding"][0]["code"], "718-7")
        # Already in the LOINC unit: the quantity gains its UCUM code, no "original" is kept.
        self.assertEqual(hgb["valueQuantity"], {"value": 13.5, "unit": "g/dL", "system": "http://unitsofmeasure.org",
                                                "code": "g/dL"})
        self.assertNotIn("extension", hgb)
        self.assertEqual(self.tag(hgb), ["standardized"])
        self.assertEqual(unknown["code"]["coding"], [{"system": "urn:lab-a:codes", "code": "ZZZ"}])
        self.assertEqual(unknown["valueQuantity"], {"value": 1, "unit": "mg"})
        self.assertEqual(self.tag(unknown), ["unmatched"])
        self.assertEqual(patient, {"resourceType": "Patient", "id": "p"})

    def test_implausible_value_goes_to_review_or_errors(self):
        self.channel("keep", [{"type": "loinc-standardize"}])
        self.channel("strict", [{"type": "loinc-standardize", "implausible": "error"}])
        self.eng.start()
        implausible = obs("2345-7", 9000, "mg/dL", system="http://loinc.org")
        self.send("keep", implausible)
        (kept,) = self.written("keep", 1)
        self.assertEqual(kept["valueQuantity"], {"value": 9000, "unit": "mg/dL"})
        self.assertEqual(self.tag(kept), ["review"])
        st, review = self.eng.get_json("/standardize/review")
        self.assertEqual(st, 200)
        self.assertIn("2345-7", [r.get("localCode") for r in review["items"]], review)
        self.send("strict", implausible)
        deadline = time.monotonic() + 10
        msgs = []
        while time.monotonic() < deadline:
            st, body = self.eng.get_json("/channels/strict/messages?status=errored")
            msgs = body.get("messages", []) if st == 200 else []
            if msgs:
                break
            time.sleep(0.05)
        self.assertEqual(len(msgs), 1, body)
        self.assertIn("implausible", json.dumps(msgs[0]))

    def test_sender_conceptmap_wins(self):
        self.channel("lab", [{"type": "loinc-standardize", "sender": "LAB-A"}])
        self.eng.start()
        cm = {"resourceType": "ConceptMap", "group": [{"source": "urn:lab-a:codes", "target": "http://loinc.org",
              "element": [{"code": "K", "target": [{"code": "2823-3", "equivalence": "equivalent"}]}]}]}
        st, _, _ = self.eng.request("PUT", "/standardize/conceptmap/LAB-A", body=cm)
        self.assertEqual(st, 200)
        self.send("lab", obs("K", 4.1, "mmol/L"))
        (r,) = self.written("lab", 1)
        self.assertEqual(r["code"]["coding"][0]["code"], "2823-3")
        self.assertNotIn("sender", r)

    def test_map_codes_add_replace_and_unmapped(self):
        path = os.path.join(self.workdir, "cm.json")
        with open(path, "w") as f:
            json.dump(CONCEPTMAP, f)
        self.channel("add", [{"type": "map-codes", "conceptmap": path}])
        self.channel("replace", [{"type": "map-codes", "conceptmap": CONCEPTMAP, "mode": "replace"}])
        self.channel("strict", [{"type": "map-codes", "conceptmap": CONCEPTMAP, "unmapped": "error"}])
        self.eng.start()
        o = obs("GLU", 90, "mg/dL")
        o["category"] = [{"coding": [{"system": "urn:lab-a:status", "code": "final", "display": "Final"}]}]
        self.send("add", o)
        self.send("replace", o)
        (added,) = self.written("add", 1)
        self.assertEqual(added["code"]["coding"], [{"system": "urn:lab-a:codes", "code": "GLU"},
                                                   {"system": "http://loinc.org", "code": "2345-7", "display": "Glucose"}])
        # group.unmapped mode provided: the same code in the target system.
        self.assertEqual(added["category"][0]["coding"][1],
                         {"system": "http://hl7.org/fhir/observation-status", "code": "final", "display": "Final"})
        (replaced,) = self.written("replace", 1)
        self.assertEqual(replaced["code"]["coding"], [{"system": "http://loinc.org", "code": "2345-7", "display": "Glucose"}])
        # XX maps only with equivalence "unmatched": no mapping, so "unmapped": "error" errors it.
        self.send("strict", obs("XX", 1, "mg"))
        self.send("strict", obs("GLU", 1, "mg"))
        (ok,) = self.written("strict", 1)
        self.assertEqual(ok["code"]["coding"][1]["code"], "2345-7")
        st, body = self.eng.get_json("/channels/strict/messages?status=errored")
        self.assertEqual((st, len(body["messages"])), (200, 1), body)
        self.assertIn("has no mapping", json.dumps(body["messages"][0]))

    def test_not_json_errors_the_message(self):
        self.channel("lab", [{"type": "loinc-standardize"}])
        self.eng.start()
        st, _, _ = self.eng.request("POST", "/channels/lab/in", body=b"MSH|^~\\&|A", headers={"Content-Type": "x-application/hl7-v2+er7"})
        self.assertIn(st, (200, 201, 202))
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            st, body = self.eng.get_json("/channels/lab/messages?status=errored")
            if body.get("messages"):
                break
            time.sleep(0.05)
        self.assertIn("not JSON", json.dumps(body["messages"][0]))

    def test_fhirpath_member_of_asks_the_terminology_store(self):
        for kind, path in (("snomed", "snomed"), ("fhir", "fhir-valuesets.json")):
            rc, _, err = run_cli("terminology", "load", kind, os.path.join(DATA, path), "--data", self.eng.data)
            self.assertEqual(rc, 0, err)
        os.makedirs(os.path.join(self.out, "dm"), exist_ok=True)
        with open(os.path.join(self.eng.channels, "dm.json"), "w") as f:
            json.dump({"id": "dm", "source": {"type": "http"},
                       "filter": {"any": [
                           {"fhirpath": "Condition.code.memberOf('http://snomed.info/sct?fhir_vs=isa/73211009')"},
                           {"fhirpath": "Observation.code.memberOf('urn:holovitals:test:vs:polygons')"}]},
                       "destinations": [{"name": "f", "type": "file-write", "dir": os.path.join(self.out, "dm"),
                                         "filename": "${id}.json"}]}, f)
        self.eng.start()
        sct = "http://snomed.info/sct"
        shapes = "urn:holovitals:test:shapes"
        for system, code in ((sct, "44054006"), (sct, "404684003"), ("http://loinc.org", "44054006")):
            self.send("dm", {"resourceType": "Condition", "code": {"coding": [{"system": system, "code": code}]}})
        for code in ("triangle", "square"):
            self.send("dm", {"resourceType": "Observation", "status": "final",
                             "code": {"coding": [{"system": shapes, "code": code}]}})
        got = self.written("dm", 2)
        self.assertEqual([r["code"]["coding"][0]["code"] for r in got], ["44054006", "triangle"])
        st, body = self.eng.get_json("/channels/dm/messages?status=filtered")
        self.assertEqual((st, len(body["messages"])), (200, 3), body)

    def test_bad_step_configuration_is_refused_with_its_position(self):
        bad = os.path.join(self.workdir, "bad.json")
        with open(bad, "w") as f:
            f.write('{"id": "b", "source": {"type": "http"},\n "steps": [{"type": "loinc-standardize",\n'
                    '   "min_confidence": 150}],\n "destinations": []}\n')
        rc, _, err = run_cli("channel", "validate", bad)
        self.assertNotEqual(rc, 0)
        self.assertIn("bad.json:3:", err)
        self.assertIn("min_confidence", err)
        with open(bad, "w") as f:
            f.write('{"id": "b", "source": {"type": "http"},\n "steps": [{"type": "map-codes",\n'
                    '   "conceptmap": {"resourceType": "Patient"}}],\n "destinations": []}\n')
        rc, _, err = run_cli("channel", "validate", bad)
        self.assertNotEqual(rc, 0)
        self.assertIn("bad.json:3:", err)
        self.assertIn("ConceptMap", err)


if __name__ == "__main__":
    main()
