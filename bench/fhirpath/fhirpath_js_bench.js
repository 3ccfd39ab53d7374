// fhirpath_js_bench.js — the same workload as fhirpath_bench.c with fhirpath.js (npm
// `fhirpath`, R4 model): each search-parameter expression compiled once, evaluated on
// each example of its type, ~1 s of CPU time per type. Results are left as fhirpath.js's internal
// nodes (resolveInternalTypes: false, its fastest mode; HoloVitals does not convert its
// results either). Usage: node fhirpath_js_bench.js CASES.json
'use strict';
const fs = require('fs');
const fhirpath = require('fhirpath');
const r4 = require('fhirpath/fhir-context/r4');
const cases = JSON.parse(fs.readFileSync(process.argv[2], 'utf8'));
const bundles = cases.bundles.map(f => JSON.parse(fs.readFileSync(f, 'utf8')));

// The same sets as fhirpath_bench.c: the examples of each type, then the first
// synthea_max resources of that type across the Synthea bundles (in the given order).
const sets = [];
for (const c of cases.types) sets.push({type: c.type, set: 'examples', exprs: c.expressions,
                                        res: c.files.map(f => JSON.parse(fs.readFileSync(f, 'utf8')))});
for (const c of cases.types) {
  const res = [];
  for (const b of bundles) for (const e of (b.entry || []))
    if (res.length < cases.synthea_max && e.resource && e.resource.resourceType === c.type) res.push(e.resource);
  sets.push({type: c.type, set: 'synthea', exprs: c.expressions, res});
}

let totalEvals = 0, totalS = 0;
for (const c of sets) {
  const res = c.res;
  if (res.length === 0) continue;
  const fns = [];
  for (const x of c.exprs) {
    try { fns.push(fhirpath.compile(x, r4, {resolveInternalTypes: false})); } catch (e) { console.log(`fhirpath.js ${c.type}: cannot compile ${x}`); }
  }
  let evals = 0, errors = 0, items = 0, passes = 0;
  // CPU time of the process (user + system), as the C side measures.
  const cpu = () => { const u = process.cpuUsage(); return (u.user + u.system) * 1000; };
  const start = cpu();
  let el = 0;
  do {
    for (const r of res) {
      for (const f of fns) {
        try { items += f(r).length; } catch (e) { errors++; }
      }
    }
    evals += res.length * fns.length;
    passes++;
    el = cpu() - start;
  } while (el < 1e9);
  const s = el / 1e9;
  console.log(`fhirpath.js ${c.type.padEnd(12)} ${c.set.padEnd(8)} ${(evals / s).toFixed(0).padStart(12)} evaluations/s  (${fns.length} expressions x ${res.length} resources; ${Math.round(items / passes)} items, ${Math.round(errors / passes)} errors per pass)`);
  totalEvals += evals;
  totalS += s;
}
console.log(`fhirpath.js ${'all'.padEnd(12)} ${''.padEnd(8)} ${(totalEvals / totalS).toFixed(0).padStart(12)} evaluations/s`);
