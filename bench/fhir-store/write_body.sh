# bench/fhir-store/write_body.sh — sourced by write_callgrind.sh and write_cpu.sh: sets `path`,
# `body` and `prefer` (a wrk Lua line) for $mode, create or tx — bench/fhir-store/run.sh's bodies —
# or txobs (tx whose Observation makes combined rows: docs/performance.md, session 10).
if [ "$mode" = txobs ]; then
  # tx with an Observation that makes combined and _has rows (a coded code, a date, a UCUM
  # quantity and a subject: one sp_tokdate, one sp_tokqty and two sp_reftok rows)
  path=/fhir
  body='{"resourceType":"Bundle","type":"transaction","entry":[{"fullUrl":"urn:uuid:0a0b0c0d-0000-4000-8000-000000000001","resource":{"resourceType":"Patient","name":[{"family":"Tx"}]},"request":{"method":"POST","url":"Patient"}},{"resource":{"resourceType":"Observation","status":"final","code":{"coding":[{"system":"http://loinc.org","code":"8867-4"}],"text":"hr"},"effectiveDateTime":"2020-01-02T10:00:00Z","valueQuantity":{"value":72,"unit":"/min","system":"http://unitsofmeasure.org","code":"/min"},"subject":{"reference":"urn:uuid:0a0b0c0d-0000-4000-8000-000000000001"}},"request":{"method":"POST","url":"Observation"}}]}'
  prefer=
elif [ "$mode" = tx ]; then
  path=/fhir
  body='{"resourceType":"Bundle","type":"transaction","entry":[{"fullUrl":"urn:uuid:0a0b0c0d-0000-4000-8000-000000000001","resource":{"resourceType":"Patient","name":[{"family":"Tx"}]},"request":{"method":"POST","url":"Patient"}},{"resource":{"resourceType":"Observation","status":"final","code":{"text":"hr"},"subject":{"reference":"urn:uuid:0a0b0c0d-0000-4000-8000-000000000001"}},"request":{"method":"POST","url":"Observation"}}]}'
  prefer=
else
  path=/fhir/Patient
  body='{"resourceType":"Patient","identifier":[{"system":"urn:bench","value":"1"}],"name":[{"family":"Bench","given":["Wrk"]}],"gender":"female","birthDate":"1970-01-01"}'
  prefer='wrk.headers["Prefer"] = "return=minimal"'
fi
