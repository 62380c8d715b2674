// Socket.IO clients against the real pgpush binary (SPEC §5): the real
// socket.io-client 4.x with ChapFood's connection options (auth with
// user_id and username, default transports: long-polling, then upgrade),
// and websocket-only; notifications shared with /ws clients; change events
// as Socket.IO events. Run through "go test ./web/" (web/node_test.go).

import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import { io } from 'socket.io-client';
import WebSocket from 'ws';

import { Server, freePort, login, pgpush, psql, setUpShop, waitFor } from './helpers.mjs';

/** next resolves with the next `event` on socket, or rejects after 15 s. */
function next(socket, event) {
  return new Promise((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error(`no ${event} within 15 s`)), 15_000);
    socket.once(event, (payload) => {
      clearTimeout(timer);
      resolve(payload);
    });
  });
}

/** A /ws client that keeps every frame for inspection. */
async function wsClient(url, headers = {}) {
  const ws = new WebSocket(url, { headers });
  const frames = [];
  ws.on('message', (data) => frames.push(JSON.parse(data.toString())));
  await new Promise((resolve, reject) => {
    ws.once('open', resolve);
    ws.once('error', reject);
  });
  const take = async (type) => {
    const f = await waitFor(`/ws frame ${type}`, () => frames.find((m) => m.type === type || m.event === type));
    frames.splice(frames.indexOf(f), 1);
    return f;
  };
  return { ws, take, send: (m) => ws.send(JSON.stringify(m)) };
}

