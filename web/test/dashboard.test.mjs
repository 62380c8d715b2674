// The dashboard in headless Chromium (Debian's, driven by playwright-core):
// log in, subscribe, watch an inserted row arrive and its UPDATE arrive
// with the changed field highlighted; save a screenshot. Run through
// "go test ./web/" (web/node_test.go).

import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import { chromium } from 'playwright-core';

import { Server, freePort, psql, requireEnv, setUpShop, waitTimeoutMs } from './helpers.mjs';

const executablePath = process.env.CHROMIUM || '/usr/bin/chromium';
const screenshotPath = requireEnv('PGPUSH_SCREENSHOT');
const profileDir = requireEnv('PGPUSH_PROFILE_DIR');

describe('dashboard', { timeout: 60_000 }, () => {
  let server;
  let context;
  let page;
  let creds;
  const pageErrors = [];

  before(async () => {
    creds = await setUpShop();
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

    await page.screenshot({ path: screenshotPath, fullPage: true });
    assert.deepEqual(pageErrors, [], 'errors on the page');

    // Unsubscribing stops the stream.
    await sub.getByRole('button', { name: 'Unsubscribe from order_changes' }).click();
    await sub.waitFor({ state: 'detached' });
  });
});
