// client.mjs — drives a HoloVitals server with fhir-kit-client, a third-party FHIR R4 client.
// Usage: node client.mjs BASEURL. Prints one line per check and exits 1 on the first failure.
import { Client } from 'fhir-kit-client';
import assert from 'node:assert/strict';

const client = new Client({ baseUrl: process.argv[2] });
const step = (name) => console.log('ok - ' + name);

async function main() {
  const cs = await client.capabilityStatement();
  assert.equal(cs.resourceType, 'CapabilityStatement');
  assert.ok(cs.rest[0].resource.some((r) => r.type === 'Patient'));
  step('capabilityStatement');

  const created = await client.create({
    resourceType: 'Patient',
    body: { resourceType: 'Patient', name: [{ family: 'Kit', given: ['Client'] }], gender: 'female' },
  });
  assert.ok(created.id);
  assert.equal(created.meta.versionId, '1');
  step('create');

  const read = await client.read({ resourceType: 'Patient', id: created.id });
  assert.deepEqual(read, created);
  step('read');

  const updated = await client.update({ resourceType: 'Patient', id: created.id, body: { ...read, gender: 'other' } });
  assert.equal(updated.meta.versionId, '2');
  assert.equal(updated.gender, 'other');
  step('update');

  const v1 = await client.vread({ resourceType: 'Patient', id: created.id, version: '1' });
  assert.equal(v1.gender, 'female');
  step('vread');

  const patched = await client.patch({
    resourceType: 'Patient', id: created.id,
    jsonPatch: [{ op: 'replace', path: '/gender', value: 'male' }],
  });
  assert.equal(patched.gender, 'male');
  assert.equal(patched.meta.versionId, '3');
  step('patch');

  const hist = await client.history({ resourceType: 'Patient', id: created.id });
  assert.equal(hist.type, 'history');
  assert.deepEqual(hist.entry.map((e) => e.resource.meta.versionId), ['3', '2', '1']);
  const typeHist = await client.request('Patient/_history?_count=2');
  assert.equal(typeHist.entry.length, 2);
  const next = await client.nextPage({ bundle: typeHist });
  assert.equal(next.entry.length, 1);
  const sysHist = await client.history();
  assert.equal(sysHist.entry.length, 3);
  step('history (instance, type with paging, system)');

  await client.delete({ resourceType: 'Patient', id: created.id });
  await assert.rejects(client.read({ resourceType: 'Patient', id: created.id }), (err) => {
    assert.equal(err.response.status, 410);
    return true;
  });
  step('delete, then read is 410');

  const batch = await client.batch({
    body: {
      resourceType: 'Bundle', type: 'batch',
      entry: [
        { resource: { resourceType: 'Patient', name: [{ family: 'B1' }] }, request: { method: 'POST', url: 'Patient' } },
        { request: { method: 'GET', url: 'Patient/nope' } },
      ],
    },
  });
  assert.equal(batch.type, 'batch-response');
  assert.deepEqual(batch.entry.map((e) => e.response.status.split(' ')[0]), ['201', '404']);
  step('batch');

  const tx = await client.transaction({
    body: {
      resourceType: 'Bundle', type: 'transaction',
      entry: [
        { fullUrl: 'urn:uuid:7f0a5c1e-0000-4000-8000-000000000001',
          resource: { resourceType: 'Patient', name: [{ family: 'T1' }] }, request: { method: 'POST', url: 'Patient' } },
        { resource: { resourceType: 'Observation', status: 'final', code: { text: 'weight' },
          subject: { reference: 'urn:uuid:7f0a5c1e-0000-4000-8000-000000000001' } },
          request: { method: 'POST', url: 'Observation' } },
      ],
    },
  });
  assert.equal(tx.type, 'transaction-response');
  const obsId = tx.entry[1].response.location.split('/')[1];
  const patId = tx.entry[0].response.location.split('/')[1];
  const obs = await client.read({ resourceType: 'Observation', id: obsId });
  assert.equal(obs.subject.reference, 'Patient/' + patId);
  step('transaction with urn:uuid references');

  await assert.rejects(client.transaction({
    body: {
      resourceType: 'Bundle', type: 'transaction',
      entry: [
        { resource: { resourceType: 'Patient', name: [{ family: 'Never' }] }, request: { method: 'PUT', url: 'Patient/never1' } },
        { resource: { resourceType: 'Observation', status: 'final', code: { text: 'x' }, subject: { reference: 'urn:uuid:none' } },
          request: { method: 'POST', url: 'Observation' } },
      ],
    },
  }), (err) => { assert.equal(err.response.status, 400); return true; });
  await assert.rejects(client.read({ resourceType: 'Patient', id: 'never1' }), (err) => {
    assert.equal(err.response.status, 404);
    return true;
  });
  step('failed transaction rolls back');
}

main().catch((err) => {
  console.error('not ok -', err && err.stack ? err.stack : err);
  if (err && err.response) console.error('response', err.response.status, JSON.stringify(err.response.data));
  process.exit(1);
});
