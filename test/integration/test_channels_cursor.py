"""test_channels_cursor.py — cursor queues (engine/channel.c, docs/channels.md "Queues").

An ordered destination reads the channel's messages after its persisted position
(chan_cursors) instead of one queue row per message; rows exist only for retries, dead
letters, requeues and reprocessing after the cursor passed.

- a paused backlog drained in batches (one outcome per batch of clean deliveries):
  statistics, cursor position and count, no rows, nothing resent after a restart;
- kill -9 with two destinations at different positions (one retrying): after the restart
  each message reaches each destination exactly once (every delivery was recorded before
  the kill), in order;
- a destination down while traffic goes on, then up while traffic still goes on: it
  drains in order, once each, while the other keeps going; the store holds one queue row
  (the retried head) and no row per message;
- reprocessing a message the cursor passed sends it again; one the cursor has not reached
  (destination paused) is sent once, in its new version;
- a redeploy that gives a destination several workers turns what its cursor had not
  reached into rows: nothing lost or sent twice;
- a data directory with queue rows of the old kind and no cursor table (migration of an
  older store): the old rows are delivered first, in order, then the new messages;
- derived statuses: a message a cursor reads is stored once ("cursor") and never
  updated when delivered; what the browser, the filters, the statistics and the CLI
  show follows the cursors and rows — queued while a destination is down, the same after
  a kill -9, sent once it drains, errored for a dead letter (also once discarded),
  queued again when requeued.
"""

import json
import os
import sqlite3
import time

from harness import main, run_cli, wait_until
from test_channels import ChannelTestCase


FANOUT = """{
  "id": "cur",
  "source": { "type": "http" },
  "destinations": [
    { "name": "a", "type": "http-send", "url": "http://127.0.0.1:%d/in" },
    { "name": "b", "type": "http-send", "url": "http://127.0.0.1:%d/in",
      "queue": { "retry_interval_ms": 100, "backoff": 1.0, "max_attempts": 100000,
                 "breaker_threshold": 0 } }
  ]
}
"""


