"""test_mappings.py — HL7 v2 → FHIR through the real binary.

- the committed mapping files are what scripts/gen-mappings.py makes from the IG tables;
- `holovitals map v2-to-fhir` prints a Bundle, --explain the rows, exit 1 without PID-3;
- the ReportStream mapping inventory (one message per IG rule, with the FHIR ReportStream
  expects): the clinical values of each expected resource appear in ours, type by type
  (mapcompare.py); the pass count is printed and may not fall below the recorded one;
- the ReportStream messages and the IG's MDM_T02 sample: patients, identifiers, names and codes
  of the expected Bundles are in ours;
- round trip ORU^R01 → FHIR → ORU^R01 (mappings/fhir_to_v2.c) → FHIR keeps identifiers, names,
  codes, values, units and times;
- idempotence through a real engine: the same ADT posted twice and an A08 after the A01 leave
  one Patient with the updated data; an ORU resent leaves one Observation per result;
- the hl7v2-to-fhir channel step turns an HL7 v2 message into the Bundle a destination gets.
"""

import glob
import json
import os
import subprocess
import sys
import time
import urllib.parse

from harness import REFERENCE, SRCDIR, EngineTestCase, main, run_cli

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import mapcompare  # noqa: E402

# HV_REFERENCE_DIR overrides the CI layout (a worktree has no shared/ beside it).
REFERENCE = os.environ.get("HV_REFERENCE_DIR", REFERENCE)
INVENTORY = os.path.join(REFERENCE, "hl7v2", "reportstream-mapping-inventory")
# The pass count recorded in docs/mappings.md; a change that lowers it fails here.
INVENTORY_FLOOR = 122
# The partner override file that reproduces ReportStream's valid deviations from the IG
# (docs/mappings.md, "ReportStream mapping inventory"), and the pairs the inventory passes with it.
REPORTSTREAM_OVERRIDE = os.path.join(SRCDIR, "mappings", "partners", "reportstream.tsv")
INVENTORY_OVERRIDE_FLOOR = 130

A01 = ("MSH|^~\\&|SENDAPP|SENDFAC|RECAPP|RECFAC|20240101120000+0000||ADT^A01^ADT_A01|MSG001|P|2.5.1\r"
       "EVN|A01|20240101120000\r"
       "PID|1||12345^^^HOSP^MR||DOE^JANE^Q||19800102|F|||1 MAIN ST^^SPRINGFIELD^IL^62701\r"
       "PV1|1|I|WARD^101^A||||1234^SMITH^JOHN|||MED|||||||||V100^^^HOSP^VN\r")
A08 = A01.replace("ADT^A01^ADT_A01|MSG001", "ADT^A08^ADT_A01|MSG002").replace(
    "EVN|A01", "EVN|A08").replace("DOE^JANE^Q", "DOE^JANET^Q").replace("1 MAIN ST", "2 OAK AVE")
ORU = ("MSH|^~\\&|LAB|LABFAC|EHR|HOSP|20240102080000-0500||ORU^R01^ORU_R01|LAB777|P|2.5.1\r"
       "PID|1||12345^^^HOSP^MR||DOE^JANE||19800102|F\r"
       "ORC|RE|PLC100^EHR|FIL200^LAB\r"
       "OBR|1|PLC100^EHR|FIL200^LAB|24331-1^Lipid panel^LN|||20240102070000-0500|||||||||||||||"
       "20240102075900-0500|||F\r"
       "OBX|1|NM|2093-3^Cholesterol^LN||185.5|mg/dL^mg/dL^UCUM|<200|N|||F|||20240102075000-0500\r"
       "OBX|2|NM|2571-8^Triglyceride^LN||120|mg/dL^mg/dL^UCUM|<150|N|||F|||20240102075000-0500\r")


def map_text(test, text, *args):
    path = os.path.join(test.workdir, "m%d.hl7" % time.monotonic_ns())
    with open(path, "w") as f:
        f.write(text)
    return map_file(test, path, *args)


def map_file(test, path, *args):
    code, out, err = run_cli("map", "v2-to-fhir", *args, path)
    test.assertEqual(code, 0, err)
    return json.loads(out)


