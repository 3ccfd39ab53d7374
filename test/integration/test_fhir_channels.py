#!/usr/bin/env python3
"""test_fhir_channels.py — the FHIR store in channels (issue 7, fhir/channel_store.c).

Drives a real `holovitals serve` (harness.py) with channel files: the `fhir-store`
destination writes messages into the store in-process (resources, conditional updates
on the identifier, transaction Bundles), records the outcome on the message, dead-letters
client errors (400 unreadable, 422 invalid) and stores each message exactly once even
across a kill -9 (acknowledged = stored, redelivery writes nothing twice); the `fhir`
source turns store changes matching search criteria into channel messages. Runs on SQLite
and, when HV_TEST_PG_URL names a PostgreSQL server (scripts/pg.sh), again on PostgreSQL.
"""

import json
import os
import sqlite3
import subprocess
import time
import urllib.parse

from harness import EngineTestCase, main, run_cli

PG_URL = os.environ.get("HV_TEST_PG_URL")
FJ = "application/fhir+json"

STORE = {"id": "st", "source": {"type": "http"},
         "destinations": [{"name": "store", "type": "fhir-store", "conditional": "identifier",
                           "queue": {"retry_interval_ms": 100}}]}
PLAIN = {"id": "plain", "source": {"type": "http"},
         "destinations": [{"name": "store", "type": "fhir-store"}]}


def private_db(url, name):
    base, _, _ = url.rpartition("/")
    for sql in ("DROP DATABASE IF EXISTS %s" % name, "CREATE DATABASE %s" % name):
        subprocess.run(["psql", "-q", "-X", url, "-c", sql], check=True, capture_output=True, timeout=60)
    return base + "/" + name


def obs(i, code="8867-4"):
    return {"resourceType": "Observation", "status": "final",
            "identifier": [{"system": "urn:test:msg", "value": "m%d" % i}],
            "code": {"coding": [{"system": "http://loinc.org", "code": code}]},
            "valueQuantity": {"value": 60 + i, "unit": "/min", "system": "http://unitsofmeasure.org",
                              "code": "/min"}}


