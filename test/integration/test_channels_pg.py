"""test_channels_pg.py — the channel store on PostgreSQL, shared by two engines.

Two `holovitals serve` processes on one PostgreSQL database run the same channel.
Messages are received by both; each destination lane is sent by the process that
holds its lease (chan_leases), so 1,000 messages reach the sink exactly once, also
those received by the process that does not send. When the lease holder is killed
(-9), the other process takes its lanes over once the lease expires and delivers
the rest: every message arrives; the only repeats allowed are the deliveries whose
outcome was not yet committed at the kill (sent again once, same X-Message-Id).

Runs when HV_TEST_PG_URL is set (scripts/test.sh starts a server and sets it).
"""

import json
import os
import subprocess
import threading
import time
from collections import Counter

import test_channels as tc
from harness import main

PG_URL = os.environ.get("HV_TEST_PG_URL")
LANES = 2


def private_db(url, name):
    base, _, _ = url.rpartition("/")
    for sql in ("DROP DATABASE IF EXISTS %s" % name, "CREATE DATABASE %s" % name):
        subprocess.run(["psql", "-q", "-X", url, "-c", sql], check=True, capture_output=True, timeout=60)
    return base + "/" + name


def drop_db(url, name):
    subprocess.run(["psql", "-q", "-X", url, "-c", "DROP DATABASE IF EXISTS %s WITH (FORCE)" % name],
                   capture_output=True, timeout=60)


