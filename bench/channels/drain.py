#!/usr/bin/env python3
"""bench/channels/drain.py BIN [N=3000] — the delivery side of bench/channels/run.sh alone.

Queues N messages on the bench channel (metadata filter + set step + file-write + http-send to
a local nginx) with its destinations paused, then resumes them and measures the drain: wall
time, the engine's CPU (utime+stime of all threads) per message, context switches of all its
threads per message, and with STRACE=1 its system calls per message (strace -c -f, which slows
it: read only the counts then). DESTS=file or DESTS=http keeps one destination; OUT_DIR=DIR puts file-write's output under DIR (e.g. /dev/shm); WINDOW=N sets http-send's "window". Counts per
message are the figures that survive a loaded machine; wall time does not. Not part of make
check."""
import http.client, json, os, subprocess, sys, tempfile, time, random, glob, shutil
bin_, n = sys.argv[1], int(sys.argv[2]) if len(sys.argv) > 2 else 3000
use_strace = os.environ.get("STRACE") == "1"
work = tempfile.mkdtemp(prefix="drainab.", dir="/tmp"); os.chmod(work, 0o755)
hp = 20000 + random.randrange(20000); ng = hp + 1
open(work + "/nginx.conf", "w").write("""worker_processes 1; pid %s/nginx.pid; error_log %s/e.log warn;
events { worker_connections 1024; }
http { access_log off; keepalive_requests 1000000; server { listen 127.0.0.1:%d; location / { return 200; } } }
""" % (work, work, ng))
subprocess.run(["nginx", "-c", work + "/nginx.conf", "-p", work], check=True)
os.makedirs(work + "/channels")
json.dump({"id": "bench", "source": {"type": "http"},
  "filter": {"metadata": "content_type", "equals": "application/json"},
  "steps": [{"type": "set", "pointer": "/meta/source", "value": "bench"}],
  "destinations": [d for d in [{"name": "file", "type": "file-write", "dir": (tempfile.mkdtemp(prefix="drainout.", dir=os.environ["OUT_DIR"]) if os.environ.get("OUT_DIR") else work) + "/out", "fsync": False},
                   dict({"name": "http", "type": "http-send", "url": "http://127.0.0.1:%d/in" % ng},
                        **({"window": int(os.environ["WINDOW"])} if os.environ.get("WINDOW") else {}))]
                   if d["name"] in os.environ.get("DESTS", "file,http").split(",")]},
  open(work + "/channels/bench.json", "w"))
p = subprocess.Popen([bin_, "serve", "--data", work + "/data", "--http", "127.0.0.1:%d" % hp,
  "--mllp", "127.0.0.1:%d" % (hp + 2), "--channels", work + "/channels", "--auth", "off",
  "--log-level", "warn"], stdout=subprocess.DEVNULL, stderr=open(work + "/hv.log", "w"))
try:
    for _ in range(200):
        try:
            c = http.client.HTTPConnection("127.0.0.1", hp, timeout=10); c.request("GET", "/health"); c.getresponse().read(); break
        except OSError:
            time.sleep(0.05)
    def req(m, path, body=None, ct=None):
        c.request(m, path, body=body, headers={"Content-Type": ct} if ct else {})
        r = c.getresponse(); d = r.read(); return r.status, d
    for d in os.environ.get("DESTS", "file,http").split(","):
        assert req("POST", "/channels/bench/destinations/%s/pause" % d, b"{}", "application/json")[0] == 200
    body = b'{"resourceType":"Observation","status":"final","code":{"coding":[{"system":"http://loinc.org","code":"2345-7"}]},"valueQuantity":{"value":95,"unit":"mg/dL"}}'
    for i in range(n):
        assert req("POST", "/channels/bench/in", body, "application/json")[0] == 201
    time.sleep(1.0)
    def cpu():
        f = open("/proc/%d/stat" % p.pid).read().rsplit(")", 1)[1].split()
        return (int(f[11]) + int(f[12])) / os.sysconf("SC_CLK_TCK")
    def ctx():
        t = 0
        for s in glob.glob("/proc/%d/task/*/status" % p.pid):
            for line in open(s):
                if "ctxt_switches" in line: t += int(line.split()[1])
        return t
    st = None
    if use_strace:
        st = subprocess.Popen(["strace", "-f", "-c", "-p", str(p.pid), "-o", work + "/strace.txt"], stderr=subprocess.DEVNULL)
        time.sleep(0.5)
    c0, x0, t0 = cpu(), ctx(), time.monotonic()
    for d in os.environ.get("DESTS", "file,http").split(","):
        req("POST", "/channels/bench/destinations/%s/resume" % d, b"{}", "application/json")
    done_at = {}
    while True:
        s, d = req("GET", "/channels/bench")
        ch = json.loads(d)
        for x in ch["destinations"]:
            if x["statistics"]["queued"] == 0 and x["name"] not in done_at:
                done_at[x["name"]] = time.monotonic() - t0
        if ch["statistics"]["queued"] == 0: break
        time.sleep(0.02)
    t1, c1, x1 = time.monotonic(), cpu(), ctx()
    dests = {x["name"]: x["statistics"]["sent"] for x in ch["destinations"]}
    assert set(dests.values()) == {n}, dests
    line = "drain %d msgs to both: %.2f s = %.0f msg/s; CPU %.0f us/msg; ctx switches %.2f/msg" % (
        n, t1 - t0, n / (t1 - t0), (c1 - c0) * 1e6 / n, (x1 - x0) / n)
    if st:
        st.terminate(); st.wait(); time.sleep(0.2)
        tot = [l for l in open(work + "/strace.txt") if l.strip().endswith("total")]
        calls = int(tot[0].split()[3]) if tot else -1
        line += "; syscalls %.1f/msg" % (calls / n)
    line += "; file done %.2f s, http done %.2f s" % (done_at.get("file", -1), done_at.get("http", -1))
    print(line, flush=True)
finally:
    p.terminate(); p.wait()
    subprocess.run(["kill", open(work + "/nginx.pid").read().strip()])
    # The output is left for the caller to delete: on a journal-less ext4 a mass delete makes
    # inode allocation scan "recently deleted" inodes for ~35 s and would slow the next run.
    print("work directory left: %s" % work, file=sys.stderr)
