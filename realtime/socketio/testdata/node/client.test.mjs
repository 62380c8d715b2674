// Drives the real socket.io-client (pinned in package.json) against the Go
// server that socketio_node_test.go starts; SOCKETIO_URL names it. The Go
// side echoes 'echo', answers 'whoami' with Auth(), counts 'seq', emits
// 'burst' events on demand and closes on 'disconnect-me'; it pings every
// 300 ms.
import { test } from "node:test";
import assert from "node:assert/strict";
import { io } from "socket.io-client";

const url = process.env.SOCKETIO_URL;
if (!url) {
  throw new Error("SOCKETIO_URL is not set: run go test ./realtime/socketio/");
}

const waitMs = 10_000;

function connect(opts = {}) {
  return io(url, { reconnection: false, forceNew: true, timeout: waitMs, ...opts });
}

// once resolves with the arguments of emitter's next `event`. Its timer
// is unref'd: a wait that is never settled must not keep node running.
function once(emitter, event) {
  return new Promise((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error(`timed out waiting for ${event}`)), waitMs);
    timer.unref();
    emitter.once(event, (...args) => {
      clearTimeout(timer);
      resolve(args);
    });
  });
}

// connected waits for the connection and the server's greeting.
async function connected(socket) {
  const confirmed = once(socket, "connection-confirmed");
  const failed = once(socket, "connect_error").then(([err]) => {
    throw err;
  });
  await Promise.race([once(socket, "connect"), failed]);
  const [msg] = await Promise.race([confirmed, failed]);
  assert.equal(msg.socketId, socket.id);
  assert.equal(typeof msg.serverTime, "number");
  assert.ok(Math.abs(Date.now() - msg.serverTime) < 60_000, "serverTime is a Unix time in ms");
  return socket;
}

const transportCases = [
  ["polling only", { transports: ["polling"] }, "polling"],
  ["websocket only", { transports: ["websocket"] }, "websocket"],
];

test("default transports: polling first, then upgrade to websocket", async () => {
  const socket = connect();
  const firstTransport = once(socket.io, "open").then(() => socket.io.engine.transport.name);
  await connected(socket);
  assert.equal(await firstTransport, "polling");
  if (socket.io.engine.transport.name !== "websocket") {
    await once(socket.io.engine, "upgrade");
  }
  assert.equal(socket.io.engine.transport.name, "websocket");
  assert.equal(await socket.timeout(waitMs).emitWithAck("echo", "after upgrade"), "after upgrade");
  socket.disconnect();
});

test("transports ['websocket'] skips polling", async () => {
  const socket = connect({ transports: ["websocket"] });
  const firstTransport = once(socket.io, "open").then(() => socket.io.engine.transport.name);
  await connected(socket);
  assert.equal(await firstTransport, "websocket");
  assert.equal(socket.io.engine.transport.name, "websocket");
  socket.disconnect();
});

test("auth payload reaches Auth()", async () => {
  const auth = { user_id: "u-42", username: "alice" };
  const socket = await connected(connect({ auth }));
  const who = await socket.timeout(waitMs).emitWithAck("whoami");
  assert.deepEqual(who.auth, auth);
  assert.equal(who.id, socket.id);
  socket.disconnect();
});

for (const [name, opts, transport] of transportCases) {
  test(`${name}: emit and on both ways`, async () => {
    const socket = await connected(connect(opts));
    assert.equal(socket.io.engine.transport.name, transport);
    const echoed = once(socket, "echo");
    socket.emit("echo", "hello", { n: 1, nested: [true, null] });
    assert.deepEqual(await echoed, ["hello", { n: 1, nested: [true, null] }]);
    socket.disconnect();
  });

  test(`${name}: ack carries every value`, async () => {
    const socket = await connected(connect(opts));
    const args = await new Promise((resolve) => socket.emit("echo", 1, "two", { three: 3 }, (...a) => resolve(a)));
    assert.deepEqual(args, [1, "two", { three: 3 }]);
    assert.deepEqual(await socket.timeout(waitMs).emitWithAck("echo"), undefined);
    socket.disconnect();
  });

  test(`${name}: server-initiated close`, async () => {
    const socket = await connected(connect(opts));
    const disconnected = once(socket, "disconnect");
    socket.emit("disconnect-me");
    const [reason] = await disconnected;
    assert.equal(reason, "io server disconnect");
    assert.equal(socket.connected, false);
  });

  test(`${name}: 200 KB payload both ways`, async () => {
    const socket = await connected(connect(opts));
    const big = "x".repeat(200 * 1024) + "é€😀";
    const back = await socket.timeout(waitMs).emitWithAck("echo", { big });
    assert.equal(back.big.length, big.length);
    assert.equal(back.big, big);
    socket.disconnect();
  });

  test(`${name}: heartbeat keeps an idle client connected`, async () => {
    const socket = await connected(connect(opts));
    let pings = 0;
    socket.io.engine.on("ping", () => pings++);
    let dropped = null;
    socket.on("disconnect", (reason) => (dropped = reason));
    // The server pings every 300 ms: 1.5 s is five heartbeats.
    await new Promise((resolve) => setTimeout(resolve, 1500));
    assert.equal(dropped, null);
    assert.ok(pings >= 3, `got ${pings} pings`);
    assert.equal(await socket.timeout(waitMs).emitWithAck("echo", "still here"), "still here");
    socket.disconnect();
  });
}

test("many events in order both ways, across the upgrade", async () => {
  const socket = connect();
  const n = 500;
  const got = [];
  const all = new Promise((resolve) => {
    socket.on("burst", (i) => {
      got.push(i);
      if (got.length === n) resolve();
    });
  });
  await connected(socket);
  // Started before the upgrade completes, so the stream crosses it.
  socket.emit("burst", n);
  for (let i = 0; i < n; i++) {
    socket.emit("seq", i);
  }
  await all;
  assert.deepEqual(
    got,
    Array.from({ length: n }, (_, i) => i),
  );
  const check = await socket.timeout(waitMs).emitWithAck("seq-check");
  assert.deepEqual(check, { count: n, inOrder: true });
  socket.disconnect();
});
