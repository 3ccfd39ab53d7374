// fhirpath_js_bench.js — the same workload as fhirpath_bench.c with fhirpath.js (npm
// `fhirpath`, R4 model): each search-parameter expression compiled once, evaluated on
// each example of its type, ~1 s per type. Results are left as fhirpath.js's internal
// nodes (resolveInternalTypes: false, its fastest mode; HoloVitals does not convert its
// results either). Usage: node fhirpath_js_bench.js CASES.json
'use strict';
const fs = require('fs');
const fhirpath = require('fhirpath');
const r4 = require('fhirpath/fhir-context/r4');
const cases = JSON.parse(fs.readFileSync(process.argv[2], 'utf8'));

let totalEvals = 0, totalS = 0;
for (const c of cases) {
  const res = c.files.map(f => JSON.parse(fs.readFileSync(f, 'utf8')));
  const fns = [];
  for (const x of c.expressions) {
    try { fns.push(fhirpath.compile(x, r4, {resolveInternalTypes: false})); } catch (e) { console.log(`fhirpath.js ${c.type}: cannot compile ${x}`); }
  }
  let evals = 0, errors = 0, items = 0, passes = 0;
  const start = process.hrtime.bigint();
  let el = 0n;
  do {
    for (const r of res) {
      for (const f of fns) {
        try { items += f(r).length; } catch (e) { errors++; }
      }
    }
    evals += res.length * fns.length;
    passes++;
    el = process.hrtime.bigint() - start;
  } while (el < 1000000000n);
  const s = Number(el) / 1e9;
  console.log(`fhirpath.js ${c.type.padEnd(12)} ${(evals / s).toFixed(0).padStart(12)} evaluations/s  (${fns.length} expressions x ${res.length} examples; ${Math.round(items / passes)} items, ${Math.round(errors / passes)} errors per pass)`);
  totalEvals += evals;
  totalS += s;
}
console.log(`fhirpath.js ${'all'.padEnd(12)} ${(totalEvals / totalS).toFixed(0).padStart(12)} evaluations/s`);