describe('Socket.IO clients', { timeout: 90_000 }, () => {
  /** @type {Server} */
  let server;
  let base;
  let cookie;
  const sockets = [];

  before(async () => {
    const { email, password } = await setUpShop();
    // As the demo does: notifications need no login.
    await pgpush(['grant', 'notify:*', '--role', 'anonymous', '--publish']);
    server = new Server(await freePort());
    await server.start();
    base = `http://127.0.0.1:${server.port}`;
    cookie = await login(base, email, password);
  });

  after(async () => {
    for (const s of sockets) s.disconnect();
    await server?.stop();
  });

  function connect(opts) {
    const s = io(base, { reconnection: false, ...opts });
    sockets.push(s);
    return s;
  }

  it('default transports: connection-confirmed, then upgrade to websocket', async () => {
    const chef = connect({ auth: { user_id: 'u-1', username: 'Chef' } });
    const confirmed = await next(chef, 'connection-confirmed');
    assert.equal(confirmed.socketId.length > 0, true);
    assert.match(confirmed.serverTime, /^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z$/);
    await waitFor('upgrade to websocket', () => chef.io.engine.transport.name === 'websocket');
  });

  it('notifications between Socket.IO (polling and websocket-only) and /ws clients', async () => {
    // Every wait is set up before the action that causes it: an event that
    // arrives before its listener would be missed.
    const chef = connect({ auth: { user_id: 'u-1', username: 'Chef' } });
    const waiter = connect({ auth: { user_id: 'u-2', username: 'Waiter' }, transports: ['websocket'] });
    await Promise.all([next(chef, 'connection-confirmed'), next(waiter, 'connection-confirmed')]);

    const joinedP = next(waiter, 'channel-joined');
    waiter.emit('join-channel', 'kitchen');
    const joined = await joinedP;
    assert.equal(joined.channel, 'kitchen');
    assert.equal(typeof joined.clientCount, 'number');
    assert.equal(joined.pendingCount, 0);

    const web = await wsClient(`ws://127.0.0.1:${server.port}/ws`);
    await web.take('connected');
    web.send({ type: 'join-channel', data: 'kitchen' });
    await web.take('channel-joined');

    const sentP = next(chef, 'notification-sent');
    const gotP = next(waiter, 'notification-received');
    chef.emit('send-notification', { channel: 'kitchen', type: 'info', title: 'Order up', message: 'Table 4' });
    const sent = await sentP;
    assert.equal(sent.sender, 'Chef');
    const got = await gotP;
    assert.deepEqual(
      { title: got.title, sender: got.sender, channel: got.channel, id: got.id },
      { title: 'Order up', sender: 'Chef', channel: 'kitchen', id: sent.id },
    );
    const viaWs = await web.take('notification-received');
    assert.equal(viaWs.data.id, sent.id);

    // And back: a /ws client notifies, the Socket.IO member receives.
    const servedP = next(waiter, 'notification-received');
    web.send({ type: 'send-notification', data: { channel: 'kitchen', type: 'success', title: 'Served', message: 'Table 4' } });
    await web.take('notification-sent');
    assert.equal((await servedP).title, 'Served');

    const invalidP = next(chef, 'error-message');
    chef.emit('send-notification', { type: 'nope' });
    const invalid = await invalidP;
    assert.ok(invalid.errors.length >= 3, `errors: ${JSON.stringify(invalid.errors)}`);

    const statsP = next(chef, 'server-stats');
    chef.emit('get-stats');
    assert.equal(typeof (await statsP).connectedClients, 'number');
    const leftP = next(waiter, 'channel-left');
    waiter.emit('leave-channel', 'kitchen');
    assert.equal((await leftP).channel, 'kitchen');
    web.ws.close();
  });

  for (const transports of [undefined, ['websocket']]) {
    it(`subscribe to changes as events (${transports ? 'websocket only' : 'default transports'})`, async () => {
      const admin = connect({ transports, extraHeaders: { Cookie: cookie } });
      await next(admin, 'connection-confirmed');
      const subscribedP = next(admin, 'subscribed');
      admin.emit('subscribe', { channel: 'order_changes' });
      assert.equal((await subscribedP).channel, 'order_changes');
      const number = `ORD-sio-${transports ? 'ws' : 'default'}`;
      const createdP = next(admin, 'order:created');
      await psql(`INSERT INTO orders (order_number) VALUES ('${number}')`);
      const created = await createdP;
      assert.equal(created.event, 'order:created');
      assert.equal(created.channel, 'order_changes');
      assert.equal(created.data.order_number, number);
      const updatedP = next(admin, 'order:updated');
      await psql(`UPDATE orders SET status = 'paid' WHERE order_number = '${number}'`);
      assert.deepEqual((await updatedP).data.changed_fields, { status: 'paid' });
      const unsubscribedP = next(admin, 'unsubscribed');
      admin.emit('unsubscribe', { channel: 'order_changes' });
      await unsubscribedP;
    });
  }

  it('a snapshot as snapshot events, then changes (SPEC §3.2)', async () => {
    const admin = connect({ transports: ['websocket'], extraHeaders: { Cookie: cookie } });
    await next(admin, 'connection-confirmed');
    const want = await psql(`SELECT string_agg(order_number, ' ' ORDER BY id) FROM orders`);
    const rows = [];
    let last;
    admin.on('snapshot', (m) => {
      assert.equal(m.channel, 'order_changes');
      rows.push(...m.rows);
      last = m;
    });
    const subscribedP = next(admin, 'subscribed');
    admin.emit('subscribe', { channel: 'order_changes', snapshot: true });
    const subscribed = await subscribedP;
    assert.equal(last?.more, false, 'the last snapshot event says more: false');
    assert.equal(rows.map((r) => r.order_number).join(' '), want);
    assert.equal(typeof subscribed.position, 'string');
    const createdP = next(admin, 'order:created');
    await psql(`INSERT INTO orders (order_number) VALUES ('ORD-sio-after-snapshot')`);
    assert.equal((await createdP).data.order_number, 'ORD-sio-after-snapshot');
  });

  it('an anonymous Socket.IO client cannot subscribe to changes', async () => {
    const stranger = connect({ auth: { username: 'Stranger' } });
    await next(stranger, 'connection-confirmed');
    const errP = next(stranger, 'error');
    stranger.emit('subscribe', { channel: 'order_changes' });
    const err = await errP;
    assert.match(err.message, /not allowed/);
  });
});
