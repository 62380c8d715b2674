// The real socket.io-client 4.x against pgpush's limits on what anonymous
// clients may do (SPEC §4, §5; issue 13): Socket.IO sessions count against
// SOCKETS_PER_ADDRESS with /ws, packets are capped at 64 KiB, the auth
// payload is bounded, and an anonymous name is at most 100 characters and
// never looks like an e-mail address. Run through "go test ./web/"
// (web/node_test.go).

import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import { io } from 'socket.io-client';
import WebSocket from 'ws';

import { Server, freePort, login, pgpush, setUpShop, waitFor } from './helpers.mjs';

/**
 * next resolves with the first argument of the next `event` on socket for
 * which match holds, or rejects after 15 s.
 */
function next(socket, event, match = () => true) {
  return new Promise((resolve, reject) => {
    const timer = setTimeout(() => {
      socket.off(event, listener);
      reject(new Error(`no ${event} within 15 s`));
    }, 15_000);
    const listener = (payload) => {
      if (!match(payload)) return;
      clearTimeout(timer);
      socket.off(event, listener);
      resolve(payload);
    };
    socket.on(event, listener);
  });
}

describe('Socket.IO limits', { timeout: 90_000 }, () => {
  /** @type {Server} */
  let server;
  /** @type {Server} */
  let tight; // SOCKETS_PER_ADDRESS=2
  let cookie;
  const sockets = [];

  before(async () => {
    const { email, password } = await setUpShop();
    await pgpush(['grant', 'notify:*', '--role', 'anonymous', '--publish']);
    server = new Server(await freePort());
    tight = new Server(await freePort(), { SOCKETS_PER_ADDRESS: '2' });
    await Promise.all([server.start(), tight.start()]);
    cookie = await login(server.base, email, password);
  });

  after(async () => {
    for (const s of sockets) s.disconnect();
    await Promise.all([server?.stop(), tight?.stop()]);
  });

  function connect(srv, opts) {
    const s = io(srv.base, { reconnection: false, ...opts });
    sockets.push(s);
    return s;
  }

  it('Socket.IO sessions count against SOCKETS_PER_ADDRESS together with /ws: 429 beyond', async () => {
    const a = connect(tight, { auth: { username: 'A' } });
    await next(a, 'connection-confirmed');
    const ws = new WebSocket(`ws://127.0.0.1:${tight.port}/ws`);
    await new Promise((resolve, reject) => {
      ws.once('open', resolve);
      ws.once('error', reject);
    });

    const refused = connect(tight, {});
    const err = await next(refused, 'connect_error');
    assert.equal(err.description, 429, `connect_error ${err.message}, description ${err.description}`);
    const wsRefused = new WebSocket(`ws://127.0.0.1:${tight.port}/ws`);
    const status = await new Promise((resolve) => {
      wsRefused.once('unexpected-response', (_req, res) => resolve(res.statusCode));
      wsRefused.once('open', () => resolve('open'));
    });
    assert.equal(status, 429);

    // A session that ends gives its slot back.
    a.disconnect();
    await waitFor('a free slot after a Socket.IO client left', async () => {
      const s = connect(tight, {});
      const got = await Promise.race([next(s, 'connection-confirmed'), next(s, 'connect_error').then(() => null)]);
      if (!got) s.disconnect();
      return got;
    });
    ws.close();
  });

  it('a packet over 64 KiB ends the session; one within passes', async () => {
    for (const transports of [['polling'], ['websocket']]) {
      const s = connect(server, { transports });
      await next(s, 'connection-confirmed');
      const statsP = next(s, 'server-stats');
      s.emit('get-stats', 'x'.repeat(60_000));
      await statsP;
      const goneP = next(s, 'disconnect');
      s.emit('get-stats', 'x'.repeat(70_000));
      const reason = await goneP;
      assert.match(String(reason), /transport (close|error)/, `${transports}: ${reason}`);
    }
  });

  it('an auth payload over 4 KiB is refused with connect_error', async () => {
    const s = connect(server, { auth: { username: 'u'.repeat(5_000) } });
    const err = await next(s, 'connect_error');
    assert.match(err.message, /auth: at most 4 KiB/);
    assert.equal(s.connected, false);
    s.close();
  });


  it('anonymous names: at most 100 characters, never an e-mail address; notifications say who logged in', async () => {
    const notification = { type: 'info', title: 'Order up', message: 'Table 4' };
    for (const [username, want] of [
      ['admin@example.com', /e-mail/],
      ['admin＠example.com', /e-mail/],
      ['é'.repeat(101), /100 characters/],
    ]) {
      const s = connect(server, { auth: { user_id: 'u-9', username } });
      await next(s, 'connection-confirmed');
      const refusedP = next(s, 'error-message');
      s.emit('send-notification', notification);
      const refused = await refusedP;
      assert.match(refused.errors.join('; '), want, `username ${username.slice(0, 20)}…`);
    }

    const nul = connect(server, { auth: { username: 'Chef' } });
    await next(nul, 'connection-confirmed');
    const nulP = next(nul, 'error-message');
    nul.emit('send-notification', { ...notification, title: 'a\u0000b' });
    assert.match((await nulP).errors.join('; '), /NUL/);

    const chef = connect(server, { auth: { user_id: 'u-1', username: 'é'.repeat(100) } });
    const admin = connect(server, { extraHeaders: { Cookie: cookie } });
    await Promise.all([next(chef, 'connection-confirmed'), next(admin, 'connection-confirmed')]);
    // To everyone, the sender included: each waits for the other's.
    let gotP = next(admin, 'notification-received', (n) => n.title === 'from Chef');
    chef.emit('send-notification', { ...notification, title: 'from Chef' });
    let got = await gotP;
    assert.deepEqual({ sender: got.sender, authenticated: got.authenticated }, { sender: 'é'.repeat(100), authenticated: false });
    gotP = next(chef, 'notification-received', (n) => n.title === 'from the admin');
    admin.emit('send-notification', { ...notification, title: 'from the admin' });
    got = await gotP;
    assert.deepEqual({ sender: got.sender, authenticated: got.authenticated }, { sender: 'admin@example.com', authenticated: true });
  });
});
