// The dashboard (/ui) in a real browser against a real `sluice serve`: headless Chromium (Debian's
// chromium package) driven by playwright-core. Signs in with a write token, sees live counts move
// as checks are sent, creates a rule in the form and sees a check get 429 from it, sees the API's
// validation message next to the limit field, sees a stale edit refused, adds and removes a deny
// list entry, sets a tier, reads the audit diff, rolls back a version and sees the rule gone;
// then signs in with a read token and finds every write control unavailable; last, stops the
// server and sees the page say so.
//
// Each screen is saved as a PNG in SLUICE_SCREENSHOTS (CTest: build/tests/browser/screenshots).
// No timing is asserted: every wait is for a state to appear, with a generous timeout.
//
// Run by CTest (integration_dashboard). By hand, after `npm ci` in a folder holding
// tests/browser/package*.json:
//   SLUICE_BIN=build/src/app/sluice SLUICE_NODE_MODULES=that/node_modules node tests/browser/dashboard_test.mjs
import assert from 'node:assert/strict';
import fs from 'node:fs';
import {createRequire} from 'node:module';
import os from 'node:os';
import path from 'node:path';
import {after, before, test} from 'node:test';
import {READ_TOKEN, SluiceServer, WRITE_TOKEN} from './sluice_server.mjs';

// playwright-core lives in the build folder's node_modules (npm ci there), not beside this file.
const require = createRequire(path.join(process.env.SLUICE_NODE_MODULES || path.join(process.cwd(), 'node_modules'), 'x.js'));
const {chromium} = require('playwright-core');

const CHROMIUM = process.env.SLUICE_CHROMIUM || '/usr/bin/chromium';
const SHOTS = process.env.SLUICE_SCREENSHOTS || path.join(process.cwd(), 'screenshots');
// How long a state may take to show: the overview polls every 1–4 s; generous for slow machines.
const WAIT_MS = 30_000;

let server;
let context;
let page;
let userDataDir;
const problems = [];  // page errors and CSP violations: none may happen

async function shot(name) {
  await page.evaluate(() => {
    window.scrollTo(0, 0);
    document.querySelector('.toasts')?.replaceChildren();  // earlier steps' notes
  });
  await page.screenshot({path: path.join(SHOTS, `${name}.png`), fullPage: true});
}

async function goto(hash) {
  await page.goto(`${server.base}/ui/${hash}`);
}

// The number a [data-testid] stat element holds (data-value), or NaN while not loaded.
async function statValue(testid) {
  const v = await page.locator(`[data-testid="${testid}"]`).getAttribute('data-value');
  return v === null ? NaN : Number(v);
}

async function waitFor(predicate, message) {
  const deadline = Date.now() + WAIT_MS;
  let last;
  while (Date.now() < deadline) {
    last = await predicate();
    if (last) return last;
    await new Promise((r) => setTimeout(r, 200));
  }
  throw new Error(`timed out waiting for ${message} (last: ${JSON.stringify(last)})`);
}

async function signIn(token) {
  await goto('');
  await page.locator('[data-testid="token"]').fill(token);
  await page.locator('[data-testid="sign-in"]').click();
  await page.locator('.shell').waitFor({timeout: WAIT_MS});
}

async function signOut() {
  await page.locator('[data-testid="sign-out"]').click();
  await page.locator('[data-testid="signin-screen"]').waitFor();
}

before(async () => {
  fs.mkdirSync(SHOTS, {recursive: true});
  server = await new SluiceServer().start();
  // A first version, so that there is one to roll back to before the test's own changes.
  assert.equal((await server.admin('PUT', 'tiers/alice', {tier: 'free'})).status, 201);
  userDataDir = fs.mkdtempSync(path.join(os.tmpdir(), 'sluice-chromium-'));
  // A fresh profile; no background networking of Chromium's own (the machine's network is closed
  // and such connections would only be refused).
  context = await chromium.launchPersistentContext(userDataDir, {
    executablePath: CHROMIUM,
    headless: true,
    viewport: {width: 1440, height: 960},
    args: ['--headless', '--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run',
           '--disable-background-networking', '--disable-component-update', '--disable-sync'],
  });
  context.setDefaultTimeout(WAIT_MS);
  page = context.pages()[0] || await context.newPage();
  page.on('pageerror', (e) => problems.push(`page error: ${e.message}`));
  page.on('console', (m) => {
    if (/Content.Security.Policy|Refused to/i.test(m.text())) problems.push(`CSP: ${m.text()}`);
  });
});

