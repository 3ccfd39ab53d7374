#!/usr/bin/env bash
# bench/fhir-store/commit_trace.sh — where a group commit's cycle goes (issue 5): threads_cpu.sh's
# server and wrk -t1 -c64 (create or tx(2) body), with `perf record` of the server's fdatasync,
# futex, epoll_wait, write, pwrite64 syscalls and its sched_switch / sched_wakeup events for 3 s
# (this slows the run). Cuts the FHIR WAL's syncing thread (the FHIR storage thread, or
# hv-walsync with fhir.commit_pipeline on) into cycles from one fdatasync's return to the next and
# prints medians per cycle: the fdatasync, the time waiting on its condition variable (for jobs,
# or for a commit to sync), the wait to be scheduled after its wake-up, the rest (running or
# preempted); the answers the loop thread writes per cycle and how long after the fdatasync's
# return it writes the first. Extra NAME=VALUE arguments go into the server's environment. Needs
# perf and root (or perf_event_paranoid <= 1).
#
#   bench/fhir-store/commit_trace.sh BIN create|tx [NAME=VALUE...]
set -u
bin=$1; mode=$2; shift 2
w=$(mktemp -d "${TMPDIR:-/tmp}/hv-bench-trace.XXXXXX")
. "$(dirname "$0")/serve_mode.sh"
serve_mode "$mode" "$@"
for t in /proc/$pid/task/*; do echo "$(basename "$t") $(cat "$t/comm")"; done > "$w/threads"
wrk -t1 -c64 -d1s -s "$w/w.lua" "http://127.0.0.1:$port$path" >/dev/null # warm-up
e=syscalls:sys_enter_fdatasync,syscalls:sys_exit_fdatasync,syscalls:sys_enter_futex,syscalls:sys_exit_futex
e=$e,syscalls:sys_enter_epoll_wait,syscalls:sys_exit_epoll_wait,syscalls:sys_enter_write,syscalls:sys_enter_pwrite64
e=$e,sched:sched_switch,sched:sched_wakeup
perf record -q -o "$w/perf.data" -e "$e" -p $pid -- sleep 3 2>/dev/null &
rp=$!
out=$(wrk -t1 -c64 -d3s -s "$w/w.lua" "http://127.0.0.1:$port$path")
wait $rp
kill $pid; wait $pid 2>/dev/null
echo "$mode $(echo "$out" | awk '/Requests\/sec/ { print "rps=" $2 }') (traced)"
perf script -i "$w/perf.data" -F tid,time,event,trace 2>/dev/null > "$w/script"
python3 - "$w/script" "$w/threads" "$pid" <<'PY'
import collections, re, statistics as st, sys
script, threads, loop = sys.argv[1], sys.argv[2], sys.argv[3]
names = dict(l.split(None, 1) for l in open(threads))
ev = []
for line in open(script):
    m = re.match(r'\s*(\d+)\s+([\d.]+):\s+(\S+):\s*(.*)', line)
    if m:
        ev.append((m.group(1), float(m.group(2)), m.group(3), m.group(4)))
pw = collections.Counter(tid for tid, _, name, _ in ev if name.endswith('pwrite64') and names.get(tid, '').startswith('hv-storage'))
walsync = [t for t, n in names.items() if n.strip() == 'hv-walsync']
sync_tid = walsync[0] if walsync else pw.most_common(1)[0][0]
cyc, cur, sync_in, wait_in, woke = [], None, None, None, None
for tid, t, name, rest in ev:
    if name == 'sched:sched_wakeup' and ('pid=%s ' % sync_tid) in rest:
        woke = t
    if tid == sync_tid:
        if name == 'syscalls:sys_enter_fdatasync':
            sync_in = t
        elif name == 'syscalls:sys_exit_fdatasync' and sync_in is not None:
            if cur is not None:
                cur['sync'], cur['end'] = t - sync_in, t
                cyc.append(cur)
            cur = dict(start=t, wait=0.0, runq=0.0, answers=[])
        elif cur is None:
            continue
        elif name == 'syscalls:sys_enter_futex' and '0x00000189' in rest: # a condition variable's wait
            wait_in, woke = t, None
        elif name == 'syscalls:sys_exit_futex' and wait_in is not None:
            if woke is not None and woke > wait_in:
                cur['wait'] += woke - wait_in
                cur['runq'] += t - woke
            else:
                cur['wait'] += t - wait_in
            wait_in = None
    elif tid == loop and cur is not None and name == 'syscalls:sys_enter_write' and 'count: 0x00000008' not in rest:
        cur['answers'].append(t) # the eventfd writes (8 bytes) are not answers
cyc = cyc[1:-1]
ms = lambda xs: st.median(xs) * 1e3
print("%d cycles of %s: cycle %.2f ms = fdatasync %.2f + condition wait %.2f + run queue after wake-up %.2f + running or preempted %.2f (medians)" % (
    len(cyc), names[sync_tid].strip(), ms([c['end'] - c['start'] for c in cyc]), ms([c['sync'] for c in cyc]),
    ms([c['wait'] for c in cyc]), ms([c['runq'] for c in cyc]),
    ms([c['end'] - c['start'] - c['sync'] - c['wait'] - c['runq'] for c in cyc])))
print("answers written per cycle %.0f (median); first answer %.2f ms after the fdatasync returned (median)" % (
    st.median(len(c['answers']) for c in cyc), ms([c['answers'][0] - c['start'] for c in cyc if c['answers']])))
PY
rm -rf "$w"