class ChannelsOnPostgres(tc.ChannelTestCase):
    def setUp(self):
        super().setUp()
        self.db_name = "hv_test_channels_%d_%d" % (os.getpid(), int(time.time() * 1000) % 100000)
        self.db = private_db(PG_URL, self.db_name)

    def tearDown(self):
        super().tearDown()
        drop_db(PG_URL, self.db_name)

    def two_engines(self, sink):
        conf = json.dumps({"id": "pg", "source": {"type": "http"},
                           "destinations": [{"name": "s", "type": "http-send",
                                             "url": "http://127.0.0.1:%d/in" % sink.port,
                                             "queue": {"workers": LANES, "retry_interval_ms": 100,
                                                       "jitter_pct": 0}}]})
        engines = []
        for _ in range(2):
            eng = self.engine(start=False, args=["--db", self.db],
                              env={"HOLOVITALS_CHANNELS_QUEUE_LEASE": "2s"})
            self.write_channel(eng, "pg.json", conf)
            eng.start()
            engines.append(eng)
        return engines

    def post_many(self, eng, first, n, ids, lock):
        for i in range(first, first + n):
            status, _, data = eng.request("POST", "/channels/pg/in", body=b"m%04d" % i)
            self.assertEqual(status, 201, data)
            with lock:
                ids.append(json.loads(data)["id"])

    def post_both(self, a, b, n):
        ids, lock, threads = [], threading.Lock(), []
        for k in range(4):
            eng = a if k % 2 == 0 else b
            threads.append(threading.Thread(target=self.post_many,
                                            args=(eng, k * n // 4, n // 4, ids, lock)))
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        return ids

    def test_two_engines_deliver_1000_messages_exactly_once(self):
        sink = self.sink()
        a, b = self.two_engines(sink)
        ids = self.post_both(a, b, 1000)
        self.assertEqual(len(set(ids)), 1000)
        self.assertTrue(sink.wait_for(1000, timeout=40), "sink got %d" % len(sink.ids()))
        time.sleep(1.0)  # anything sent twice would arrive now
        got = sink.ids()
        dups = [k for k, v in Counter(got).items() if v > 1]
        self.assertEqual(dups, [])
        self.assertEqual(sorted(got), sorted(ids))
        for eng in (a, b):
            eng.stop()

    def test_lanes_of_a_killed_engine_are_taken_over(self):
        sink = self.sink(start=False)  # down: the queue fills
        a, b = self.two_engines(sink)
        ids = self.post_both(a, b, 200)
        sink.start()
        self.assertTrue(sink.wait_for(20, timeout=20))
        # Whichever process holds the lanes: kill -9 both ways is the same for the test —
        # kill the first engine; if it held no lane nothing changes, else the other takes over.
        a.kill9()
        self.assertTrue(sink.wait_for(200, timeout=30),
                        "sink got %d of 200 after the kill" % len(set(sink.ids())))
        time.sleep(0.5)
        got = sink.ids()
        self.assertEqual(set(got), set(ids))
        # Repeats: only deliveries whose outcome was not yet committed at the kill (a
        # worker moves on before its outcome's group commit), each at most once more.
        counts = Counter(got)
        self.assertLessEqual(max(counts.values()), 2, counts.most_common(3))
        self.assertLessEqual(len(got) - len(set(got)), LANES * 64)
        b.stop()

    def test_events_published_by_either_engine_enter_the_event_channel_once(self):
        # The event bus across processes: an event published by either engine (POST
        # /events/TYPE) enters the event-source channel — which both engines run — exactly
        # once in the cluster (one cursor per channel, delivered by the process holding its
        # lease), in publication order; an event the other engine published is seen too.
        out = os.path.join(self.workdir, "ev-out")
        conf = json.dumps({"id": "ev", "source": {"type": "event", "event_type": "lab.*"},
                           "destinations": [{"name": "f", "type": "file-write", "dir": out}]})
        engines = []
        for _ in range(2):
            eng = self.engine(start=False, args=["--db", self.db],
                              env={"HOLOVITALS_CHANNELS_QUEUE_LEASE": "2s"})
            self.write_channel(eng, "ev.json", conf)
            eng.start()
            engines.append(eng)
        a, b = engines
        n = 60
        for i in range(n):
            eng = a if i % 2 == 0 else b
            status, _ = eng.post_json("/events/lab.result", {"n": i})
            self.assertIn(status, (200, 201, 202))
        deadline = time.monotonic() + 20
        msgs = []
        while time.monotonic() < deadline:
            _, lst = a.get_json("/channels/ev/messages?limit=1000")
            msgs = lst["messages"]
            if len(msgs) >= n:
                break
            time.sleep(0.1)
        time.sleep(1.0)  # a second delivery would arrive now
        _, lst = a.get_json("/channels/ev/messages?limit=1000")
        keys = [m["source_key"] for m in lst["messages"]]
        self.assertEqual(len(keys), n, keys)
        self.assertEqual(len(set(keys)), n)
        got = []
        for m in reversed(lst["messages"]):
            _, full = a.get_json("/channels/ev/messages/" + m["id"])
            got.append(json.loads(full["content"])["n"])
        # Publication order (the two engines' posts alternate, each answered before the next).
        self.assertEqual(got, list(range(n)))
        for eng in (a, b):
            eng.stop()

    def count_events(self):
        out = subprocess.run(["psql", "-q", "-X", "-A", "-t", "-F", " ", self.db, "-c",
                              "SELECT COUNT(*), COALESCE(MIN(id), 0), COALESCE(MAX(id), 0)"
                              " FROM channels.chan_events"],
                             check=True, capture_output=True, text=True, timeout=60).stdout
        return tuple(int(x) for x in out.split())

    def count_cursors(self):
        out = subprocess.run(["psql", "-q", "-X", "-A", "-t", "-F", " ", self.db, "-c",
                              "SELECT COUNT(*) FROM channels.chan_event_cursors"],
                             capture_output=True, text=True, timeout=60).stdout
        return int(out.split()[0]) if out.split() and out.split()[0].isdigit() else 0

    def test_event_table_pruned_unconsumed_events_survive_kill9(self):
        # chan_events on PostgreSQL: rows both event channels consumed are deleted (all
        # but the newest); with one channel paused its unconsumed rows stay, across a
        # kill -9, and reach it when it runs again.
        outs = [os.path.join(self.workdir, "ev-out%d" % i) for i in (1, 2)]
        eng = self.engine(start=False, args=["--db", self.db],
                          env={"HOLOVITALS_CHANNELS_EVENT_PRUNE_INTERVAL": "200ms"})
        for i, out in enumerate(outs):
            self.write_channel(eng, "ev%d.json" % (i + 1), json.dumps({
                "id": "ev%d" % (i + 1), "source": {"type": "event", "event_type": "lab.*"},
                "destinations": [{"name": "f", "type": "file-write", "dir": out, "fsync": False}]}))
        eng.start()

        def n_files(d):
            return len(os.listdir(d)) if os.path.isdir(d) else 0

        def wait(pred, timeout=20):
            deadline = time.monotonic() + timeout
            while time.monotonic() < deadline and not pred():
                time.sleep(0.1)
            return pred()

        # Both cursors made (an event published before a channel has one is not its own).
        self.assertTrue(wait(lambda: self.count_cursors() == 2), self.count_cursors())

        for i in range(10):
            self.assertEqual(eng.post_json("/events/lab.result", {"n": i})[0], 201)
        self.assertTrue(wait(lambda: n_files(outs[0]) == 10 and n_files(outs[1]) == 10))
        self.assertTrue(wait(lambda: self.count_events()[0] == 1), self.count_events())
        newest = self.count_events()[2]
        self.assertEqual(eng.post_json("/channels/ev2/pause", {})[0], 200)
        for i in range(10, 25):
            self.assertEqual(eng.post_json("/events/lab.result", {"n": i})[0], 201)
        self.assertTrue(wait(lambda: n_files(outs[0]) == 25))
        # A prune tick after ev1 has consumed all 25 takes the row ev2 has consumed too;
        # what ev2 has not consumed stays, however many ticks run.
        self.assertTrue(wait(lambda: self.count_events()[0] <= 15), self.count_events())
        time.sleep(1.0)  # five more prune ticks
        count, low, _ = self.count_events()
        self.assertEqual((count, low), (15, newest + 1))
        eng.kill9()
        eng.start()
        self.assertTrue(wait(lambda: n_files(outs[1]) == 25), n_files(outs[1]))
        self.assertTrue(wait(lambda: self.count_events()[0] == 1), self.count_events())
        eng.stop()


if not PG_URL:
    del ChannelsOnPostgres

    class ChannelsOnPostgresNeedsServer(tc.ChannelTestCase):
        def test_postgresql_url_is_set(self):
            self.fail("HV_TEST_PG_URL is not set: url=$(scripts/pg.sh start DIR) and export it "
                      "(scripts/test.sh does); this test fails rather than skip")

if __name__ == "__main__":
    main()
