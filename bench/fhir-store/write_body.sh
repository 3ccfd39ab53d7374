# bench/fhir-store/write_body.sh — sourced by write_callgrind.sh and write_cpu.sh: sets `path`,
# `body` and `prefer` (a wrk Lua line) for $mode, create or tx — bench/fhir-store/run.sh's bodies.
if [ "$mode" = tx ]; then
  path=/fhir
  body='{"resourceType":"Bundle","type":"transaction","entry":[{"fullUrl":"urn:uuid:0a0b0c0d-0000-4000-8000-000000000001","resource":{"resourceType":"Patient","name":[{"family":"Tx"}]},"request":{"method":"POST","url":"Patient"}},{"resource":{"resourceType":"Observation","status":"final","code":{"text":"hr"},"subject":{"reference":"urn:uuid:0a0b0c0d-0000-4000-8000-000000000001"}},"request":{"method":"POST","url":"Observation"}}]}'
  prefer=
else
  path=/fhir/Patient
  body='{"resourceType":"Patient","identifier":[{"system":"urn:bench","value":"1"}],"name":[{"family":"Bench","given":["Wrk"]}],"gender":"female","birthDate":"1970-01-01"}'
  prefer='wrk.headers["Prefer"] = "return=minimal"'
fi
