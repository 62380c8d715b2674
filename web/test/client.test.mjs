// pgpush.js against the real pgpush binary: typed handlers, publish, and a
// server restart in the middle of a stream of inserts that must lose and
// repeat nothing. Run through "go test ./web/" (web/node_test.go), which
// builds the binary and makes a fresh database.

import assert from 'node:assert/strict';
import { once } from 'node:events';
import { after, before, describe, it } from 'node:test';
import WebSocket, { WebSocketServer } from 'ws';

import { PgPush, backoffDelay } from '../static/pgpush.js';
import { Server, freePort, login, psql, setUpShop, waitFor } from './helpers.mjs';

describe('backoffDelay', () => {
  it('stays within [0, min(cap, base·2^attempt))', () => {
    const cases = [
      // attempt, random, want
      [0, 0, 0],
      [0, 0.999, 249],
      [1, 0.5, 250],
      [3, 0.5, 1000],
      [10, 0.5, 5000], // capped at 10 s
      [1000, 0.5, 5000], // no overflow to Infinity or NaN
    ];
    for (const [attempt, r, want] of cases) {
      const got = backoffDelay(attempt, 250, 10_000, () => r);
      assert.equal(got, want, `backoffDelay(${attempt}) with random ${r}`);
    }
  });
});

describe('pgpush.js with a real server', { timeout: 60_000 }, () => {
  /** @type {Server} */
  let server;
  /** @type {PgPush} */
  let client;
  /** every channel event the client delivered, in order */
  const events = [];
  /** every event frame on the wire, duplicates included */
  let rawEventFrames = 0;
  const closes = [];
  const subscribed = [];

  before(async () => {
    const { email, password } = await setUpShop();
    server = new Server(await freePort());
    await server.start();
    const cookie = await login(server.base, email, password);
    client = new PgPush(`ws://127.0.0.1:${server.port}/ws`, {
      WebSocket,
      headers: { Cookie: cookie },
      // Short timings keep the restart test fast.
      backoffBaseMs: 50,
      backoffMaxMs: 500,
      pingIntervalMs: 1000,
      pongTimeoutMs: 3000,
    });
    client.on('*', (ev) => events.push(ev));
    client.on('message', (m) => {
      if (m.event) rawEventFrames++;
    });
    client.on('close', (info) => closes.push(info));
    client.on('subscribed', (s) => subscribed.push(s));
    client.on('error', () => {}); // asserted where expected
    await client.once('open');
  });

  after(async () => {
    client?.close();
    await server?.stop('SIGKILL');
    // Shown by go test only on failure or with -v.
    console.log(`# pgpush serve log (last 4 KiB):\n${(server?.log ?? '').slice(-4096)}`);
  });

  it('subscribes and delivers created, updated (typed handler) and deleted', async () => {
    const updated = [];
    const off = client.on('order:updated', (ev) => updated.push(ev));
    assert.deepEqual(await client.subscribe('order_changes'), { channel: 'order_changes' });

    const id = await psql(`INSERT INTO orders (order_number, total) VALUES ('ORD-1', 9.99) RETURNING id`);
    const created = await waitFor('order:created', () =>
      events.find((e) => e.event === 'order:created' && String(e.data.id) === id),
    );
    assert.equal(created.channel, 'order_changes');
    assert.equal(typeof created.id, 'string');
    assert.equal(created.data.order_number, 'ORD-1');
    assert.equal(created.data.total, 9.99, 'numbers stay JSON numbers');
    assert.match(created.timestamp, /^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z$/);

    await psql(`UPDATE orders SET status = 'paid' WHERE id = ${id}`);
    const ev = await waitFor('the typed order:updated handler', () => updated[0]);
    assert.equal(ev.event, 'order:updated');
    assert.deepEqual(ev.data.changed_fields, { status: 'paid' });
    assert.equal(ev.data.status, 'paid');
    off();

    await psql(`DELETE FROM orders WHERE id = ${id}`);
    await waitFor('order:deleted', () => events.find((e) => e.event === 'order:deleted' && String(e.data.id) === id));
    assert.equal(updated.length, 1, 'the handler removed by off() fired again');
  });

  it('publish resolves with the id of the event subscribers get', async () => {
    const ack = await client.publish('order_changes', 'order:note', { text: 'hello' });
    assert.equal(ack.channel, 'order_changes');
    assert.equal(typeof ack.id, 'string');
    const ev = await waitFor('the published event', () => events.find((e) => e.id === ack.id));
    assert.equal(ev.event, 'order:note');
    assert.deepEqual(ev.data, { text: 'hello' });
  });

  it('rejects a subscribe the server refuses, and stays usable', async () => {
    await assert.rejects(client.subscribe('no_such_channel'), (err) => {
      assert.equal(err.channel, 'no_such_channel');
      return true;
    });
    assert.equal(client.subs.has('no_such_channel'), false, 'a refused channel is not retried on reconnect');
    await client.subscribe('order_changes'); // already active: resolves at once
  });

  it('resumes after a server restart with every row exactly once and in order', async () => {
    const firstEvent = events.length;
    const inserted = [];
    let stop = false;
    let writerError = null;
    // One writer commits rows one after another, through the restart: the
    // rows committed while the server is down must be replayed.
    const writer = (async () => {
      let n = 0;
      while (!stop) {
        n++;
        inserted.push(await psql(`INSERT INTO orders (order_number) VALUES ('R-${n}') RETURNING id`));
      }
    })().catch((err) => (writerError = err));
    const createdIds = () =>
      events
        .slice(firstEvent)
        .filter((e) => e.event === 'order:created')
        .map((e) => String(e.data.id));

    let insertedWhileDown = 0;
    try {
      await waitFor('events before the restart', () => createdIds().length >= 5);
      const closesBefore = closes.length;
      const subscribedBefore = subscribed.length;
      await server.stop('SIGTERM');
      await waitFor('the client to see the connection close', () => closes.length > closesBefore);
      assert.equal(closes.at(-1).willReconnect, true, `close ${JSON.stringify(closes.at(-1))}`);

      insertedWhileDown = inserted.length;
      await waitFor('rows committed while the server is down', () => inserted.length >= insertedWhileDown + 5);
      await server.start();
      await waitFor('the client to re-subscribe', () =>
        subscribed.slice(subscribedBefore).find((s) => s.channel === 'order_changes'),
      );
      assert.equal(subscribed.at(-1).resumed, true, 're-subscribed without since');
      const insertedAtResume = inserted.length;
      await waitFor('rows committed after the restart', () => inserted.length >= insertedAtResume + 5);
    } finally {
      stop = true; // a failed wait must not leave the writer running
      await writer;
    }
    assert.equal(writerError, null);

    await waitFor(`all ${inserted.length} rows`, () => createdIds().length >= inserted.length);
    assert.deepEqual(createdIds(), inserted, 'rows lost, repeated or out of order');
    const ids = events.slice(firstEvent).map((e) => e.id);
    assert.equal(new Set(ids).size, ids.length, 'an event id was delivered twice');
    console.log(
      `# restart: ${inserted.length} rows, ${inserted.length - insertedWhileDown} committed after the stop; ` +
        `${rawEventFrames} event frames on the wire, ${client.duplicates} duplicates dropped`,
    );
  });
});