class MappingFiles(EngineTestCase):
    def test_committed_mapping_files_are_current(self):
        env = dict(os.environ, HV_REFERENCE_DIR=REFERENCE)
        p = subprocess.run([sys.executable, os.path.join(SRCDIR, "scripts", "gen-mappings.py"), "--check"],
                           capture_output=True, text=True, env=env)
        self.assertEqual(p.returncode, 0, p.stderr)

    def test_generator_reads_shared_predicates_and_constants_in_targets(self):
        import importlib.util
        spec = importlib.util.spec_from_file_location("genmappings",
                                                      os.path.join(SRCDIR, "scripts", "gen-mappings.py"))
        gen = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(gen)
        stats = {"cond_ok": 0, "cond_unread": 0}
        cases = [
            # One predicate shared by a list of fields (the IG's PID, SN, TQ1, PRT rows).
            ("IF PID-33 AND PID-34 VALUED", "PID", "@PID-33 valued @PID-34 valued and"),
            ("If SN.3 OR SN.4 VALUED", "SN", "@.3 valued @.4 valued or"),
            ("IF TQ1-7 AND TQ1-8 NOT VALUED", "TQ1", "@TQ1-7 valued not @TQ1-8 valued not and"),
            ("IF PRT-5 OR PRT-6 IS VALUED", "PRT", "@PRT-5 valued @PRT-6 valued or"),
            # Fields with predicates of their own are not a list.
            ("IF PV1-2 VALUED AND PV1-3 NOT VALUED", "PV1", "@PV1-2 valued @PV1-3 valued not and"),
            # A data-type component in a segment map is a component of the field the row maps.
            ('IF CX.5 IS "SN"', "IN1", "@.5 'SN eq"),
            ('IF XAD.7 IN ("B","BI","L")', "ROL", "@.7 'B 'BI 'L in3"),
            # What it cannot read stays "?" (never applied).
            ("IF CX.4 IN http://hl7.org/x.html", "CX", "?"),
        ]
        for text, ctx, want in cases:
            self.assertEqual(gen.compile_cond(text, ctx, stats), want, text)
        with open(os.path.join(SRCDIR, "mappings", "v2", "maps.tsv")) as f:
            rows = [line.rstrip("\n").split("\t") for line in f if line.startswith("map\t")]
        # 'status="finished"' in the IG's target column: the element and its constant.
        self.assertIn(["map", "PV1[Encounter]", "45", "45", "DTM", "@PV1-45 valued", "status", "code", "", "",
                       "finished"], rows)
        # 'assign: "SHIP"' in the column after the target: the assignment.
        self.assertTrue(any(r[1] == "SPM[Specimen]" and r[6] == "identifier[3].type.coding.code" and
                            r[10] == "SHIP" for r in rows))


