// Shared fixtures for the Node tests: a real pgpush binary (PGPUSH_BIN)
// against a real database (DATABASE_URL), both given by web/node_test.go.
// Nothing here sleeps to synchronise: waits poll a condition until a
// deadline and fail with what they were waiting for.

import { execFile, spawn } from 'node:child_process';
import { once } from 'node:events';
import net from 'node:net';
import { setTimeout as delay } from 'node:timers/promises';

/** @param {string} name */
export function requireEnv(name) {
  const v = process.env[name];
  if (!v) throw new Error(`${name} is not set: run these tests through "go test ./web/"`);
  return v;
}

export const bin = requireEnv('PGPUSH_BIN');
export const databaseURL = requireEnv('DATABASE_URL');
const psqlBin = process.env.PSQL || 'psql';

// waitTimeoutMs bounds each wait for something that must happen.
export const waitTimeoutMs = 15_000;

// pollMs is how often a condition is checked. It is a polling interval,
// not a synchronisation: waitFor returns as soon as the condition holds.
const pollMs = 20;

/**
 * waitFor resolves once cond() returns a truthy value (which it returns),
 * and rejects after timeoutMs naming what it waited for.
 * @template T
 * @param {string} what
 * @param {() => T | Promise<T>} cond
 * @param {number} [timeoutMs]
 * @returns {Promise<T>}
 */
export async function waitFor(what, cond, timeoutMs = waitTimeoutMs) {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const v = await cond();
    if (v) return v;
    if (Date.now() > deadline) throw new Error(`timed out after ${timeoutMs} ms waiting for ${what}`);
    await delay(pollMs);
  }
}

/**
 * run runs a command to completion and returns its stdout.
 * @param {string} file
 * @param {string[]} args
 * @param {{input?: string, env?: object}} [opts]
 */
export function run(file, args, opts = {}) {
  return new Promise((resolve, reject) => {
    const child = execFile(
      file,
      args,
      { env: { ...process.env, ...opts.env }, timeout: waitTimeoutMs },
      (err, stdout, stderr) => {
        if (err) reject(new Error(`${file} ${args.join(' ')}: ${err.message}\n${stderr}`));
        else resolve(stdout);
      },
    );
    // A child that does not read its input (psql -c) may exit before the
    // write: that EPIPE is harmless, and real failures show in the exit
    // status. Unhandled, it would crash the test run.
    child.stdin.on('error', () => {});
    child.stdin.end(opts.input ?? '');
  });
}

/**
 * psql runs SQL in its own committed transaction, as an application would,
 * and returns the unaligned, tuples-only output.
 * @param {string} sql
 */
export async function psql(sql) {
  const out = await run(psqlBin, [databaseURL, '-X', '-q', '-t', '-A', '-v', 'ON_ERROR_STOP=1', '-c', sql]);
  return out.trim();
}

/** pgpush runs the CLI against the test database. */
export function pgpush(args, input) {
  return run(bin, args, { input, env: { DATABASE_URL: databaseURL } });
}

/**
 * setUpShop creates an orders table, watches it (channel order_changes)
 * and adds an admin user.
 */
export async function setUpShop() {
  await psql(`CREATE TABLE orders (
    id bigserial PRIMARY KEY,
    order_number text NOT NULL,
    status text NOT NULL DEFAULT 'pending',
    total numeric(10,2) NOT NULL DEFAULT 0
  )`);
  await pgpush(['migrate']);
  await pgpush(['watch', 'orders']);
  const email = 'admin@example.com';
  const password = 'correct horse battery staple';
  await pgpush(['user', 'add', '--email', email, '--role', 'admin'], password + '\n');
  return { email, password };
}

/** freePort finds a TCP port on 127.0.0.1 that nothing listens on now. */
export async function freePort() {
  const srv = net.createServer();
  srv.listen(0, '127.0.0.1');
  await once(srv, 'listening');
  const { port } = srv.address();
  srv.close();
  await once(srv, 'close');
  return port;
}

/**
 * Server is a `pgpush serve` child process on 127.0.0.1:port.
 */
export class Server {
  /**
   * @param {number} port
   * @param {Record<string, string>} [env] more environment for serve
   */
  constructor(port, env = {}) {
    this.port = port;
    this.env = env;
    this.base = `http://127.0.0.1:${port}`;
    this.log = '';
    this.child = null;
  }

  /** start starts the process and waits until /readyz answers 200. */
  async start() {
    const child = spawn(bin, ['serve'], {
      env: {
        ...process.env,
        DATABASE_URL: databaseURL,
        LISTEN_ADDR: `127.0.0.1:${this.port}`,
        SESSION_SECRET: 'web-test-secret-web-test-secret-web-test',
        SHUTDOWN_TIMEOUT: '5s',
        ...this.env,
      },
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    this.child = child;
    const exited = once(child, 'exit');
    this.exited = exited;
    child.stdout.on('data', (b) => (this.log += b));
    child.stderr.on('data', (b) => (this.log += b));
    let gone = false;
    exited.then(() => (gone = true));
    await waitFor(`pgpush serve on port ${this.port} to be ready`, async () => {
      if (gone) throw new Error(`pgpush serve exited early (${child.exitCode}):\n${this.log}`);
      try {
        const res = await fetch(`${this.base}/readyz`);
        await res.arrayBuffer();
        return res.status === 200;
      } catch {
        return false; // not listening yet
      }
    });
  }

  /** stop sends SIGTERM and waits for the process to exit. */
  async stop(signal = 'SIGTERM') {
    const child = this.child;
    if (!child || child.exitCode !== null || child.signalCode !== null) return;
    child.kill(signal);
    const timer = setTimeout(() => child.kill('SIGKILL'), waitTimeoutMs);
    await this.exited;
    clearTimeout(timer);
  }
}

/**
 * login posts the credentials and returns the session cookie as a Cookie
 * header value ("pgpush_session=…").
 */
export async function login(base, email, password) {
  const res = await fetch(`${base}/api/v1/auth/login`, {
    method: 'POST',
    headers: { 'Content-Type': 'application/json' },
    body: JSON.stringify({ email, password }),
  });
  const body = await res.text();
  if (res.status !== 200) throw new Error(`login: HTTP ${res.status}: ${body}`);
  const cookies = res.headers.getSetCookie().map((c) => c.split(';')[0]);
  const session = cookies.find((c) => c.startsWith('pgpush_session='));
  if (!session) throw new Error(`login: no pgpush_session cookie in ${JSON.stringify(cookies)}`);
  return session;
}
