// The dashboard in headless Chromium (Debian's, driven by playwright-core):
// log in, subscribe, watch an inserted row arrive and its UPDATE arrive
// with the changed field highlighted; as an admin, see the operator view's
// charts fill after some writes and its tables list the watched table,
// grants and sockets; save a screenshot; as a customer, see no operator
// view. Run through "go test ./web/" (web/node_test.go).

import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import { chromium } from 'playwright-core';

import { Server, freePort, login, pgpush, psql, requireEnv, setUpShop, waitTimeoutMs } from './helpers.mjs';

const executablePath = process.env.CHROMIUM || '/usr/bin/chromium';
const screenshotPath = requireEnv('PGPUSH_SCREENSHOT');
const profileDir = requireEnv('PGPUSH_PROFILE_DIR');

describe('dashboard', { timeout: 60_000 }, () => {
  let server;
  let context;
  let page;
  let creds;
  const customer = { email: 'customer@example.com', password: 'customer horse battery staple' };
  const pageErrors = [];

  before(async () => {
    creds = await setUpShop();
    // A second role, with a grant for the operator view to list.
    await pgpush(['user', 'add', '--email', customer.email, '--role', 'customer', '--attr', 'customer_id=7'], customer.password + '\n');
    await pgpush(['grant', 'order_changes', '--role', 'customer', '--match', 'customer_id=customer_id']);
    server = new Server(await freePort());
    await server.start();
    // A persistent context is how playwright takes a fresh user data dir.
    context = await chromium.launchPersistentContext(profileDir, {
      executablePath,
      headless: true,
      args: [
        '--headless',
        '--no-sandbox',
        '--disable-gpu',
        '--disable-quic',
        '--no-first-run',
        '--disable-background-networking',
        '--disable-component-update',
        '--disable-sync',
      ],
      viewport: { width: 1280, height: 900 },
      timeout: waitTimeoutMs,
    });
    context.setDefaultTimeout(waitTimeoutMs);
    page = context.pages()[0] ?? (await context.newPage());
    page.on('pageerror', (err) => pageErrors.push(err.message));
    page.on('console', (msg) => {
      if (msg.type() === 'error') pageErrors.push(msg.text());
    });
  });

  after(async () => {
    await context?.close();
    await server?.stop('SIGKILL');
    console.log(`# pgpush serve log (last 4 KiB):\n${(server?.log ?? '').slice(-4096)}`);
  });

  it('logs in, subscribes and shows events with changed fields highlighted', async () => {
    await page.goto(server.base + '/');
    await page.getByLabel('Email').waitFor();
    assert.equal(await page.locator('#app-view').isVisible(), false, 'the app under the login form');
    await page.getByLabel('Email').fill(creds.email);
    await page.getByLabel('Password').fill('wrong password');
    await page.getByRole('button', { name: 'Log in' }).click();
    await page.getByRole('alert').filter({ hasText: 'Wrong email or password' }).waitFor();
    // The failed login answered 401; the browser logs that as a console error.
    pageErrors.length = 0;

    await page.getByLabel('Password').fill(creds.password);
    await page.getByRole('button', { name: 'Log in' }).click();
    await page.getByRole('status').filter({ hasText: 'Live' }).waitFor();
    await page.getByText(creds.email).waitFor();

    // The picker is filled from /api/v1/channels.
    const picker = page.getByLabel('Channel', { exact: true });
    await page.locator('#channel-select option[value="order_changes"]').waitFor({ state: 'attached' });
    await picker.selectOption('order_changes');
    await page.getByRole('button', { name: 'Subscribe' }).click();
    const sub = page.locator('#subscriptions li', { hasText: 'order_changes' });
    await sub.getByText('live').waitFor();
    // Our own socket counts as a connected client.
    await page.locator('#stat-clients', { hasText: /^[1-9]/ }).waitFor();
    await page.locator('#stat-channels', { hasText: /^1$/ }).waitFor();
    await page.locator('#channel-select option', { hasText: 'order_changes (1 subscriber)' }).waitFor({ state: 'attached' });

    const id = await psql(`INSERT INTO orders (order_number, total) VALUES ('ORD-42', 19.5) RETURNING id`);
    const created = page.locator('#events li.event.created', { hasText: 'ORD-42' });
    await created.waitFor();
    assert.match(await created.innerText(), /order:created/);
    assert.equal(await created.locator('.changed').count(), 0, 'a created event highlights nothing');

    await psql(`UPDATE orders SET status = 'shipped' WHERE id = ${id}`);
    const updated = page.locator('#events li.event.updated', { hasText: 'ORD-42' });
    await updated.waitFor();
    const changedKeys = await updated.locator('dt.changed').allInnerTexts();
    assert.deepEqual(changedKeys, ['status']);
    assert.match(await updated.locator('dd.changed').innerText(), /shipped/);
    // Newest first.
    const first = page.locator('#events li').first();
    assert.match(await first.innerText(), /order:updated/);
    // Two events arrived within the 10 s window: the rate is above zero.
    await page.locator('#stat-rate', { hasText: /^(?!0\.0$)/ }).waitFor();
    assert.deepEqual(pageErrors, [], 'errors on the page');
  });

  it('shows an admin the operator view: charts filled by writes, watched tables, grants, sockets', async () => {
    await page.locator('#operator').waitFor();
    const watched = page.locator('#op-watched tbody tr', { hasText: 'order_changes' });
    await watched.waitFor();
    assert.match(await watched.innerText(), /orders/);
    assert.match(await watched.innerText(), /order_number/);
    const grant = page.locator('#op-grants tbody tr', { hasText: 'order_changes' });
    await grant.waitFor();
    assert.deepEqual(await grant.locator('td').allInnerTexts(), ['order_changes', 'customer', 'no', 'customer_id = user.customer_id']);
    // The previous test's subscription is this page's socket.
    const sockets = page.locator('#op-sockets tbody tr', { hasText: 'order_changes' });
    await sockets.locator('td.num', { hasText: /^1$/ }).waitFor();
    await page.locator('#op-facts', { hasText: 'listener connected' }).waitFor();

    for (let i = 0; i < 5; i++) {
      await psql(`INSERT INTO orders (order_number, total) VALUES ('OPS-${i}', ${10 + i})`);
    }
    // The server samples every second and the page polls every 2 s: wait
    // until each chart has drawn points from those writes. Seven events so
    // far, each delivered to this page's socket; rates are per second of
    // each real interval (about a second), so their sums are about 7.
    await page.waitForFunction(
      () => {
        const series = (chart, name) => document.querySelector(`#${chart} [data-series="${name}"]`)?.dataset ?? {};
        return (
          Number(series('chart-events', 'received').sum) >= 6.5 &&
          Number(series('chart-events', 'delivered').sum) >= 6.5 &&
          Number(series('chart-latency', 'p50').points) > 0 &&
          Number(series('chart-latency', 'p99').points) > 0 &&
          Number(series('chart-lag', 'lag').points) > 0
        );
      },
      null,
      { timeout: waitTimeoutMs },
    );
    const drawn = await page.locator('#chart-events [data-series="received"] :is(path, circle)').count();
    assert.ok(drawn > 0, 'the events chart draws its points');
    assert.match(await page.locator('#chart-events desc').textContent(), /Events per second over the last \d+ (s|min): received latest [\d.]+, peak [\d.]+/);

    assert.deepEqual(pageErrors, [], 'errors on the page');

    // Unsubscribing stops the stream, and the socket count follows.
    const sub = page.locator('#subscriptions li', { hasText: 'order_changes' });
    await sub.getByRole('button', { name: 'Unsubscribe from order_changes' }).click();
    await sub.waitFor({ state: 'detached' });
    await sockets.locator('td.num', { hasText: /^0$/ }).waitFor();
  });

  it('shows a live table of a channel\'s rows, changed cells highlighted', async () => {
    await page.locator('#rows-channel option[value="order_changes"]').waitFor({ state: 'attached' });
    await page.getByLabel('Rows of').selectOption('order_changes');
    await page.getByRole('button', { name: 'Show rows' }).click();
    const row = page.locator('#rows-table tbody tr', { hasText: 'ORD-42' });
    await row.waitFor();
    const want = Number(await psql(`SELECT count(*) FROM orders`));
    await page.locator('#rows-count', { hasText: `${want} rows` }).waitFor();

    await psql(`UPDATE orders SET status = 'delivered' WHERE order_number = 'ORD-42'`);
    const cell = row.locator('td.changed');
    await cell.waitFor();
    assert.deepEqual(await cell.allInnerTexts(), ['delivered'], 'only the changed cell is highlighted');
    await psql(`INSERT INTO orders (order_number, total) VALUES ('ORD-43', 1)`);
    await page.locator('#rows-table tbody tr.fresh', { hasText: 'ORD-43' }).waitFor();
    await psql(`DELETE FROM orders WHERE order_number = 'ORD-43'`);
    await page.locator('#rows-table tbody tr', { hasText: 'ORD-43' }).waitFor({ state: 'detached' });

    await page.screenshot({ path: screenshotPath, fullPage: true });
    assert.deepEqual(pageErrors, [], 'errors on the page');
    await page.getByRole('button', { name: 'Stop' }).click();
  });

  it('shows a customer no operator view, and the API refuses them', async () => {
    await page.getByRole('button', { name: 'Log out' }).click();
    await page.getByRole('button', { name: 'Log in' }).waitFor();
    assert.equal(await page.locator('#operator').isVisible(), false, 'operator view after logout');
    const adminRequests = [];
    page.on('request', (req) => {
      if (new URL(req.url()).pathname.startsWith('/api/v1/admin/')) adminRequests.push(req.url());
    });

    await page.getByLabel('Email').fill(customer.email);
    await page.getByLabel('Password').fill(customer.password);
    await page.getByRole('button', { name: 'Log in' }).click();
    await page.getByText(`${customer.email} (customer)`).waitFor();
    // The first poll filled the picker; an admin's page asks for the
    // operator data before that.
    await page.locator('#channel-select option[value="order_changes"]').waitFor({ state: 'attached' });
    assert.equal(await page.locator('#operator').isVisible(), false, 'operator view for a customer');
    assert.deepEqual(adminRequests, [], 'a customer\'s page asks for operator data');
    assert.deepEqual(pageErrors, [], 'errors on the page');

    const cookie = await login(server.base, customer.email, customer.password);
    const asCustomer = await fetch(`${server.base}/api/v1/admin/overview`, { headers: { Cookie: cookie } });
    assert.equal(asCustomer.status, 403, await asCustomer.text());
    const anonymous = await fetch(`${server.base}/api/v1/admin/overview`);
    assert.equal(anonymous.status, 401, await anonymous.text());
  });
});
