"""test_ccda.py — C-CDA → FHIR against the expected FHIR of the reference corpus, and
FHIR → HL7 v2 on what C-CDA became, through the test-only driver test/integration/map_driver
(the `holovitals map` commands belong to the mappings module).

Comparison by content (the oracle is Microsoft FHIR-Converter's output, whose ids, references
and template quirks are not ours): for each expected resource, its clinical facts — identifiers
(by value), names (family, given), codes with their systems, numeric values, units, dates and
statuses — must appear among the facts of our resources of the same type (Medication and
MedicationStatement/Request/Administration count as one type, since we inline the medication
code). Code systems written as urn:oid:<oid> compare equal to their FHIR URI. The last entry of
each expected Bundle (a DocumentReference holding the source document, which FHIR-Converter's
own test deletes) is left out. The pass counts are printed and recorded in docs/mappings.md.
"""

import collections
import json
import os
import subprocess
import unittest

from harness import BUILDDIR, REFERENCE, main

REF = os.path.join(os.environ.get("HV_REFERENCE_DIR", REFERENCE), "ccda", "fhir-converter")
DRIVER = os.path.join(BUILDDIR, "test", "integration", "map_driver")

DATE_KEYS = {"date", "birthDate", "start", "end", "onset", "issued", "recordedDate", "time",
             "authoredOn"}
GROUP = {"Medication": "Medication*", "MedicationStatement": "Medication*",
         "MedicationRequest": "Medication*", "MedicationAdministration": "Medication*"}
OIDS = {
    "2.16.840.1.113883.6.1": "http://loinc.org",
    "2.16.840.1.113883.6.96": "http://snomed.info/sct",
    "2.16.840.1.113883.6.88": "http://www.nlm.nih.gov/research/umls/rxnorm",
    "2.16.840.1.113883.12.292": "http://hl7.org/fhir/sid/cvx",
    "2.16.840.1.113883.6.59": "http://hl7.org/fhir/sid/cvx",
    "2.16.840.1.113883.6.90": "http://hl7.org/fhir/sid/icd-10-cm",
    "2.16.840.1.113883.6.69": "http://hl7.org/fhir/sid/ndc",
    "2.16.840.1.113883.6.12": "http://www.ama-assn.org/go/cpt",
    "2.16.840.1.113883.5.4": "http://terminology.hl7.org/CodeSystem/v3-ActCode",
    "2.16.840.1.113883.5.111": "http://terminology.hl7.org/CodeSystem/v3-RoleCode",
    "2.16.840.1.113883.3.26.1.1": "http://ncimeta.nci.nih.gov",
    "2.16.840.1.113883.5.83": "http://terminology.hl7.org/CodeSystem/v3-ObservationInterpretation",
    "2.16.840.1.113883.5.1": "http://terminology.hl7.org/CodeSystem/v3-AdministrativeGender",
    "2.16.840.1.113883.5.2": "http://terminology.hl7.org/CodeSystem/v3-MaritalStatus",
    "2.16.840.1.113883.5.112": "http://terminology.hl7.org/CodeSystem/v3-RouteOfAdministration",
    "2.16.840.1.113883.6.8": "http://unitsofmeasure.org",
    "2.16.840.1.113883.6.101": "http://nucc.org/provider-taxonomy",
}


def system(s):
    if s and s.startswith("urn:oid:") and s[8:] in OIDS:
        return OIDS[s[8:]]
    return s


def ident(v):
    for p in ("urn:oid:", "urn:uuid:"):
        if v.startswith(p):
            v = v[len(p):]
    return v.lower()


def facts(o, key=None, out=None):
    """The clinical facts of a resource, as a set of tuples."""
    if out is None:
        out = set()
    if isinstance(o, dict):
        if isinstance(o.get("code"), str) and "system" in o:
            out.add(("code", system(o["system"]), o["code"]))
        if key == "identifier" and "value" in o:
            out.add(("id", ident(o["value"])))
        if "family" in o:
            out.add(("family", o["family"]))
        if isinstance(o.get("given"), list):
            for g in o["given"]:
                out.add(("given", g))
        v = o.get("value")
        if isinstance(v, (int, float)) and not isinstance(v, bool):
            out.add(("value", float(v)))
        if key and key.startswith("value") and "unit" in o:
            out.add(("unit", o["unit"]))
        for k, v in o.items():
            if k in ("reference", "id", "text", "div", "display", "fullUrl", "request", "meta", "data"):
                continue
            if isinstance(v, str):
                if k in DATE_KEYS or k.endswith("DateTime"):
                    out.add(("date", v))
                elif k in ("status", "gender"):
                    out.add((k, v))
                elif k == "valueString":
                    out.add(("string", v))
            else:
                facts(v, k, out)
    elif isinstance(o, list):
        for x in o:
            facts(x, key, out)
    return out