after(async () => {
  if (context) await context.close();
  if (userDataDir) fs.rmSync(userDataDir, {recursive: true, force: true});
  if (server) await server.stop();
});

test('the page is served and asks for a token; a wrong token is refused', async () => {
  const res = await server.request('GET', '/ui');
  assert.equal(res.status, 200);  // fetch followed the redirect to /ui/
  await goto('');
  await page.locator('[data-testid="signin-screen"]').waitFor();
  await shot('01-sign-in');
  await page.locator('[data-testid="token"]').fill('not-a-token');
  await page.locator('[data-testid="sign-in"]').click();
  await page.getByText('That token is not accepted').waitFor();
  assert.equal(await page.evaluate(() => sessionStorage.getItem('sluice.token')), null);
});

test('signed in with a write token, the token is kept in session storage only', async () => {
  await signIn(WRITE_TOKEN);
  assert.equal(await page.evaluate(() => sessionStorage.getItem('sluice.token')), WRITE_TOKEN);
  assert.equal(await page.evaluate(() => localStorage.length), 0);
  assert.equal(await page.evaluate(() => document.cookie), '');
  await page.getByText('Read & write').waitFor();
});

test('overview: live counts move as checks are sent; health shows store and database', async () => {
  await goto('#/overview');
  await page.locator('[data-testid="health-store"]').getByText('connected').waitFor();
  await page.locator('[data-testid="health-database"]').getByText('sqlite').waitFor();
  const before = await waitFor(async () => {
    const v = await statValue('total-allowed');
    return Number.isFinite(v) ? {v} : null;
  }, 'the allowed total');
  for (let i = 0; i < 40; i++) {
    const res = await server.check({user_id: `walker-${i % 4}`, endpoint: '/browse'});
    assert.equal(res.status, 200);
  }
  await waitFor(async () => (await statValue('total-allowed')) >= before.v + 40, 'the allowed total to grow by 40');
  await waitFor(async () => (await statValue('total-requests')) >= before.v + 40, 'the requests total to grow');
  // The moving chart: the allowed line was drawn from the timeline.
  await page.locator('[data-testid="traffic-chart"] path.line[data-series="allowed"]').waitFor();
  await page.locator('[data-testid="live"]').getByText('Live').waitFor();
  await shot('02-overview');
});

let baseline;  // the database version before the UI made its rule

test('rules: the API\u2019s validation message shows next to the limit field', async () => {
  baseline = (await server.admin('GET', 'rules')).body.version;
  await page.locator('[data-nav="rules"]').click();
  await page.locator('tr[data-rule-id="api-per-ip"]').waitFor();
  await page.locator('[data-testid="new-rule"]').click();
  await page.locator('[data-testid="rule-form"]').waitFor();
  await page.locator('input[name="id"]').fill('ui-made');
  await page.locator('input[name="description"]').fill('Made in the dashboard');
  await page.locator('input[name="limit"]').fill('0');
  await page.locator('input[name="window"]').fill('1h');
  await page.locator('[data-testid="save-rule"]').click();
  const error = page.locator('[data-error-for="limit"]');
  await error.waitFor({state: 'visible'});
  assert.match(await error.textContent(), /limit/i);
  assert.equal(await page.locator('input[name="limit"]').getAttribute('aria-invalid'), 'true');
  // Nothing was saved.
  assert.equal((await server.admin('GET', 'rules/ui-made')).status, 404);
  await shot('03-rule-validation');
});

test('rules: a rule created in the form makes a check get 429', async () => {
  await page.locator('input[name="limit"]').fill('2');
  await page.locator('select[name="algorithm"]').selectOption('sliding_window_log');
  await page.getByRole('button', {name: 'Add condition'}).click();
  await page.locator('input[name="match-attr"]').last().fill('endpoint');
  await page.locator('input[name="match-value"]').last().fill('/ui-test');
  await page.locator('[data-testid="save-rule"]').click();
  await page.locator('tr[data-rule-id="ui-made"]').waitFor();
  await shot('04-rules');
  const rule = await server.admin('GET', 'rules/ui-made');
  assert.equal(rule.status, 200);
  assert.equal(rule.body.limit, 2);
  assert.deepEqual(rule.body.match, {endpoint: '/ui-test'});
  assert.deepEqual(rule.body.key, ['user_id']);
  for (let i = 0; i < 2; i++) {
    assert.equal((await server.check({user_id: 'carol', endpoint: '/ui-test'})).status, 200);
  }
  const limited = await server.check({user_id: 'carol', endpoint: '/ui-test'});
  assert.equal(limited.status, 429);
  assert.equal(limited.body.error.rule_id, 'ui-made');
});