// The cases below need exact control over what the server sends, so they
// run against a scripted WebSocket server instead of pgpush.
describe('pgpush.js against a scripted server', { timeout: 30_000 }, () => {
  /** @type {WebSocketServer} */
  let wss;
  let url;
  /** the server side of each accepted socket, in order */
  const sockets = [];
  /** frames received by the server, as [socket index, parsed frame] */
  const frames = [];
  /** @type {(i: number, msg: object, sock: WebSocket) => void} */
  let script = () => {};

  before(async () => {
    wss = new WebSocketServer({ host: '127.0.0.1', port: 0 });
    await once(wss, 'listening');
    url = `ws://127.0.0.1:${wss.address().port}/ws`;
    wss.on('connection', (sock) => {
      const i = sockets.push(sock) - 1;
      sock.send(JSON.stringify({ type: 'connected', message: 'WebSocket connection established', userId: 1 }));
      sock.on('message', (raw) => {
        const msg = JSON.parse(String(raw));
        frames.push([i, msg]);
        script(i, msg, sock);
      });
    });
  });

  after(async () => {
    for (const s of sockets) s.terminate();
    wss.close();
  });

  const reset = () => {
    for (const s of sockets) s.terminate();
    sockets.length = 0;
    frames.length = 0;
  };

  it('drops a socket whose pong does not come, and reconnects', async () => {
    reset();
    let answer = false;
    script = (i, msg, sock) => {
      if (msg.type === 'ping' && answer) sock.send('{"type":"pong"}');
    };
    const closes = [];
    const c = new PgPush(url, { WebSocket, pingIntervalMs: 30, pongTimeoutMs: 100, backoffBaseMs: 10 });
    c.on('close', (info) => closes.push(info));
    try {
      await waitFor('a heartbeat timeout', () => closes.find((x) => x.code === 4000));
      assert.equal(closes[0].willReconnect, true);
      answer = true;
      await waitFor('a second connection', () => sockets.length >= 2 && c.connected);
      const n = closes.length;
      const pings = () => frames.filter(([i, m]) => i === sockets.length - 1 && m.type === 'ping').length;
      await waitFor('pings answered on the new socket', () => pings() >= 5);
      assert.equal(closes.length, n, 'a socket whose pongs come was dropped');
    } finally {
      c.close();
    }
  });

  it('resumes from the last id received, not the largest, and drops duplicates', async () => {
    reset();
    const ev = (id) =>
      JSON.stringify({ id, channel: 'c', event: 'x:created', data: { n: id }, timestamp: '2026-01-25T10:30:00.000Z' });
    script = (i, msg, sock) => {
      if (msg.type !== 'subscribe') return;
      sock.send(JSON.stringify({ type: 'subscribed', channel: 'c' }));
      if (i === 0) {
        // Ids follow commit order, not numeric order; one comes twice.
        for (const id of ['5', '3', '5']) sock.send(ev(id));
        sock.once('message', () => sock.terminate()); // the client's next frame: the ping
        return;
      }
      sock.send(ev('3')); // replayed again: a duplicate
      sock.send(ev('9'));
      sock.send(JSON.stringify({ type: 'resync_required', channel: 'c' }));
    };
    const got = [];
    const resyncs = [];
    const c = new PgPush(url, { WebSocket, pingIntervalMs: 50, backoffBaseMs: 10 });
    c.on('*', (e) => got.push(e.id));
    c.on('resync_required', (r) => resyncs.push(r));
    try {
      await c.subscribe('c', { filter: { status: 'paid' } });
      await waitFor('the resync notice', () => resyncs.length === 1);
      const subs = frames.filter(([, m]) => m.type === 'subscribe');
      assert.deepEqual(
        subs.map(([i, m]) => [i, m]),
        [
          [0, { type: 'subscribe', channel: 'c', filter: { status: 'paid' } }],
          [1, { type: 'subscribe', channel: 'c', since: '3', filter: { status: 'paid' } }],
        ],
      );
      assert.deepEqual(got, ['5', '3', '9']);
      assert.equal(c.duplicates, 2);
    } finally {
      c.close();
    }
  });

  it('queues publishes while disconnected and rejects those lost in a drop', async () => {
    reset();
    script = (i, msg, sock) => {
      if (msg.type !== 'publish') return;
      if (msg.event === 'lost') sock.terminate();
      else sock.send(JSON.stringify({ type: 'published', channel: msg.channel, id: '77' }));
    };
    const c = new PgPush(url, { WebSocket, backoffBaseMs: 10 });
    try {
      // Sent once the socket opens.
      assert.deepEqual(await c.publish('c', 'ok', { a: 1 }), { channel: 'c', id: '77' });
      await assert.rejects(c.publish('c', 'lost'), /connection lost/);
      await waitFor('the reconnect', () => c.connected);
      assert.deepEqual(await c.publish('c', 'ok'), { channel: 'c', id: '77' });
    } finally {
      c.close();
    }
    await assert.rejects(c.publish('c', 'ok'), /closed/);
  });
});
