// parse.js — the npm HL7 v2 parsers on the corpus that bench/bin/hl7v2_parse reads.
//
//   node parse.js [--seconds 2] DIR|FILE...    (run through run.sh, which installs them)
//
// Loads every message of the .hl7/.txt files (batches split at MSH; FHS/BHS/BTS/FTS
// lines dropped; segment terminators normalized to CR, which both parsers expect),
// keeps those each parser accepts, and parses them in a loop for --seconds.
// Prints messages/s and MB/s per parser, in the format of hl7v2_parse.
'use strict';
const fs = require('fs');
const path = require('path');

let seconds = 2;
const inputs = [];
for (let i = 2; i < process.argv.length; i++) {
  if (process.argv[i] === '--seconds') seconds = Number(process.argv[++i]);
  else inputs.push(process.argv[i]);
}

const messages = [];
function addFile(p) {
  const text = fs.readFileSync(p, 'latin1').replace(/^\ufeff|^\xef\xbb\xbf/, '');
  let cur = null;
  for (const line of text.split(/\r\n|\r|\n/)) {
    if (line.length === 0) continue;
    const id = line.slice(0, 3);
    if (id === 'MSH') {
      if (cur) messages.push(cur.join('\r') + '\r');
      cur = [line];
    } else if (id === 'FHS' || id === 'BHS' || id === 'BTS' || id === 'FTS') {
      if (cur) messages.push(cur.join('\r') + '\r');
      cur = null;
    } else if (cur) {
      cur.push(line);
    }
  }
  if (cur) messages.push(cur.join('\r') + '\r');
}
function addPath(p) {
  const st = fs.statSync(p);
  if (st.isDirectory()) {
    for (const e of fs.readdirSync(p)) if (!e.startsWith('.')) addPath(path.join(p, e));
  } else if (/\.(hl7|txt)$/.test(p)) {
    addFile(p);
  }
}
inputs.forEach(addPath);

function bench(name, parseOne) {
  const ok = messages.filter((m) => {
    try { parseOne(m); return true; } catch (e) { return false; }
  });
  const bytes = ok.reduce((a, m) => a + Buffer.byteLength(m, 'latin1'), 0);
  let n = 0, b = 0;
  const t0 = process.hrtime.bigint();
  let t;
  do {
    for (const m of ok) { parseOne(m); n++; }
    b += bytes;
    t = Number(process.hrtime.bigint() - t0) / 1e9;
  } while (t < seconds);
  console.log(`${name.padEnd(28)} ${String(Math.round(n / t)).padStart(10)} msgs/s ${(b / 1e6 / t).toFixed(1).padStart(9)} MB/s  (${ok.length}/${messages.length} messages parsed)`);
}

const redox = require('@redoxengine/redox-hl7-v2');
const redoxParser = new redox.Parser();
bench('@redoxengine/redox-hl7-v2', (m) => redoxParser.parse(m));

const { HL7Message } = require('hl7v2');
bench('hl7v2@1.8.0', (m) => HL7Message.parse(m));