// A few seconds of mixed traffic, so that the charts have a shape: allowed checks, checks over
// ui-made's limit (rejected) and checks from the rules file's denied network (blocked).
async function traffic(seconds) {
  const end = Date.now() + seconds * 1000;
  for (let i = 0; Date.now() < end; i++) {
    const sends = [server.check({user_id: `walker-${i % 7}`, endpoint: '/browse'}),
                   server.check({user_id: `walker-${i % 3}`, endpoint: '/search'})];
    if (i % 2 === 0) sends.push(server.check({user_id: `heavy-${i % 4}`, endpoint: '/ui-test'}));
    if (i % 5 === 0) sends.push(server.check({ip_address: '203.0.113.9', endpoint: '/browse'}));
    await Promise.all(sends);
    await new Promise((r) => setTimeout(r, 100));
  }
}

test('overview: the rejection shows in the totals and among the top limited keys', async () => {
  await page.locator('[data-nav="overview"]').click();
  await traffic(8);
  // The last minute, so that the charts show the traffic at a readable scale.
  await page.locator('[aria-label="Window"] button[data-value="1m"]').click();
  await page.getByText('Every check of the last minute').waitFor();
  await waitFor(async () => (await statValue('total-blocked')) >= 1, 'a blocked check in the totals');
  await waitFor(async () => (await statValue('total-rejected')) >= 1, 'a rejection in the totals');
  await page.locator('[data-testid="top-keys"]').getByText('carol').waitFor();
  await page.locator('[data-testid="by-rule"] [data-rule="ui-made"]').waitFor();
  await shot('05-overview-rejections');
  await page.emulateMedia({colorScheme: 'dark'});
  await shot('05-overview-dark');
  await page.emulateMedia({colorScheme: 'light'});
});

test('rules: an edit made on a stale revision is refused and says so', async () => {
  await goto('#/rules/edit/ui-made');
  await page.locator('input[name="description"]').waitFor();
  await waitFor(async () => (await page.locator('input[name="limit"]').inputValue()) === '2', 'the form to load');
  // Someone else changes the rule meanwhile.
  const current = await server.admin('GET', 'rules/ui-made');
  const changed = await server.request('PUT', '/v1/admin/rules/ui-made', {
    token: WRITE_TOKEN, body: {...current.body, limit: 3}, headers: {'If-Match': current.headers.get('etag')}});
  assert.equal(changed.status, 200);
  await page.locator('input[name="description"]').fill('A stale edit');
  await page.locator('[data-testid="save-rule"]').click();
  await page.locator('[data-testid="conflict"]').waitFor();
  await shot('06-rule-conflict');
  assert.equal((await server.admin('GET', 'rules/ui-made')).body.description, 'Made in the dashboard');
  await page.locator('[data-testid="load-latest"]').click();
  await waitFor(async () => (await page.locator('input[name="limit"]').inputValue()) === '3', 'the latest revision in the form');
});

test('lists: a deny entry added in the page blocks, and is removed again', async () => {
  await goto('#/lists/deny');
  await page.locator('select[name="entry-attr"]').selectOption('ip_address');
  await page.locator('input[name="entry-value"]').fill('198.51.100.7');
  await page.locator('input[name="reason"]').fill('browser test');
  await page.locator('[data-testid="add-entry"]').click();
  const row = page.locator('[data-testid="list-deny"] tr', {hasText: '198.51.100.7'});
  await row.waitFor();
  const blocked = await server.check({ip_address: '198.51.100.7', endpoint: '/x'});
  assert.equal(blocked.status, 403);
  await shot('07-deny-list');
  // A bad address: the API's message shows beside the value.
  await page.locator('input[name="entry-value"]').fill('not-an-ip');
  await page.locator('[data-testid="add-entry"]').click();
  await page.locator('.field-error:visible').first().waitFor();
  await page.locator('input[name="entry-value"]').fill('');
  await row.locator('[data-action="delete"]').click();
  await page.locator('[data-testid="confirm"]').click();
  await row.waitFor({state: 'detached'});
  assert.equal((await server.check({ip_address: '198.51.100.7', endpoint: '/x'})).status, 200);
});