class Cli(EngineTestCase):
    def test_map_prints_a_transaction_bundle(self):
        b = map_text(self, A01)
        self.assertEqual(b["resourceType"], "Bundle")
        self.assertEqual(b["type"], "transaction")
        urls = [e["request"]["url"] for e in b["entry"]]
        self.assertIn("Patient?identifier=HOSP|12345", urls)
        self.assertIn("Encounter?identifier=HOSP|V100", urls)

    def test_explain_lists_the_row_of_each_element(self):
        out = map_text(self, A01, "--explain")
        self.assertIn("bundle", out)
        self.assertEqual(out["outcome"]["resourceType"], "OperationOutcome")
        rows = {e["element"]: e["rule"] for e in out["explain"]}
        self.assertIn("Patient.name[1].family", rows)
        self.assertIn("PID-5", rows["Patient.name[1].family"])

    def test_several_files_give_one_line_each_and_a_failure_is_named(self):
        # Each file's Bundle on its own line, in the files' order, equal to the file mapped
        # alone; a file that cannot be mapped prints no line, is named with its reason on
        # standard error, and exits 1 after the others are mapped.
        paths = []
        for name, text in (("a01", A01), ("nopid3", A01.replace("12345^^^HOSP^MR", "")), ("oru", ORU)):
            paths.append(os.path.join(self.workdir, name + ".hl7"))
            with open(paths[-1], "w") as f:
                f.write(text)
        code, out, err = run_cli("map", "v2-to-fhir", *paths)
        self.assertEqual(code, 1, err)
        lines = out.splitlines()
        self.assertEqual(len(lines), 2, out)
        self.assertEqual([json.loads(l) for l in lines], [map_file(self, paths[0]), map_file(self, paths[2])])
        self.assertIn(paths[1] + ": ", err)
        self.assertIn("PID-3", err)
        self.assertNotIn(paths[0] + ": cannot", err)
        # Options may follow the files; the files are given together.
        code, out, err = run_cli("map", "v2-to-fhir", paths[0], paths[2], "--explain")
        self.assertEqual(code, 0, err)
        self.assertEqual([sorted(json.loads(l)) for l in out.splitlines()], [["bundle", "explain", "outcome"]] * 2)
        code, _, err = run_cli("map", "v2-to-fhir", paths[0], "--explain", paths[2])
        self.assertEqual(code, 2, err)
        code, _, err = run_cli("map", "fhir-to-v2", "--type", "ORU_R01", paths[0], paths[2])
        self.assertEqual(code, 2, err)
        self.assertIn("usage:", err)

    def test_message_without_patient_identifier_exits_1(self):
        path = os.path.join(self.workdir, "nopid3.hl7")
        with open(path, "w") as f:
            f.write(A01.replace("12345^^^HOSP^MR", ""))
        code, out, err = run_cli("map", "v2-to-fhir", path)
        self.assertEqual(code, 1)
        self.assertEqual(out, "")
        self.assertIn("PID-3", err)

    def test_fhir_to_v2_needs_a_type(self):
        path = os.path.join(self.workdir, "p.json")
        with open(path, "w") as f:
            f.write('{"resourceType":"Patient"}')
        code, _, err = run_cli("map", "fhir-to-v2", path)
        self.assertEqual(code, 2)
        self.assertIn("--type", err)

    def test_round_trip_v2_fhir_v2_fhir_keeps_clinical_values(self):
        """ORU^R01 → FHIR (this engine) → ORU^R01 (mappings/fhir_to_v2.c) → FHIR again: the
        patient identifier, name, birth date, result codes, values, units and times survive."""
        first = map_text(self, ORU)
        path = os.path.join(self.workdir, "first.json")
        with open(path, "w") as f:
            json.dump(first, f)
        code, v2, err = run_cli("map", "fhir-to-v2", "--type", "ORU_R01", path)
        self.assertEqual(code, 0, err)
        self.assertTrue(v2.startswith("MSH|"), v2[:80])
        second = map_text(self, v2.strip().replace("\n", "\r"))

        def values(b):
            rs = mapcompare.resources(b)
            pat = rs["Patient"][0]
            obs = sorted(((o["code"]["coding"][0]["code"], o["valueQuantity"]["value"],
                           o["valueQuantity"].get("unit"), o.get("effectiveDateTime"))
                          for o in rs["Observation"]), key=str)
            return (pat["identifier"][0]["value"], pat["name"][0]["family"], pat["birthDate"], obs)

        self.assertEqual(values(first), values(second))


