// ucum_lhc_bench.js — the same conversions as ucum_bench.c, with @lhncbc/ucum-lhc.
// Usage: node ucum_lhc_bench.js CASES.json   (NODE_PATH points at the bench-local install)
'use strict';
const fs = require('fs');
const ucum = require('@lhncbc/ucum-lhc');
const utils = ucum.UcumLhcUtils.getInstance();
const sets = JSON.parse(fs.readFileSync(process.argv[2], 'utf8'));

function run(name, cases, label) {
  // Only conversions ucum-lhc performs successfully are timed; the others are reported.
  const ok = cases.filter(c => utils.convertUnitTo(c.from, c.value, c.to).status === 'succeeded');
  for (const c of cases)
    if (!ok.includes(c)) console.log(`ucum-lhc    ${name}  cannot convert ${c.from} -> ${c.to}`);
  let count = 0, sum = 0;
  // Warm-up: let V8 optimize the code paths before timing, as the C side needs none.
  for (const t0 = process.hrtime.bigint(); process.hrtime.bigint() - t0 < 300000000n;)
    for (const c of ok) sum += utils.convertUnitTo(c.from, c.value, c.to).toVal;
  const start = process.hrtime.bigint();
  let elapsed = 0n;
  do {
    for (const c of ok) {
      sum += utils.convertUnitTo(c.from, c.value, c.to).toVal;
    }
    count += ok.length;
    elapsed = process.hrtime.bigint() - start;
  } while (elapsed < 500000000n);
  const rate = count / (Number(elapsed) / 1e9);
  console.log(`ucum-lhc    ${name}            ${rate.toFixed(0).padStart(12)} conversions/s  (${ok.length}/${cases.length} ${label})`);
  return sum;
}
run('parsed', sets.parsed, 'official cases');
run('common', sets.common, 'clinical units');