class FhirChannelTests(EngineTestCase):
    PG = False

    def start(self, channels, start=True):
        args = []
        if self.PG:
            self.db_name = "hv_test_fhir_ch_%d_%d" % (os.getpid(), int(time.monotonic() * 1000) % 100000)
            args = ["--db", private_db(PG_URL, self.db_name)]
        eng = self.engine(start=False, args=args)
        for ch in channels:
            with open(os.path.join(eng.channels, ch["id"] + ".json"), "w") as f:
                json.dump(ch, f)
        if start:
            eng.start()
        return eng

    def tearDown(self):
        super().tearDown()
        if self.PG and getattr(self, "db_name", None):
            subprocess.run(["psql", "-q", "-X", PG_URL, "-c", "DROP DATABASE IF EXISTS %s" % self.db_name],
                           capture_output=True, timeout=60)

    def send(self, eng, channel, body, ctype=FJ):
        data = body if isinstance(body, (bytes, str)) else json.dumps(body)
        status, _, out = eng.request("POST", "/channels/%s/in" % channel, body=data,
                                     headers={"Content-Type": ctype})
        self.assertEqual(status, 201, out)
        return json.loads(out)["id"]

    def message(self, eng, channel, mid):
        status, m = eng.get_json("/channels/%s/messages/%s" % (channel, mid))
        self.assertEqual(status, 200, m)
        return m

    def wait_final(self, eng, channel, mids, timeout=20):
        """Waits until every message's destination is sent or dead; returns the messages."""
        deadline = time.monotonic() + timeout
        while True:
            ms = [self.message(eng, channel, mid) for mid in mids]
            if all(d["state"] in ("sent", "dead") for m in ms for d in m["destinations"]):
                return ms
            self.assertLess(time.monotonic(), deadline, [m["destinations"] for m in ms])
            time.sleep(0.05)

    def search(self, eng, query):
        status, b = eng.get_json("/fhir/" + query)
        self.assertEqual(status, 200, b)
        return [e["resource"] for e in b.get("entry", []) if e.get("search", {}).get("mode", "match") == "match"]

    def test_destination_writes_resources_and_records_each_outcome(self):
        eng = self.start([STORE])
        p1 = {"resourceType": "Patient", "identifier": [{"system": "urn:mrn", "value": "M|1 &x"}],
              "name": [{"family": "First"}]}
        p2 = dict(p1, name=[{"family": "Second"}])
        m1 = self.send(eng, "st", p1)
        m2 = self.send(eng, "st", p2)
        bad = self.send(eng, "st", {"resourceType": "Observation", "status": "bogus"})
        garbage = self.send(eng, "st", b"this is not FHIR", ctype="text/plain")
        tx = self.send(eng, "st", {"resourceType": "Bundle", "type": "transaction", "entry": [
            {"fullUrl": "urn:uuid:9a0b0c0d-0000-4000-8000-000000000001",
             "resource": {"resourceType": "Patient", "name": [{"family": "Tx"}]},
             "request": {"method": "POST", "url": "Patient"}},
            {"resource": dict(obs(1), subject={"reference": "urn:uuid:9a0b0c0d-0000-4000-8000-000000000001"}),
             "request": {"method": "POST", "url": "Observation"}}]})
        ms = dict(zip(["m1", "m2", "bad", "garbage", "tx"],
                      self.wait_final(eng, "st", [m1, m2, bad, garbage, tx])))
        # The conditional update on the identifier: one Patient, its second version.
        pats = self.search(eng, "Patient?identifier=" + urllib.parse.quote("urn:mrn|M\\|1 &x"))
        self.assertEqual(len(pats), 1, pats)
        self.assertEqual((pats[0]["meta"]["versionId"], pats[0]["name"][0]["family"]), ("2", "Second"))
        d1 = ms["m1"]["destinations"][0]
        self.assertEqual(d1["state"], "sent")
        self.assertEqual(d1["last_error"], "201 Patient/%s/_history/1" % pats[0]["id"])
        self.assertEqual(ms["m2"]["destinations"][0]["last_error"], "200 Patient/%s/_history/2" % pats[0]["id"])
        # Client errors are permanent: dead at the first attempt, with the reason and no content.
        for key, prefix in (("bad", "422 "), ("garbage", "400 not a FHIR resource")):
            d = ms[key]["destinations"][0]
            self.assertEqual((d["state"], d["attempts"]), ("dead", 1), d)
            self.assertTrue(d["last_error"].startswith(prefix), d)
        self.assertIn("Observation.status", ms["bad"]["destinations"][0]["last_error"])
        self.assertEqual(self.search(eng, "Observation?status=bogus"), [])
        # The transaction: both written, the reference resolved to the new Patient.
        self.assertEqual(ms["tx"]["destinations"][0]["last_error"], "200 transaction: 2 entries, 0 failed")
        o = self.search(eng, "Observation?identifier=urn:test:msg|m1")
        self.assertEqual(len(o), 1)
        tx_pat = self.search(eng, "Patient?family=Tx")
        self.assertEqual(o[0]["subject"]["reference"], "Patient/" + tx_pat[0]["id"])
        # Reprocessing a stored message writes nothing twice.
        status, _ = eng.post_json("/channels/st/messages/%s/reprocess" % tx, {})
        self.assertIn(status, (200, 202))
        time.sleep(0.5)
        self.wait_final(eng, "st", [tx])
        self.assertEqual(len(self.search(eng, "Patient?family=Tx")), 1)
        self.assertEqual(len(self.search(eng, "Observation?identifier=urn:test:msg|m1")), 1)
        self.assertEqual(eng.stop(), 0, eng.stderr()[-3000:])

    def test_destination_conflict_is_permanent_and_transaction_rolls_back(self):
        eng = self.start([PLAIN])
        status, _, _ = eng.request("PUT", "/fhir/Patient/p1", body=json.dumps(
            {"resourceType": "Patient", "id": "p1", "active": True}), headers={"Content-Type": FJ})
        self.assertEqual(status, 201)
        # A transaction whose second entry fails (If-Match on the wrong version) writes nothing.
        tx = self.send(eng, "plain", {"resourceType": "Bundle", "type": "transaction", "entry": [
            {"resource": obs(7), "request": {"method": "POST", "url": "Observation"}},
            {"resource": {"resourceType": "Patient", "id": "p1", "active": False},
             "request": {"method": "PUT", "url": "Patient/p1", "ifMatch": "W/\"5\""}}]})
        m, = self.wait_final(eng, "plain", [tx])
        d = m["destinations"][0]
        self.assertEqual((d["state"], d["attempts"]), ("dead", 1), d)
        self.assertTrue(d["last_error"].startswith("412 "), d)
        self.assertEqual(self.search(eng, "Observation?identifier=urn:test:msg|m7"), [])
        status, p = eng.get_json("/fhir/Patient/p1")
        self.assertEqual((p["meta"]["versionId"], p["active"]), ("1", True))
        # The same resource twice with its own id: create, then update (create-on-update).
        a = self.send(eng, "plain", {"resourceType": "Patient", "id": "p2", "active": True})
        b = self.send(eng, "plain", {"resourceType": "Patient", "id": "p2", "active": False})
        ma, mb = self.wait_final(eng, "plain", [a, b])
        self.assertEqual(ma["destinations"][0]["last_error"], "201 Patient/p2/_history/1")
        self.assertEqual(mb["destinations"][0]["last_error"], "200 Patient/p2/_history/2")
        self.assertEqual(eng.stop(), 0, eng.stderr()[-3000:])

    def test_source_hands_matching_changes_to_the_channel_in_order(self):
        out = os.path.join(self.workdir, "out")
        sub = {"id": "sub", "source": {"type": "fhir", "criteria": "Observation?code=http://loinc.org|8867-4"},
               "destinations": [{"name": "f", "type": "file-write", "dir": out}]}
        dels = {"id": "dels", "source": {"type": "fhir", "criteria": "Patient", "on": ["delete"]},
                "destinations": [{"name": "f", "type": "file-write", "dir": out + "-del"}]}
        eng = self.start([sub, dels])
        ids = []
        for i in range(6):
            body = obs(i, "8867-4" if i % 2 == 0 else "8480-6")
            status, h, data = eng.request("POST", "/fhir/Observation", body=json.dumps(body),
                                          headers={"Content-Type": FJ})
            self.assertEqual(status, 201, data)
            ids.append(json.loads(data)["id"])
        # An update that stops matching does not enter; one that matches does.
        upd = dict(obs(1, "8867-4"), id=ids[1])
        status, _, _ = eng.request("PUT", "/fhir/Observation/" + ids[1], body=json.dumps(upd),
                                   headers={"Content-Type": FJ})
        self.assertEqual(status, 200)
        eng.request("PUT", "/fhir/Patient/gone", body=json.dumps({"resourceType": "Patient", "id": "gone"}),
                    headers={"Content-Type": FJ})
        self.assertEqual(eng.request("DELETE", "/fhir/Patient/gone")[0], 204)
        deadline = time.monotonic() + 15
        while True:
            _, lst = eng.get_json("/channels/sub/messages")
            msgs = list(reversed(lst["messages"]))
            if len(msgs) >= 4 and all(m["status"] == "sent" for m in msgs):
                break
            self.assertLess(time.monotonic(), deadline, lst)
            time.sleep(0.05)
        time.sleep(0.3)
        _, lst = eng.get_json("/channels/sub/messages")
        self.assertEqual(len(lst["messages"]), 4)
        got = []
        for m in reversed(lst["messages"]):
            full = self.message(eng, "sub", m["id"])
            self.assertEqual(full["content_type"], "application/fhir+json")
            res = json.loads(full["content"])
            got.append((res["id"], res["meta"]["versionId"]))
        self.assertEqual(got, [(ids[0], "1"), (ids[2], "1"), (ids[4], "1"), (ids[1], "2")])
        _, dl = eng.get_json("/channels/dels/messages")
        self.assertEqual(len(dl["messages"]), 1)
        full = self.message(eng, "dels", dl["messages"][0]["id"])
        self.assertEqual(json.loads(full["content"]),
                         {"resourceType": "Patient", "id": "gone", "meta": {"versionId": "2"}})
        self.assertEqual(eng.stop(), 0, eng.stderr()[-3000:])

    def test_channel_files_with_bad_fhir_keys_are_refused(self):
        cases = [
            ({"id": "x", "source": {"type": "fhir", "criteria": "Observation?nonsense=1"}}, "nonsense"),
            ({"id": "x", "source": {"type": "fhir", "criteria": "Nothing"}}, "not a FHIR R4 resource type"),
            ({"id": "x", "source": {"type": "fhir"}}, "criteria"),
            ({"id": "x", "source": {"type": "fhir", "criteria": "Patient", "on": ["created"]}}, "\"on\""),
            ({"id": "x", "source": {"type": "http"},
              "destinations": [{"name": "s", "type": "fhir-store", "conditional": "name"}]}, "identifier"),
            ({"id": "x", "source": {"type": "http"},
              "destinations": [{"name": "s", "type": "fhir-store", "bogus": 1}]}, "unknown key"),
        ]
        for i, (conf, want) in enumerate(cases):
            path = os.path.join(self.workdir, "c%d.json" % i)
            with open(path, "w") as f:
                json.dump(conf, f)
            code, out, err = run_cli("channel", "validate", path)
            self.assertNotEqual(code, 0, (conf, out))
            self.assertIn(want, out + err, conf)
        path = os.path.join(self.workdir, "good.json")
        with open(path, "w") as f:
            json.dump(STORE, f)
        code, out, err = run_cli("channel", "validate", path)
        self.assertEqual(code, 0, out + err)

    def test_kill9_acknowledged_is_stored_and_nothing_twice(self):
        eng = self.start([PLAIN])
        n = 60
        # The messages are stored (acknowledged) first while the destination is paused,
        # then it resumes and the process dies while deliveries are in flight.
        status, _ = eng.post_json("/channels/plain/destinations/store/pause", {})
        self.assertEqual(status, 200)
        mids = [self.send(eng, "plain", obs(i)) for i in range(n)]
        eng.post_json("/channels/plain/destinations/store/resume", {})
        sent = []
        for _ in range(400):
            _, lst = eng.get_json("/channels/plain/messages?status=sent")
            sent = [m["id"] for m in lst["messages"]]
            if len(sent) >= 3:
                break
            time.sleep(0.002)
        eng.kill9()
        self.assertLess(len(sent), n, "every delivery finished before the kill: the test proves nothing")
        if not self.PG:
            # Every message the channel recorded as sent is in the store on disk.
            db = sqlite3.connect(os.path.join(eng.data, "fhir.db"))
            stored = set()
            for (text,) in db.execute("SELECT json FROM resources WHERE type = 'Observation' AND json IS NOT NULL"):
                stored.add(json.loads(text)["identifier"][0]["value"])
            db.close()
            for mid in sent:
                self.assertIn("m%d" % mids.index(mid), stored, "message %s was acknowledged but not stored" % mid)
        eng.start(fixed_ports=True)
        self.wait_final(eng, "plain", mids, timeout=30)
        counts = {}
        status, b = eng.get_json("/fhir/Observation?_count=200")
        for e in b.get("entry", []):
            v = e["resource"]["identifier"][0]["value"]
            counts[v] = counts.get(v, 0) + 1
        self.assertEqual(counts, {"m%d" % i: 1 for i in range(n)})
        self.assertEqual(eng.stop(), 0, eng.stderr()[-3000:])

    def test_source_kill9_every_acknowledged_write_is_exactly_one_message_after_restart(self):
        # The fhir source is exactly once: each acknowledged write (201) of a matching
        # resource is one channel message after a kill -9 at any moment and a restart —
        # none lost between the store's commit and the channel's store, none twice.
        sub = {"id": "sub", "source": {"type": "fhir", "criteria": "Observation"},
               "destinations": [{"name": "hold", "type": "http-send", "url": "http://127.0.0.1:9/x",
                                 "queue": {"retry_interval_ms": 60000}}]}
        eng = self.start([sub])
        acked = []
        import threading
        stop = threading.Event()
        lock = threading.Lock()

        def writer(k):
            i = 0
            while not stop.is_set():
                try:
                    status, _, data = eng.request("POST", "/fhir/Observation", body=json.dumps(obs(k * 100000 + i)),
                                                  headers={"Content-Type": FJ}, timeout=5)
                except OSError:
                    return
                if status == 201:
                    with lock:
                        acked.append(json.loads(data)["id"])
                i += 1

        threads = [threading.Thread(target=writer, args=(k,)) for k in range(4)]
        for t in threads:
            t.start()
        # 150 acknowledged writes before the kill, however slow the machine (a sanitizer build
        # under load writes a few dozen a second).
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            with lock:
                if len(acked) >= 150:
                    break
            time.sleep(0.005)
        eng.kill9()
        stop.set()
        for t in threads:
            t.join(10)
        self.assertGreaterEqual(len(acked), 150, "too few writes before the kill")
        eng.start(fixed_ports=True)
        want = set(acked)
        deadline = time.monotonic() + 30
        while True:
            got, cursor = [], None
            while True:
                path = "/channels/sub/messages?limit=1000" + ("&cursor=" + cursor if cursor else "")
                _, lst = eng.get_json(path)
                got += [m["source_key"] for m in lst["messages"]]
                cursor = lst["next"]
                if cursor is None:
                    break
            ids = [k.split("/")[1] for k in got]
            if want <= set(ids) or time.monotonic() > deadline:
                break
            time.sleep(0.1)
        self.assertEqual(sorted(want - set(ids)), [], "acknowledged writes without a channel message")
        self.assertEqual(len(ids), len(set(ids)), "a write became two channel messages")
        # Writes that were committed but not acknowledged before the kill may enter too
        # (they are in the store); nothing else does.
        for rid in set(ids) - want:
            self.assertEqual(eng.get_json("/fhir/Observation/" + rid)[0], 200)
        self.assertEqual(eng.stop(), 0, eng.stderr()[-3000:])

    def test_kill9_every_answered_patient_create_has_its_event_after_restart(self):
        # patient.created is written in the create's own transaction (the store's outbox)
        # and moved to the bus after the commit: a kill -9 right after the 201s arrive and
        # a restart lose no event of an answered create (at least once; the payload's id
        # tells repeats apart). Before, the event was published after the answer and a kill
        # in between lost it.
        out = os.path.join(self.workdir, "ev")
        evch = {"id": "pev", "source": {"type": "event", "event_type": "patient.created"},
                "destinations": [{"name": "f", "type": "file-write", "dir": out,
                                  "filename": "${id}.json"}]}
        eng = self.start([evch])
        import threading
        want = set()
        for rnd in range(5):
            acked = []
            lock = threading.Lock()

            def writer(k):
                for i in range(40):
                    try:
                        status, _, data = eng.request(
                            "POST", "/fhir/Patient", headers={"Content-Type": FJ}, timeout=10,
                            body=json.dumps({"resourceType": "Patient", "active": True,
                                             "name": [{"family": "R%dW%dN%d" % (rnd, k, i)}]}))
                    except OSError:
                        return
                    if status == 201:
                        with lock:
                            acked.append(json.loads(data)["id"])

            threads = [threading.Thread(target=writer, args=(k,)) for k in range(4)]
            for t in threads:
                t.start()
            for t in threads:
                t.join(60)
            eng.kill9()  # at once after the last answer: its event is not yet on the bus
            self.assertEqual(len(acked), 160, "a create failed")
            want |= set(acked)
            eng.start(fixed_ports=True)

        def seen():
            ids = set()
            for name in os.listdir(out) if os.path.isdir(out) else []:
                if name.startswith("."):
                    continue
                try:
                    with open(os.path.join(out, name)) as f:
                        ids.add(json.load(f)["id"])
                except (OSError, ValueError):
                    pass  # being written
            return ids

        deadline = time.monotonic() + 30
        while not want <= seen() and time.monotonic() < deadline:
            time.sleep(0.1)
        self.assertEqual(sorted(want - seen()), [], "answered creates without a patient.created event")
        self.assertEqual(eng.stop(), 0, eng.stderr()[-3000:])


if PG_URL:
    class FhirChannelPgTests(FhirChannelTests):
        PG = True


if __name__ == "__main__":
    main()