class CursorQueueTest(ChannelTestCase):
    def setup_fanout(self, a, b, start=True):
        eng = self.engine(start=False)
        self.write_channel(eng, "cur.json", FANOUT % (a.port, b.port))
        if start:
            eng.start()
        return eng

    def send(self, eng, i):
        status, _, data = eng.request("POST", "/channels/cur/in", body=b"m%03d" % i,
                                      headers={"Content-Type": "text/plain"})
        self.assertEqual(status, 201, data)
        return json.loads(data)["id"]

    def dest_stats(self, eng):
        _, ch = eng.get_json("/channels/cur")
        return {d["name"]: d["statistics"] for d in ch["destinations"]}

    def db(self, eng):
        return sqlite3.connect("file:%s?mode=ro" % os.path.join(eng.data, "channels.db"),
                               uri=True, timeout=10)

    def test_kill9_two_destinations_at_different_positions_each_message_once_in_order(self):
        a, b = self.sink(), self.sink()
        eng = self.setup_fanout(a, b)
        ids = [self.send(eng, i) for i in range(5)]
        self.assertTrue(a.wait_for(5) and b.wait_for(5))
        b.stop()  # b goes down at message 5; a goes on
        ids += [self.send(eng, i) for i in range(5, 12)]
        self.assertTrue(a.wait_for(12))
        # Kill only once every delivery is recorded: then nothing is sent twice.
        # b's failed attempt on message 6 is counted once its worker has tried, which a's
        # deliveries do not wait for.
        self.assertTrue(wait_until(lambda: (self.dest_stats(eng)["a"]["sent"],
                                            self.dest_stats(eng)["b"]["sent"],
                                            self.dest_stats(eng)["b"]["failed_attempts"] > 0)
                                   == (12, 5, True)),
                        self.dest_stats(eng))
        st = self.dest_stats(eng)
        self.assertEqual(st["b"]["queued"], 7)
        eng.kill9()
        eng.start()
        ids += [self.send(eng, i) for i in range(12, 16)]
        self.assertTrue(a.wait_for(16))
        b.start()
        self.assertTrue(b.wait_for(16), "b got %d" % len(b.ids()))
        time.sleep(0.5)
        self.assertEqual(a.ids(), ids, "a: each message once, in order")
        self.assertEqual(b.ids(), ids, "b: each message once, in order")
        self.assertEqual(b.bodies(), [b"m%03d" % i for i in range(16)])
        # Each sink has its 16th message before the engine has recorded it, a's as well as b's.
        self.assertTrue(wait_until(lambda: (self.dest_stats(eng)["a"]["queued"],
                                            self.dest_stats(eng)["b"]["queued"]) == (0, 0)),
                        self.dest_stats(eng))
        st = self.dest_stats(eng)
        self.assertEqual((st["a"]["sent"], st["b"]["sent"]), (16, 16))
        _, ch = eng.get_json("/channels/cur")
        self.assertEqual((ch["statistics"]["sent"], ch["statistics"]["queued"]), (16, 0))
        # The message view: both destinations sent, one of them after retries.
        _, m = eng.get_json("/channels/cur/messages/%s" % ids[5])
        self.assertEqual(m["status"], "sent")
        states = {d["name"]: d for d in m["destinations"]}
        self.assertEqual(states["a"]["state"], "sent")
        self.assertEqual(states["b"]["state"], "sent")
        self.assertGreater(states["b"]["attempts"], 1)
        eng.stop()

    def test_a_drained_backlog_counts_each_delivery_once_and_restarts_past_it(self):
        """A paused backlog drains in batches whose clean deliveries are recorded as one
        outcome each (channel.c batch_delivered): the statistics, the cursor's position
        and count, the message statuses and a restart all see every message once."""
        a, b = self.sink(), self.sink()
        eng = self.setup_fanout(a, b)
        for d in ("a", "b"):
            self.assertEqual(eng.post_json("/channels/cur/destinations/%s/pause" % d, {})[0], 200)
        ids = [self.send(eng, i) for i in range(40)]
        for d in ("a", "b"):
            self.assertEqual(eng.post_json("/channels/cur/destinations/%s/resume" % d, {})[0], 200)
        self.assertTrue(a.wait_for(40) and b.wait_for(40))
        self.assertTrue(wait_until(lambda: self.dest_stats(eng)["a"]["sent"] == 40 and
                                   self.dest_stats(eng)["b"]["sent"] == 40), self.dest_stats(eng))
        st = self.dest_stats(eng)
        self.assertEqual((st["a"]["queued"], st["b"]["queued"]), (0, 0))
        with self.db(eng) as db:
            cur = dict((r[0], (r[1], r[2])) for r in db.execute(
                "SELECT dest, last_id, sent FROM chan_cursors WHERE channel = 'cur'"))
            rows = db.execute("SELECT COUNT(*) FROM chan_queue WHERE channel = 'cur'").fetchone()[0]
        self.assertEqual(cur, {"a": (int(ids[-1]), 40), "b": (int(ids[-1]), 40)})
        self.assertEqual(rows, 0, "clean deliveries through the cursor write no row")
        _, ch = eng.get_json("/channels/cur")
        self.assertEqual((ch["statistics"]["sent"], ch["statistics"]["queued"]), (40, 0))
        eng.stop()
        eng.start()
        ids.append(self.send(eng, 40))
        self.assertTrue(a.wait_for(41) and b.wait_for(41))
        time.sleep(0.3)
        self.assertEqual(a.ids(), ids, "a: each message once, in order, across the restart")
        self.assertEqual(b.ids(), ids, "b: each message once, in order, across the restart")
        self.assertTrue(wait_until(lambda: self.dest_stats(eng)["a"]["sent"] == 41))
        eng.stop()

    def test_down_destination_drains_in_order_while_other_keeps_going_rows_only_for_the_head(self):
        a, b = self.sink(), self.sink(start=False)
        eng = self.setup_fanout(a, b)
        ids = [self.send(eng, i) for i in range(40)]
        self.assertTrue(a.wait_for(40))
        self.assertEqual(a.ids(), ids)
        # The sink has the 40th message before the engine has read its ACK and recorded it.
        self.assertTrue(wait_until(lambda: self.dest_stats(eng)["a"]["sent"] == 40),
                        self.dest_stats(eng))
        st = self.dest_stats(eng)
        self.assertEqual((st["a"]["sent"], st["b"]["sent"]), (40, 0))
        self.assertEqual(st["b"]["queued"], 40)
        # While b is down only its head has a row (the retry): no row per message. The row
        # is written when b's first attempt has failed, which a's deliveries do not wait for.
        def queue_rows():
            db = self.db(eng)
            try:
                return dict(db.execute("SELECT dest, COUNT(*) FROM chan_queue GROUP BY dest").fetchall())
            finally:
                db.close()
        self.assertTrue(wait_until(lambda: queue_rows().get("b", 0) > 0), queue_rows())
        rows = queue_rows()
        self.assertEqual(rows.get("a", 0), 0, rows)
        self.assertEqual(rows.get("b", 0), 1, rows)
        # b comes back while traffic goes on.
        b.start()
        ids += [self.send(eng, i) for i in range(40, 70)]
        self.assertTrue(b.wait_for(70), "b got %d" % len(b.ids()))
        self.assertTrue(a.wait_for(70))
        time.sleep(0.3)
        self.assertEqual(b.ids(), ids)
        self.assertEqual(a.ids(), ids)
        self.assertTrue(wait_until(lambda: (self.dest_stats(eng)["a"]["queued"],
                                            self.dest_stats(eng)["b"]["queued"]) == (0, 0)),
                        self.dest_stats(eng))
        _, ch = eng.get_json("/channels/cur")
        self.assertEqual(ch["statistics"]["sent"], 70)
        _, listing = eng.get_json("/channels/cur/messages?status=sent&limit=100")
        self.assertEqual(len(listing["messages"]), 70)
        eng.stop()
        # The CLI's counts: the deliveries counted on the cursors, plus b's one retry row.
        code, out, err = run_cli("channel", "stats", "--data", eng.data)
        self.assertEqual(code, 0, err)
        counts = {tuple(line.split()[:3]): int(line.split()[3]) for line in out.splitlines()[1:]}
        self.assertEqual(counts.get(("cur", "-", "sent")), 70, out)
        self.assertEqual(counts.get(("cur", "a", "sent")), 70, out)
        self.assertEqual(counts.get(("cur", "b", "sent")), 70, out)
        self.assertNotIn(("cur", "a", "queued"), counts, out)

    def test_reprocess_after_the_cursor_passed_and_before_it_reached(self):
        a, b = self.sink(), self.sink()
        eng = self.setup_fanout(a, b)
        ids = [self.send(eng, i) for i in range(3)]
        self.assertTrue(a.wait_for(3) and b.wait_for(3))
        # "Passed by both cursors" holds once both have recorded the deliveries.
        self.assertTrue(wait_until(lambda: (self.dest_stats(eng)["a"]["sent"],
                                            self.dest_stats(eng)["b"]["sent"]) == (3, 3)),
                        self.dest_stats(eng))
        # Passed by both cursors: reprocessing sends it again to both, after the others.
        status, _ = eng.post_json("/channels/cur/messages/%s/reprocess" % ids[1], {})
        self.assertEqual(status, 200)
        self.assertTrue(a.wait_for(4) and b.wait_for(4))
        time.sleep(0.3)
        self.assertEqual(a.ids(), ids + [ids[1]])
        self.assertEqual(b.ids(), ids + [ids[1]])
        # The message shows both deliveries to each destination, as a row queue's would.
        self.assertTrue(wait_until(lambda: [(d["name"], d["state"]) for d in eng.get_json(
            "/channels/cur/messages/%s" % ids[1])[1]["destinations"]] ==
            [("a", "sent"), ("a", "sent"), ("b", "sent"), ("b", "sent")]),
            eng.get_json("/channels/cur/messages/%s" % ids[1])[1]["destinations"])
        st = self.dest_stats(eng)
        self.assertEqual((st["a"]["sent"], st["b"]["sent"]), (4, 4))
        # Not reached by b's cursor (paused): b sends it once, a (passed) again.
        self.assertEqual(eng.post_json("/channels/cur/destinations/b/pause", {})[0], 200)
        ids.append(self.send(eng, 3))
        self.assertTrue(a.wait_for(5))
        self.assertTrue(wait_until(lambda: self.dest_stats(eng)["a"]["sent"] >= 5))
        status, _ = eng.post_json("/channels/cur/messages/%s/reprocess" % ids[3], {})
        self.assertEqual(status, 200)
        self.assertTrue(a.wait_for(6))
        self.assertEqual(eng.post_json("/channels/cur/destinations/b/resume", {})[0], 200)
        self.assertTrue(b.wait_for(5))
        time.sleep(0.5)
        self.assertEqual(a.ids(), ids[:3] + [ids[1], ids[3], ids[3]])
        self.assertEqual(b.ids(), ids[:3] + [ids[1], ids[3]], "b: once, not twice")
        # The status is derived from the recorded deliveries, which follow the sinks.
        self.assertTrue(wait_until(lambda: eng.get_json("/channels/cur/messages/%s" % ids[3])[1]
                                   ["status"] == "sent"),
                        eng.get_json("/channels/cur/messages/%s" % ids[3])[1])
        eng.stop()

    def test_shared_read_gives_each_destination_its_route_once_in_order(self):
        """The channel's cursor destinations share one read of its messages
        (engine/channel_read.c): small batches, a destination with a `when` that takes a
        third of them, one paused far behind the others (beyond the rows the channel
        keeps) and a reprocess while it is paused: each gets exactly its messages, once,
        in order; the reprocessed one again only where the cursor had passed it."""
        a, b, c = self.sink(), self.sink(), self.sink()
        eng = self.engine(start=False)
        q = {"batch": 4, "retry_interval_ms": 100, "max_attempts": 1000}
        self.write_channel(eng, "cur.json", json.dumps({
            "id": "cur", "source": {"type": "http"},
            "destinations": [
                {"name": "a", "type": "http-send", "url": "http://127.0.0.1:%d/in" % a.port,
                 "queue": q},
                {"name": "b", "type": "http-send", "url": "http://127.0.0.1:%d/in" % b.port,
                 "queue": q},
                {"name": "c", "type": "http-send", "url": "http://127.0.0.1:%d/in" % c.port,
                 "queue": q, "when": {"metadata": "content_type", "equals": "text/x-c"}}]}))
        eng.start()
        ids, for_c = [], []

        def send(i):
            ct = "text/x-c" if i % 3 == 0 else "text/plain"
            status, _, data = eng.request("POST", "/channels/cur/in", body=b"m%03d" % i,
                                          headers={"Content-Type": ct})
            self.assertEqual(status, 201, data)
            mid = json.loads(data)["id"]
            ids.append(mid)
            if i % 3 == 0:
                for_c.append(mid)

        for i in range(10):
            send(i)
        self.assertTrue(a.wait_for(10) and b.wait_for(10) and c.wait_for(4))
        self.assertEqual(eng.post_json("/channels/cur/destinations/b/pause", {})[0], 200)
        for i in range(10, 1100):
            send(i)
        self.assertTrue(a.wait_for(1100, timeout=60), "a got %d" % len(a.ids()))
        self.assertTrue(c.wait_for(len(for_c)))
        # Passed by a and c, not reached by b: a and c send it again, b once.
        self.assertTrue(wait_until(lambda: (self.dest_stats(eng)["a"]["sent"],
                                            self.dest_stats(eng)["c"]["sent"]) == (1100, len(for_c))),
                        self.dest_stats(eng))
        status, _ = eng.post_json("/channels/cur/messages/%s/reprocess" % ids[600], {})
        self.assertEqual(status, 200)
        self.assertTrue(a.wait_for(1101) and c.wait_for(len(for_c) + 1))
        for i in range(1100, 1110):
            send(i)
        self.assertEqual(eng.post_json("/channels/cur/destinations/b/resume", {})[0], 200)
        self.assertTrue(b.wait_for(1110, timeout=60), "b got %d" % len(b.ids()))
        self.assertTrue(a.wait_for(1111) and c.wait_for(len(for_c) + 1))
        time.sleep(0.5)
        self.assertEqual(a.ids(), ids[:1100] + [ids[600]] + ids[1100:])
        self.assertEqual(b.ids(), ids, "b: each message once, in order")
        self.assertEqual(b.bodies(), [b"m%03d" % i for i in range(1110)])
        self.assertEqual(c.ids(), for_c[:367] + [ids[600]] + for_c[367:])
        eng.stop()

    def test_redeploy_to_several_workers_turns_the_cursor_into_rows(self):
        a, b = self.sink(), self.sink(start=False)
        eng = self.setup_fanout(a, b)
        ids = [self.send(eng, i) for i in range(10)]
        self.assertTrue(a.wait_for(10))
        self.assertEqual(self.dest_stats(eng)["b"]["queued"], 10)
        # b gets two workers (parallel, row queues): what its cursor had not reached
        # becomes rows, nothing is lost or sent twice.
        self.write_channel(eng, "cur.json", (FANOUT % (a.port, b.port)).replace(
            '"breaker_threshold": 0 }', '"breaker_threshold": 0, "workers": 2 }'))
        status, body = eng.post_json("/channels/cur/deploy", {})
        self.assertEqual(status, 200, body)
        ids += [self.send(eng, i) for i in range(10, 14)]
        b.start()
        self.assertTrue(b.wait_for(14), "b got %d" % len(b.ids()))
        self.assertTrue(a.wait_for(14))
        time.sleep(0.5)
        self.assertEqual(sorted(b.ids(), key=int), ids)
        self.assertEqual(a.ids(), ids)
        db = self.db(eng)
        try:
            cursors = [r[0] for r in db.execute("SELECT dest FROM chan_cursors").fetchall()]
        finally:
            db.close()
        self.assertEqual(cursors, ["a"])
        eng.stop()

    def test_old_queue_rows_are_delivered_first_after_migration(self):
        a, b = self.sink(), self.sink()
        eng = self.setup_fanout(a, b)
        ids = [self.send(eng, i) for i in range(6)]
        self.assertTrue(a.wait_for(6) and b.wait_for(6))
        eng.stop()
        # Make the store what an older engine left: no cursor table, no route column, and
        # the last four messages queued as rows of the old kind for both destinations.
        db = sqlite3.connect(os.path.join(eng.data, "channels.db"), timeout=10)
        version = db.execute("SELECT version FROM hv_schema WHERE module = 'channels'").fetchone()[0]
        # The cursor migration is the second to last (the last stores "cursor" statuses).
        db.execute("UPDATE chan_messages SET status = 'sent' WHERE status = 'cursor'")
        db.execute("DROP TABLE chan_cursors")
        db.execute("ALTER TABLE chan_messages DROP COLUMN route")
        db.execute("UPDATE hv_schema SET version = ? WHERE module = 'channels'", (version - 2,))
        for mid in ids[2:]:
            for dest in ("a", "b"):
                db.execute("INSERT INTO chan_queue (channel, dest, message_id, state, updated_at,"
                           " lane) VALUES ('cur', ?, ?, 'queued', 0, 0)", (dest, int(mid)))
        db.execute("UPDATE chan_messages SET status = 'queued' WHERE id >= ?", (int(ids[2]),))
        db.commit()
        db.close()
        eng.start()
        ids += [self.send(eng, i) for i in range(6, 9)]
        self.assertTrue(a.wait_for(13) and b.wait_for(13), (len(a.ids()), len(b.ids())))
        time.sleep(0.3)
        want = ids[:6] + ids[2:6] + ids[6:]
        self.assertEqual(a.ids(), want)
        self.assertEqual(b.ids(), want)
        self.assertTrue(wait_until(lambda: (self.dest_stats(eng)["a"]["queued"],
                                            self.dest_stats(eng)["b"]["queued"]) == (0, 0)),
                        self.dest_stats(eng))
        _, ch = eng.get_json("/channels/cur")
        self.assertEqual((ch["statistics"]["sent"], ch["statistics"]["queued"]), (9, 0))
        eng.stop()


