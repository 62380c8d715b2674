// Close codes reach a real `ws` client that is still sending when the
// server closes (SPEC §3): the server stops reading, sends the close frame
// and drains before closing, so the kernel's reset cannot overtake the
// close frame. Run through "go test ./web/" (web/node_test.go).

import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import WebSocket from 'ws';

import { Server, freePort, login, setUpShop, waitTimeoutMs } from './helpers.mjs';

describe('close codes while the client keeps sending', { timeout: 60_000 }, () => {
  /** @type {Server} */
  let server;
  let cookie;

  before(async () => {
    const { email, password } = await setUpShop();
    server = new Server(await freePort());
    await server.start();
    cookie = await login(server.base, email, password);
  });

  after(async () => {
    await server?.stop('SIGKILL');
    console.log(`# pgpush serve log (last 4 KiB):\n${(server?.log ?? '').slice(-4096)}`);
  });

  /**
   * closeWhileSending opens a socket, then sends frame over and over until
   * the socket closes, and returns the close code and any error seen.
   */
  async function closeWhileSending(frame) {
    const ws = new WebSocket(`ws://127.0.0.1:${server.port}/ws`, { headers: { Cookie: cookie } });
    const errors = [];
    ws.on('error', (err) => errors.push(err.code ?? err.message));
    await new Promise((resolve, reject) => {
      ws.once('open', resolve);
      ws.once('error', reject);
    });
    const closed = new Promise((resolve) => ws.once('close', (code) => resolve(code)));
    const timer = setTimeout(() => ws.terminate(), waitTimeoutMs);
    let open = true;
    closed.then(() => (open = false));
    while (open) {
      ws.send(frame);
      // Let the socket's events run between sends, as a busy client would.
      await new Promise((r) => setImmediate(r));
    }
    clearTimeout(timer);
    return { code: await closed, errors };
  }

  it('a frame over 64 KiB closes with 1009', async () => {
    const big = JSON.stringify({ type: 'ping', pad: 'x'.repeat(70 * 1024) });
    const { code, errors } = await closeWhileSending(big);
    assert.equal(code, 1009, `close code (errors: ${errors.join(', ')})`);
  });

  it('a flood closes with 1008', async () => {
    const { code, errors } = await closeWhileSending(JSON.stringify({ type: 'ping' }));
    assert.equal(code, 1008, `close code (errors: ${errors.join(', ')})`);
  });
});