class ReportStream(EngineTestCase):
    def test_mapping_inventory_clinical_values(self):
        self.assertTrue(os.path.isdir(INVENTORY), "reference folder missing: " + INVENTORY)
        self.assertTrue(os.path.exists(REPORTSTREAM_OVERRIDE), REPORTSTREAM_OVERRIDE)
        counts = {}
        bundles = []
        for label, args in (("IG tables", ()), ("with " + os.path.relpath(REPORTSTREAM_OVERRIDE, SRCDIR),
                                                  ("--override", REPORTSTREAM_OVERRIDE))):
            passed, total, failures = 0, 0, []
            pairs = [(hl7, hl7[:-4] + ".fhir")
                     for hl7 in sorted(glob.glob(os.path.join(INVENTORY, "**", "*.hl7"), recursive=True))
                     if os.path.exists(hl7[:-4] + ".fhir")]
            # One process maps them all: one Bundle a line, in the files' order.
            code, out, err = run_cli("map", "v2-to-fhir", *args, "--lenient", *[h for h, _ in pairs], timeout=300)
            self.assertEqual(code, 0, err[-3000:])
            lines = out.splitlines()
            self.assertEqual(len(lines), len(pairs))
            for (hl7, fhir), line in zip(pairs, lines):
                total += 1
                ours = json.loads(line)
                if args:
                    path = os.path.join(self.workdir, "override-%03d.json" % total)
                    with open(path, "w") as f:
                        json.dump(ours, f)
                    bundles.append(path)
                with open(fhir) as f:
                    missing = mapcompare.compare(json.load(f), ours)
                if missing:
                    failures.append((os.path.relpath(hl7, INVENTORY), missing[:3]))
                else:
                    passed += 1
            sys.stderr.write("\nmapping inventory (%s): %d of %d pass\n" % (label, passed, total))
            self.assertGreaterEqual(total, 140)
            counts[label] = (passed, failures)
        (passed, failures), (passed_override, failures_override) = counts.values()
        self.assertGreaterEqual(passed, INVENTORY_FLOOR, failures[:5])
        self.assertGreaterEqual(passed_override, INVENTORY_OVERRIDE_FLOOR, failures_override[:5])
        # The override reproduces ReportStream only where the result is valid FHIR: every Bundle
        # it gives passes the core validator with no error (exit 1 on any error).
        code, out, err = run_cli("fhir", "validate", *bundles)
        self.assertEqual(code, 0, (out + err)[-3000:])

    def test_messages_and_mdm_sample_keep_patients_identifiers_names_codes(self):
        pairs = [(p, p[:-4] + ".fhir") for p in
                 sorted(glob.glob(os.path.join(REFERENCE, "hl7v2", "reportstream-messages", "*.hl7")))]
        pairs.append((os.path.join(REFERENCE, "hl7-v2-to-fhir", "samples", "messages", "Message.hl7_MDM_T02.txt"),
                      os.path.join(REFERENCE, "hl7-v2-to-fhir", "samples", "fhir-bundles",
                                   "FHIR_bundle.hl7_MDM_T02.json")))
        self.assertGreaterEqual(len(pairs), 5)
        for hl7, fhir in pairs:
            # The IG's ".json" sample is FHIR XML: read it through `fhir convert`.
            code, text, err = run_cli("fhir", "convert", "--to", "json", fhir)
            self.assertEqual(code, 0, err)
            expected = json.loads(text)
            ours = map_file(self, hl7, "--lenient")
            missing = [m for m in mapcompare.compare(expected, ours)
                       if m[0] in ("Patient",) and m[1] in ("value", "family", "given", "birthDate", "gender")]
            self.assertEqual(missing, [], os.path.basename(hl7))
            if "MDM_T02" in hl7:
                # The IG's sample Bundle makes Observations of the OBX segments, its MDM_T02 table a
                # DocumentReference (which HoloVitals follows): the document must be there.
                docs = mapcompare.resources(ours).get("DocumentReference", [])
                self.assertEqual(len(docs), 1)
                self.assertTrue(docs[0].get("content"), docs[0])
                continue
            # Every coded result of the expected Observations is in ours.
            want = {c.get("code") for r in mapcompare.resources(expected).get("Observation", [])
                    for c in r.get("code", {}).get("coding", [])}
            have = {c.get("code") for r in mapcompare.resources(ours).get("Observation", [])
                    for c in r.get("code", {}).get("coding", [])}
            self.assertEqual(want - have, set(), os.path.basename(hl7))


class Idempotence(EngineTestCase):
    def post_bundle(self, eng, text):
        bundle = map_text(self, text)
        status, _, body = eng.request("POST", "/fhir", body=json.dumps(bundle).encode(),
                                      headers={"Content-Type": "application/fhir+json"})
        self.assertEqual(status, 200, body[:500])
        return json.loads(body)

    def search(self, eng, query):
        status, res = eng.get_json("/fhir/" + query)
        self.assertEqual(status, 200, res)
        return res

    def test_resend_and_a08_update_one_patient(self):
        eng = self.engine()
        self.post_bundle(eng, A01)
        self.post_bundle(eng, A01)
        q = "Patient?identifier=" + urllib.parse.quote("HOSP|12345")
        res = self.search(eng, q)
        self.assertEqual(len(res.get("entry", [])), 1, res)
        self.post_bundle(eng, A08)
        res = self.search(eng, q)
        self.assertEqual(len(res.get("entry", [])), 1, res)
        pat = res["entry"][0]["resource"]
        self.assertEqual(pat["name"][0]["given"][0], "JANET")
        self.assertEqual(pat["address"][0]["line"][0], "2 OAK AVE")
        enc = self.search(eng, "Encounter?identifier=" + urllib.parse.quote("HOSP|V100"))
        self.assertEqual(len(enc.get("entry", [])), 1, enc)

    def test_oru_resent_updates_the_same_results(self):
        eng = self.engine()
        self.post_bundle(eng, ORU)
        first = self.search(eng, "Observation?code=2093-3")
        self.post_bundle(eng, ORU.replace("185.5", "190.0"))
        res = self.search(eng, "Observation?code=2093-3")
        self.assertEqual(len(first.get("entry", [])), 1, first)
        self.assertEqual(len(res.get("entry", [])), 1, res)
        self.assertEqual(res["entry"][0]["resource"]["valueQuantity"]["value"], 190.0)
        self.assertEqual(res["entry"][0]["resource"]["id"], first["entry"][0]["resource"]["id"])