class DerivedStatusTest(CursorQueueTest):
    def shown(self, eng, status):
        _, listing = eng.get_json("/channels/cur/messages?status=%s&limit=100" % status)
        return sorted(m["id"] for m in listing["messages"])

    def counts(self, eng):
        _, ch = eng.get_json("/channels/cur")
        st = ch["statistics"]
        return (st["received"], st["queued"], st["sent"], st["errored"])

    def stored(self, eng):
        db = self.db(eng)
        try:
            return dict(db.execute("SELECT status, COUNT(*) FROM chan_messages WHERE channel ="
                                   " 'cur' GROUP BY status").fetchall())
        finally:
            db.close()

    def test_status_follows_the_cursors_across_kill9_and_a_down_destination(self):
        a, b = self.sink(), self.sink(start=False)
        eng = self.setup_fanout(a, b)
        ids = sorted(self.send(eng, i) for i in range(6))
        self.assertTrue(a.wait_for(6))
        self.assertTrue(wait_until(lambda: self.dest_stats(eng)["a"]["sent"] == 6))
        # a has all, b none: every message is still queued, in every view.
        self.assertEqual(self.counts(eng), (6, 6, 0, 0))
        self.assertEqual(self.shown(eng, "queued"), ids)
        self.assertEqual(self.shown(eng, "sent"), [])
        _, m = eng.get_json("/channels/cur/messages/%s" % ids[3])
        self.assertEqual(m["status"], "queued")
        # Stored once and never rewritten by a delivery.
        self.assertEqual(self.stored(eng), {"cursor": 6})
        eng.kill9()
        eng.start()
        self.assertEqual(self.counts(eng), (6, 6, 0, 0))
        self.assertEqual(self.shown(eng, "queued"), ids)
        # Pruning leaves what b has not had.
        status, res = eng.post_json("/channels/cur/prune?before=%d" % (int(time.time() * 1000) + 1000), {})
        self.assertEqual((status, res["pruned"]), (200, 0))
        b.start()
        self.assertTrue(b.wait_for(6), "b got %d" % len(b.ids()))
        self.assertTrue(wait_until(lambda: self.counts(eng) == (6, 0, 6, 0)), self.counts(eng))
        self.assertEqual(self.shown(eng, "sent"), ids)
        self.assertEqual(self.shown(eng, "queued"), [])
        _, m = eng.get_json("/channels/cur/messages/%s" % ids[3])
        self.assertEqual(m["status"], "sent")
        # Only b's retried head (a row outcome) was written again; the rest stay "cursor".
        stored = self.stored(eng)
        self.assertEqual(sum(stored.values()), 6)
        self.assertGreaterEqual(stored.get("cursor", 0), 5, stored)
        eng.stop()
        code, out, err = run_cli("channel", "messages", "cur", "--status", "sent", "--data", eng.data)
        self.assertEqual(code, 0, err)
        self.assertEqual(len(out.splitlines()) - 1, 6, out)
        code, out, err = run_cli("channel", "stats", "--data", eng.data)
        counts = {tuple(line.split()[:3]): int(line.split()[3]) for line in out.splitlines()[1:]}
        self.assertEqual(counts.get(("cur", "-", "sent")), 6, out)
        self.assertNotIn(("cur", "-", "cursor"), counts, out)

    def test_dead_letter_shows_errored_then_queued_when_requeued_and_errored_when_discarded(self):
        a, b = self.sink(), self.sink()
        b.status = 503
        eng = self.engine(start=False)
        self.write_channel(eng, "cur.json", json.dumps({
            "id": "cur", "source": {"type": "http"},
            "destinations": [
                {"name": "a", "type": "http-send", "url": "http://127.0.0.1:%d/in" % a.port},
                {"name": "b", "type": "http-send", "url": "http://127.0.0.1:%d/in" % b.port,
                 "queue": {"retry_interval_ms": 20, "max_attempts": 1, "breaker_threshold": 0}}]}))
        eng.start()
        ids = sorted(self.send(eng, i) for i in range(3))
        self.assertTrue(wait_until(lambda: self.counts(eng) == (3, 0, 0, 3)), self.counts(eng))
        self.assertEqual(self.shown(eng, "errored"), ids)
        self.assertEqual(self.stored(eng), {"cursor": 3})  # derived: dead rows, no update
        _, m = eng.get_json("/channels/cur/messages/%s" % ids[0])
        self.assertEqual(m["status"], "errored")
        # Requeued: queued (its row) until delivered, then sent.
        b.status = 200
        status, body = eng.post_json("/channels/cur/deadletter/requeue", {})
        self.assertEqual((status, body["requeued"]), (200, 3))
        self.assertTrue(b.wait_for(3))
        self.assertTrue(wait_until(lambda: self.counts(eng) == (3, 0, 3, 0)), self.counts(eng))
        # A dead letter that is discarded stays errored.
        b.status = 503
        more = self.send(eng, 3)
        self.assertTrue(wait_until(lambda: self.counts(eng) == (4, 0, 3, 1)), self.counts(eng))
        status, body = eng.post_json("/channels/cur/deadletter/discard", {})
        self.assertEqual((status, body["discarded"]), (200, 1))
        self.assertEqual(self.counts(eng), (4, 0, 3, 1))
        self.assertEqual(self.shown(eng, "errored"), [more])
        # Pruning takes the finished ones, errored included.
        status, res = eng.post_json("/channels/cur/prune?before=%d" % (int(time.time() * 1000) + 1000), {})
        self.assertEqual((status, res["pruned"]), (200, 4))
        self.assertEqual(self.counts(eng), (0, 0, 0, 0))
        eng.stop()


if __name__ == "__main__":
    main()
