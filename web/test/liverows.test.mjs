// liveRows against the real pgpush binary: a snapshot, then the changes
// applied by primary key, across a server restart with rows changed while
// it was down; the rows must end equal to the table. Run through
// "go test ./web/" (web/node_test.go).

import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import WebSocket from 'ws';

import { PgPush } from '../static/pgpush.js';
import { Server, freePort, login, psql, setUpShop, waitFor } from './helpers.mjs';

/** tableRows reads orders as liveRows keeps them: id → status and total. */
async function tableRows() {
  const out = await psql(`SELECT coalesce(string_agg(id || ':' || status || ':' || total, ' ' ORDER BY id), '') FROM orders`);
  return out;
}

function liveSummary(rows) {
  return rows.map((r) => `${r.id}:${r.status}:${Number(r.total).toFixed(2)}`).join(' ');
}

describe('liveRows with a real server', { timeout: 60_000 }, () => {
  /** @type {Server} */
  let server;
  /** @type {PgPush} */
  let client;
  let email;
  let password;

  before(async () => {
    ({ email, password } = await setUpShop());
    for (let i = 1; i <= 5; i++) {
      await psql(`INSERT INTO orders (order_number, total) VALUES ('ORD-${i}', ${i})`);
    }
    server = new Server(await freePort());
    await server.start();
    client = new PgPush(`ws://127.0.0.1:${server.port}/ws`, {
      WebSocket,
      headers: { Cookie: await login(server.base, email, password) },
      backoffBaseMs: 50,
      backoffMaxMs: 500,
    });
    client.on('error', () => {});
  });

  after(async () => {
    client?.close();
    await server?.stop('SIGKILL');
    console.log(`# pgpush serve log (last 4 KiB):\n${(server?.log ?? '').slice(-4096)}`);
  });

  it('keeps the rows of a snapshot plus every change, across a restart', async () => {
    const changes = [];
    const live = await client.liveRows('order_changes', {}, (rows, ev) => changes.push(ev?.event ?? 'snapshot'));
    assert.equal(liveSummary(live.rows), await tableRows(), 'the snapshot is the table');
    assert.deepEqual(changes, ['snapshot']);

    await psql(`INSERT INTO orders (order_number, total) VALUES ('ORD-6', 6)`);
    await psql(`UPDATE orders SET status = 'paid' WHERE order_number = 'ORD-2'`);
    await psql(`DELETE FROM orders WHERE order_number = 'ORD-3'`);
    let want = await tableRows();
    await waitFor('the three changes applied', () => liveSummary(live.rows) === want);

    // Down: the session is in the database, so the same cookie works after.
    await server.stop('SIGKILL');
    await psql(`UPDATE orders SET status = 'shipped', total = 99 WHERE order_number = 'ORD-1'`);
    await psql(`DELETE FROM orders WHERE order_number = 'ORD-4'`);
    await psql(`INSERT INTO orders (order_number, total) VALUES ('ORD-7', 7)`);
    await server.start();
    want = await tableRows();
    await waitFor('the rows after the restart', () => liveSummary(live.rows) === want);
    assert.ok(!changes.slice(1).includes('snapshot'), 'a reconnect resumes with since, not a second snapshot');

    await live.close();
  });

  it('applies a filter to the snapshot and the changes', async () => {
    const live = await client.liveRows('order_changes', { filter: { status: 'paid' } }, () => {});
    const paid = async () => psql(`SELECT coalesce(string_agg(id::text, ' ' ORDER BY id), '') FROM orders WHERE status = 'paid'`);
    assert.equal(live.rows.map((r) => r.id).join(' '), await paid());
    await psql(`UPDATE orders SET status = 'paid' WHERE order_number = 'ORD-5'`);
    const want = await paid();
    await waitFor('ORD-5 in the paid rows', () => live.rows.map((r) => r.id).join(' ') === want);
    await live.close();
  });

  it('rejects a channel with no table behind it', async () => {
    await psql(`SELECT pgpush.publish('alerts', 'x:y', '{}')`);
    // A published channel is known once the sequencer has numbered it.
    await waitFor('alerts to be known', async () => (await psql(`SELECT count(*) FROM pgpush.channels WHERE channel = 'alerts'`)) === '1');
    await assert.rejects(client.liveRows('alerts', {}, () => {}), /no table behind it/);
  });
});