test('tiers: a tier set in the page is stored', async () => {
  await page.locator('[data-nav="tiers"]').click();
  await page.locator('input[name="user_id"]').fill('dave');
  await page.locator('input[name="tier"]').fill('premium');
  await page.locator('[data-testid="set-tier"]').click();
  await page.locator('tr[data-user="dave"]').waitFor();
  assert.equal((await server.admin('GET', 'tiers/dave')).body.tier, 'premium');
  // The user lookup (/v1/stats/users/dave) shows the stored tier.
  await page.locator('input[name="lookup"]').fill('dave');
  await page.getByRole('button', {name: 'Look up'}).click();
  await page.locator('[data-testid="user-lookup"] dd', {hasText: 'premium'}).waitFor();
  await shot('08-tiers');
});

test('audit log: an entry opens on its before/after diff', async () => {
  await page.locator('[data-nav="audit"]').click();
  const entry = page.locator('tr.audit-row', {hasText: 'ui-made'}).first();
  await entry.click();
  const diff = page.locator('[data-testid="diff"]').first();
  await diff.waitFor();
  assert.match(await diff.textContent(), /limit/);
  await shot('09-audit');
});

test('versions: rolling back to the version before the rule removes it', async () => {
  await page.locator('[data-nav="versions"]').click();
  const row = page.locator(`tr[data-version="${baseline}"]`);
  await row.locator('[data-action="restore"]').click();
  await page.locator('[data-testid="confirm-dialog"]').waitFor();
  await shot('10-rollback-confirm');
  await page.locator('[data-testid="confirm"]').click();
  await page.getByText(`Rolled back to version ${baseline}`).first().waitFor();
  await shot('11-versions');
  assert.equal((await server.admin('GET', 'rules/ui-made')).status, 404);
  assert.equal((await server.check({user_id: 'carol', endpoint: '/ui-test'})).status, 200);
  await page.locator('[data-nav="rules"]').click();
  await page.locator('tr[data-rule-id="api-per-ip"]').waitFor();
  assert.equal(await page.locator('tr[data-rule-id="ui-made"]').count(), 0);
});

test('a read token sees everything and can change nothing', async () => {
  await signOut();
  assert.equal(await page.evaluate(() => sessionStorage.getItem('sluice.token')), null);
  await signIn(READ_TOKEN);
  await page.locator('[data-testid="read-only-banner"]').waitFor();
  await page.getByText('Read only', {exact: true}).waitFor();
  await goto('#/rules');
  await page.locator('tr[data-rule-id="api-per-ip"]').waitFor();
  assert.equal(await page.locator('[data-testid="new-rule"]').isDisabled(), true);
  assert.equal(await page.locator('[data-action="edit"], [data-action="delete"]').count(), 0);
  await shot('12-read-only-rules');
  await goto('#/rules/new');
  await page.locator('[data-testid="rule-form"]').waitFor();
  assert.equal(await page.locator('[data-testid="save-rule"]').isDisabled(), true);
  assert.equal(await page.locator('input[name="limit"]').isDisabled(), true);
  await goto('#/versions');
  await page.locator('tr[data-version]').first().waitFor();
  for (const button of await page.locator('[data-action="restore"]').all()) {
    assert.equal(await button.isDisabled(), true);
  }
  await goto('#/lists/deny');
  await page.locator('[data-testid="list-deny"]').waitFor();
  assert.equal(await page.locator('[data-testid="add-entry"]').count(), 0);
  await goto('#/tiers');
  await page.locator('[data-testid="tiers-table"]').waitFor();
  assert.equal(await page.locator('[data-testid="set-tier"]').count(), 0);
  // The server refuses a write with this token whatever the page shows.
  assert.equal((await server.admin('DELETE', 'tiers/dave', undefined, READ_TOKEN)).status, 403);
});

test('the server gone, every screen says so', async () => {
  await goto('#/overview');
  await page.locator('.shell').waitFor();
  await server.stop();
  await page.getByText('The Sluice server cannot be reached').waitFor();
  await page.locator('.sidebar').getByText('Unreachable').waitFor();
  await shot('13-server-down');
});

test('no page error and no Content-Security-Policy violation happened', () => {
  assert.deepEqual(problems, []);
});