def map_ccda(path):
    p = subprocess.run([DRIVER, "ccda-to-fhir", path], capture_output=True, text=True, timeout=60)
    if p.returncode != 0:
        raise AssertionError("%s: %s" % (path, p.stderr))
    return json.loads(p.stdout)


class CcdaReference(unittest.TestCase):
    def test_expected_fhir_matches_by_content(self):
        self.assertTrue(os.path.isdir(REF), "reference corpus missing: " + REF)
        pairs = sorted(f for f in os.listdir(REF) if f.endswith(".ccda"))
        self.assertGreaterEqual(len(pairs), 9)
        tot_f = ok_f = tot_r = ok_r = 0
        for fn in pairs:
            with open(os.path.join(REF, "expected", fn[:-5] + "-expected.json")) as f:
                exp = json.load(f)
            ours = map_ccda(os.path.join(REF, fn))["bundle"]
            have = collections.defaultdict(set)
            for e in ours["entry"]:
                r = e["resource"]
                have[GROUP.get(r["resourceType"], r["resourceType"])] |= facts(r)
            nf = df = nr = dr = 0
            for e in exp["entry"][:-1]:
                r = e["resource"]
                fs = facts(r)
                miss = [f for f in fs if f not in have[GROUP.get(r["resourceType"], r["resourceType"])]]
                nf += len(fs)
                df += len(fs) - len(miss)
                nr += 1
                dr += not miss
            print("%s: facts %d/%d, resources %d/%d" % (fn, df, nf, dr, nr))
            tot_f, ok_f, tot_r, ok_r = tot_f + nf, ok_f + df, tot_r + nr, ok_r + dr
        print("C-CDA reference: facts %d/%d (%.1f%%), resources fully matched %d/%d"
              % (ok_f, tot_f, 100.0 * ok_f / tot_f, ok_r, tot_r))
        # A regression guard at the level measured when this test was written (docs/mappings.md).
        self.assertGreaterEqual(ok_f, 837)
        self.assertGreaterEqual(ok_r, 155)

    def test_documents_become_oru_that_keeps_results(self):
        out = map_ccda(os.path.join(REF, "Consultation_Note.ccda"))
        path = os.path.join(BUILDDIR, "test", "integration", "ccda-consult.json")
        with open(path, "w") as f:
            json.dump(out["bundle"], f)
        try:
            p = subprocess.run([DRIVER, "fhir-to-v2", "ORU_R01", path], capture_output=True,
                               timeout=60)
        finally:
            os.unlink(path)
        self.assertEqual(p.returncode, 0, p.stderr)
        segs = p.stdout.decode().split("\r")
        self.assertTrue(segs[0].startswith("MSH|^~\\&|"))
        self.assertIn("ORU^R01^ORU_R01", segs[0])
        obx = [s for s in segs if s.startswith("OBX|")]
        self.assertIn("718-7^Hemoglobin^LN", "\n".join(obx))
        hgb = [s for s in obx if "|718-7^" in s][0].split("|")
        self.assertEqual((hgb[2], hgb[5], hgb[6].split("^")[0]), ("NM", "13.2", "g/dL"))

    def test_malformed_document_fails_with_its_line(self):
        path = os.path.join(BUILDDIR, "test", "integration", "ccda-bad.xml")
        with open(path, "w") as f:
            f.write('<ClinicalDocument xmlns="urn:hl7-org:v3">\n<id>\n</ClinicalDocument>\n')
        try:
            p = subprocess.run([DRIVER, "ccda-to-fhir", path], capture_output=True, text=True,
                               timeout=60)
        finally:
            os.unlink(path)
        self.assertEqual(p.returncode, 1)
        self.assertTrue(p.stderr.startswith("3:"), p.stderr)  # line:column: message


if __name__ == "__main__":
    main()