class ChannelStep(EngineTestCase):
    def test_step_output_is_the_bundle(self):
        chan = os.path.join(self.workdir, "v2fhir.json")
        with open(chan, "w") as f:
            json.dump({"id": "v2fhir", "source": {"type": "http"},
                       "steps": [{"type": "hl7v2-to-fhir"}],
                       "destinations": [{"name": "out", "type": "file-write",
                                         "dir": os.path.join(self.workdir, "out")}]}, f)
        msg = os.path.join(self.workdir, "a01.hl7")
        with open(msg, "w") as f:
            f.write(A01)
        code, out, err = run_cli("channel", "test", chan, msg)
        self.assertEqual(code, 0, err)
        self.assertIn("step 1 (hl7v2-to-fhir) output", out)
        self.assertIn('"resourceType":"Bundle"', out)
        self.assertIn("application/fhir+json", out)
        with open(chan, "w") as f:
            json.dump({"id": "v2fhir", "source": {"type": "http"},
                       "steps": [{"type": "hl7v2-to-fhir", "override": "/nonexistent.tsv"}],
                       "destinations": [{"name": "out", "type": "file-write",
                                         "dir": os.path.join(self.workdir, "out")}]}, f)
        code, out, err = run_cli("channel", "test", chan, msg)
        self.assertNotEqual(code, 0)
        self.assertIn("nonexistent.tsv", out + err)


OLD_A01 = A01.replace("12345^^^HOSP^MR", "999^^^HOSP^MR").replace("DOE^JANE^Q", "DOE^JANIE").replace(
    "MSG001", "MSG101").replace("V100^^^HOSP^VN", "V900^^^HOSP^VN")
OLD_ORU = ORU.replace("12345^^^HOSP^MR", "999^^^HOSP^MR").replace("LAB777", "LAB901")
A40 = ("MSH|^~\\&|SENDAPP|SENDFAC|RECAPP|RECFAC|20240103120000+0000||ADT^A40^ADT_A39|MSG040|P|2.5.1\r"
       "EVN|A40|20240103120000\r"
       "PID|1||12345^^^HOSP^MR||DOE^JANE^Q||19800102|F\r"
       "MRG|999^^^HOSP^MR\r")


class Merge(EngineTestCase):
    """A40 through a real engine: hl7v2-to-fhir → fhir-store. The merged Patient is kept,
    inactive, with link replaced-by; every resource that referred to it (Encounter,
    DiagnosticReport, Observations, ServiceRequest …) now refers to the survivor."""

    def deliver(self, eng, text, want_sent):
        status, _, body = eng.request("POST", "/channels/v2store/in", body=text.encode(),
                                      headers={"Content-Type": "x-application/hl7-v2+er7"})
        self.assertEqual(status, 201, body)
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline:
            _, ch = eng.get_json("/channels/v2store")
            if ch["statistics"]["sent"] >= want_sent:
                return
            time.sleep(0.1)
        _, msgs = eng.get_json("/channels/v2store/messages")
        self.fail("not delivered: %s" % json.dumps(msgs)[:2000])

    def search(self, eng, query):
        status, res = eng.get_json("/fhir/" + query)
        self.assertEqual(status, 200, res)
        return [e["resource"] for e in res.get("entry", [])]

    def test_a40_moves_references_to_the_surviving_patient(self):
        eng = self.engine(start=False)
        with open(os.path.join(eng.channels, "v2store.json"), "w") as f:
            json.dump({"id": "v2store", "source": {"type": "http"},
                       "steps": [{"type": "hl7v2-to-fhir"}],
                       "destinations": [{"name": "store", "type": "fhir-store"}]}, f)
        eng.start()
        self.deliver(eng, OLD_A01, 1)
        self.deliver(eng, OLD_ORU, 2)
        self.deliver(eng, A01, 3)
        old = self.search(eng, "Patient?identifier=" + urllib.parse.quote("HOSP|999"))
        new = self.search(eng, "Patient?identifier=" + urllib.parse.quote("HOSP|12345"))
        self.assertEqual((len(old), len(new)), (1, 1))
        old_id, new_id = old[0]["id"], new[0]["id"]
        before = self.search(eng, "Observation?subject=Patient/" + old_id)
        self.assertEqual(len(before), 2)
        self.deliver(eng, A40, 4)
        # The old record: inactive, replaced by the survivor; the survivor replaces it.
        old = self.search(eng, "Patient?identifier=" + urllib.parse.quote("HOSP|999"))[0]
        self.assertEqual(old["id"], old_id)
        self.assertFalse(old["active"])
        self.assertEqual([(l["type"], l["other"]["reference"]) for l in old["link"]],
                         [("replaced-by", "Patient/" + new_id)])
        new = self.search(eng, "Patient?identifier=" + urllib.parse.quote("HOSP|12345"))[0]
        self.assertEqual([(l["type"], l["other"]["reference"]) for l in new["link"]],
                         [("replaces", "Patient/" + old_id)])
        # Nothing but the link refers to the old Patient; the results, report, order and visit
        # refer to the survivor (a new version each, in the same transaction as the merge).
        for q in ("Observation?subject=Patient/%s", "DiagnosticReport?subject=Patient/%s",
                  "ServiceRequest?subject=Patient/%s", "Encounter?subject=Patient/%s"):
            self.assertEqual(self.search(eng, q % old_id), [], q)
        moved = self.search(eng, "Observation?subject=Patient/" + new_id)
        self.assertEqual(sorted(o["code"]["coding"][0]["code"] for o in moved), ["2093-3", "2571-8"])
        self.assertTrue(all(o["meta"]["versionId"] == "2" for o in moved), [o["meta"] for o in moved])
        self.assertEqual(len(self.search(eng, "Encounter?subject=Patient/" + new_id)), 2)
        self.assertEqual(len(self.search(eng, "DiagnosticReport?subject=Patient/" + new_id)), 1)


