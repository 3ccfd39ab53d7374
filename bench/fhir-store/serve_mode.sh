# bench/fhir-store/serve_mode.sh — sourced by threads_cpu.sh, commit_count.sh and commit_trace.sh
# (the server and the request body they share) and by run.sh (the request body).

# bench_body MODE FILE: writes the wrk script of MODE (create or tx, as below) into FILE; run.sh
# uses it too.
bench_body() {
  if [ "$1" = create ]; then
    cat > "$2" <<'LUA'
wrk.method = "POST"
wrk.headers["Content-Type"] = "application/fhir+json"
wrk.headers["Prefer"] = "return=minimal"
wrk.body = '{"resourceType":"Patient","identifier":[{"system":"urn:bench","value":"1"}],"name":[{"family":"Bench","given":["Wrk"]}],"gender":"female","birthDate":"1970-01-01"}'
LUA
  else
    cat > "$2" <<'LUA'
wrk.method = "POST"
wrk.path = "/fhir"
wrk.headers["Content-Type"] = "application/fhir+json"
wrk.body = '{"resourceType":"Bundle","type":"transaction","entry":[{"fullUrl":"urn:uuid:0a0b0c0d-0000-4000-8000-000000000001","resource":{"resourceType":"Patient","name":[{"family":"Tx"}]},"request":{"method":"POST","url":"Patient"}},{"resource":{"resourceType":"Observation","status":"final","code":{"text":"hr"},"subject":{"reference":"urn:uuid:0a0b0c0d-0000-4000-8000-000000000001"}},"request":{"method":"POST","url":"Observation"}}]}'
LUA
  fi
}

#   serve_mode MODE [NAME=VALUE...]
#
# With $bin (the holovitals binary) and $w (a fresh work directory) set: writes the wrk script of
# MODE into $w/w.lua — create: POST /fhir/Patient with Prefer: return=minimal; tx: a two-entry
# transaction (Patient + Observation referring to it by urn:uuid) — and sets path; starts
# `holovitals serve` (validation reject, data directory $w/data, auth off, the NAME=VALUE
# arguments in its environment) on a random loopback port, sets port and pid, and waits until
# /health answers.
serve_mode() {
  local mode=$1; shift
  mkdir -p "$w/ch"
  port=$((31000 + RANDOM % 3000))
  bench_body "$mode" "$w/w.lua"
  path=/fhir/Patient; [ "$mode" = create ] || path=/fhir
  env HOLOVITALS_FHIR_VALIDATION=reject "$@" "$bin" serve --data "$w/data" --http "127.0.0.1:$port" \
    --mllp "127.0.0.1:$((port + 300))" --channels "$w/ch" --auth off --log-level warn >/dev/null 2>"$w/err" &
  pid=$!
  for _ in $(seq 300); do curl -sf "http://127.0.0.1:$port/health" >/dev/null && break; sleep 0.1; done
}