class StepOutcome(EngineTestCase):
    """The hl7v2-to-fhir step's OperationOutcome is stored with the channel message; a message
    whose patient cannot be identified is errored and nothing of it reaches the store."""

    def test_outcome_is_stored_with_the_message_and_no_pid3_is_errored(self):
        eng = self.engine(start=False)
        with open(os.path.join(eng.channels, "v2out.json"), "w") as f:
            json.dump({"id": "v2out", "source": {"type": "http"},
                       "steps": [{"type": "hl7v2-to-fhir"}],
                       "destinations": [{"name": "store", "type": "fhir-store"}]}, f)
        eng.start()
        # OBX-11 "Q" is not in the IG's result-status concept map; XYZ is a segment no table maps.
        odd = ORU.replace("|N|||F|||20240102075000-0500\rOBX|2", "|N|||Q|||20240102075000-0500\rOBX|2") + "XYZ|1\r"
        for text in (odd, A01.replace("12345^^^HOSP^MR", "")):
            status, _, body = eng.request("POST", "/channels/v2out/in", body=text.encode(),
                                          headers={"Content-Type": "x-application/hl7-v2+er7"})
            self.assertEqual(status, 201, body)
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline:
            _, lst = eng.get_json("/channels/v2out/messages")
            if [m["status"] for m in lst["messages"]] == ["errored", "sent"]:
                break
            time.sleep(0.1)
        self.assertEqual([m["status"] for m in lst["messages"]], ["errored", "sent"], lst)
        bad, good = lst["messages"]
        # The list carries the outcome of each step: [{"step", "type", "outcome"}].
        self.assertEqual([(o["step"], o["type"]) for o in good["outcome"]], [(1, "hl7v2-to-fhir")])
        issues = good["outcome"][0]["outcome"]["issue"]
        text = json.dumps(issues)
        self.assertIn("code 'Q' has no mapping", text)
        self.assertIn("segment XYZ is not mapped", text)
        self.assertTrue(all(i["severity"] in ("information", "warning") for i in issues), issues)
        status, one = eng.get_json("/channels/v2out/messages/" + good["id"])
        self.assertEqual(status, 200)
        self.assertEqual(one["outcome"], good["outcome"])
        # The message without PID-3: errored at the step, naming PID-3; no Patient was stored.
        self.assertIn("PID-3", bad["error"])
        self.assertIsNone(bad["outcome"])
        status, res = eng.get_json("/fhir/Patient")
        self.assertEqual(status, 200)
        self.assertEqual([r["resource"]["identifier"][0]["value"] for r in res.get("entry", [])], ["12345"])
        # The result with status Q is stored without a status FHIR does not have: unknown.
        status, res = eng.get_json("/fhir/Observation?code=2093-3")
        self.assertEqual([r["resource"]["status"] for r in res["entry"]], ["unknown"])


if __name__ == "__main__":
    main()
