// Drives hubfleet's admin page in headless Chromium the way an admin would, with the keyboard
// and plain form submissions, and checks every effect on the page and through the REST API.
//
// Run by crates/hubfleet/tests/it/admin.rs. Environment:
//   HUB_URL            public URL of the hub, e.g. http://127.0.0.1:8000
//   ADMIN_USER         an admin (auth.admin_users) who logs in through the login form
//   HUB_PASSWORD       the shared password
//   API_TOKEN          a token with admin rights, for checking state through the REST API
//   TARGET_USER        the user the admin creates, groups, starts, stops and mints a token for
//   OTHER_USER         a second user the admin creates, searches for and deletes
//   SCREENSHOT         where to save a PNG of the admin page
//   NODE_MODULES       the node_modules directory holding playwright-core
//   CHROMIUM           the Chromium executable (default /usr/bin/chromium)
// Prints one line per step; exits non-zero with the reason on the first failure.

import { createRequire } from 'node:module';
import { mkdtempSync, rmSync, mkdirSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, dirname } from 'node:path';

const env = (name) => {
  const value = process.env[name];
  if (!value) throw new Error(`environment variable ${name} is not set`);
  return value;
};
const hub = env('HUB_URL');
const admin = env('ADMIN_USER');
const password = env('HUB_PASSWORD');
const apiToken = env('API_TOKEN');
const target = env('TARGET_USER');
const other = env('OTHER_USER');
const screenshot = env('SCREENSHOT');
const require = createRequire(join(env('NODE_MODULES'), 'noop.js'));
const { chromium } = require('playwright-core');

const DEADLINE_MS = 60_000;

function check(condition, message) {
  if (!condition) throw new Error(message);
}

function step(message) {
  console.log(`step: ${message}`);
}

async function api(path, token = apiToken) {
  const response = await fetch(`${hub}/hub/api${path}`, {
    headers: { Authorization: `token ${token}` },
  });
  const body = await response.text();
  return { status: response.status, json: body ? JSON.parse(body) : null };
}

/** Polls `probe` until it returns a truthy value, or fails naming `what` after the deadline. */
async function waitFor(what, probe) {
  const deadline = Date.now() + DEADLINE_MS;
  let last;
  for (let delay = 50; ; delay = Math.min(delay * 2, 500)) {
    last = await probe();
    if (last) return last;
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await new Promise((resolve) => setTimeout(resolve, delay));
  }
}

async function flash(page) {
  return (await page.locator('.flash').innerText()).trim();
}

async function expectFlash(page, kind, text) {
  const element = page.locator(`.flash-${kind}`);
  check(await element.count() === 1, `expected a ${kind} message containing "${text}", page says: ${await page.locator('main').innerText()}`);
  const message = await flash(page);
  check(message.includes(text), `expected a ${kind} message containing "${text}", got "${message}"`);
}

function row(page, user) {
  return page.locator(`tr[data-user="${user}"]`);
}

/** Every visible form control must have an accessible name (a label or aria-label). */
async function checkLabels(page) {
  const unlabeled = await page.evaluate(() =>
    [...document.querySelectorAll('input:not([type=hidden]), textarea, select, button')]
      .filter((el) => !(el.labels && el.labels.length) && !el.getAttribute('aria-label') && !(el.tagName === 'BUTTON' && el.textContent.trim()))
      .map((el) => el.outerHTML));
  check(unlabeled.length === 0, `form controls without a label: ${unlabeled.join(' ')}`);
}

const userDataDir = mkdtempSync(join(tmpdir(), 'hubfleet-admin-chromium-'));
const context = await chromium.launchPersistentContext(userDataDir, {
  executablePath: process.env.CHROMIUM || '/usr/bin/chromium',
  headless: true,
  args: ['--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run',
    '--disable-background-networking', '--disable-component-update', '--disable-sync'],
  viewport: { width: 1280, height: 900 },
});
try {
  const page = context.pages()[0] ?? await context.newPage();
  page.setDefaultTimeout(30_000);

  step('the admin page sends an anonymous visitor to the login form');
  await page.goto(`${hub}/hub/admin`);
  check(new URL(page.url()).pathname === '/hub/login', `expected the login page, got ${page.url()}`);

  step('log in through the form, with the keyboard');
  await page.getByLabel('Username').fill(admin);
  await page.getByLabel('Password').fill(password);
  await page.getByLabel('Password').press('Enter');
  await page.waitForURL((url) => url.pathname === '/hub/admin');
  check(await page.getByRole('heading', { name: 'Admin', level: 1 }).count() === 1, 'the admin page has its heading');
  check(await page.getByRole('link', { name: 'Admin', exact: true }).count() === 1, 'the nav links to the admin page');
  await checkLabels(page);

  step('add two users at once');
  await page.getByLabel('User names', { exact: true }).first().fill(`${target}, ${other}`);
  await page.getByRole('button', { name: 'Add users' }).click();
  await page.waitForLoadState();
  await expectFlash(page, 'ok', `Added ${target}, ${other}.`);
  check(await row(page, target).count() === 1, `${target} is listed`);
  check((await api(`/users/${target}`)).status === 200, `the API knows ${target}`);

  step('an invalid name is refused with a clear message');
  await page.getByLabel('User names', { exact: true }).first().fill('bad/name');
  await page.getByRole('button', { name: 'Add users' }).click();
  await page.waitForLoadState();
  await expectFlash(page, 'error', 'Invalid user name(s): "bad/name"');

  step('create a group; a duplicate is refused');
  await page.getByLabel('Group name').fill('staff');
  await page.getByRole('button', { name: 'Create group' }).click();
  await page.waitForLoadState();
  await expectFlash(page, 'ok', 'Created group staff.');
  check((await api('/groups/staff')).status === 200, 'the API knows group staff');
  await page.getByLabel('Group name').fill('staff');
  await page.getByRole('button', { name: 'Create group' }).click();
  await page.waitForLoadState();
  await expectFlash(page, 'error', 'Group staff already exists.');

  step(`add ${target} to the group; unknown users are refused`);
  await page.getByLabel('Group', { exact: true }).fill('staff');
  await page.locator('#members-users').fill('nobody-here');
  await page.getByRole('button', { name: 'Add to group' }).click();
  await page.waitForLoadState();
  await expectFlash(page, 'error', 'No such user(s): nobody-here.');
  await page.getByLabel('Group', { exact: true }).fill('staff');
  await page.locator('#members-users').fill(target);
  await page.getByRole('button', { name: 'Add to group' }).click();
  await page.waitForLoadState();
  await expectFlash(page, 'ok', `Added ${target} to group staff.`);
  check((await row(page, target).locator('td.groups').innerText()).includes('staff'), 'the row lists the group');
  const group = await api('/groups/staff');
  check(JSON.stringify(group.json.users) === JSON.stringify([target]), `the API lists the member: ${JSON.stringify(group.json)}`);

  step(`start ${target}'s server`);
  await page.getByRole('button', { name: `Start ${target}'s server` }).click();
  await page.waitForLoadState();
  await expectFlash(page, 'ok', `Starting ${target}'s server.`);
  await waitFor(`${target}'s server to show as running`, async () => {
    await page.reload();
    return (await row(page, target).locator('td.status').innerText()).trim().startsWith('running');
  });
  const running = await api(`/users/${target}`);
  check(running.json.servers[''] && running.json.servers[''].ready === true, `the API says the server is ready: ${JSON.stringify(running.json.servers)}`);
  const served = await fetch(`${hub}/user/${target}/`, { redirect: 'manual' });
  check(served.status === 200 && (await served.text()) === 'stand-in', `the proxy routes to the server (got ${served.status})`);

  mkdirSync(dirname(screenshot), { recursive: true });
  await page.screenshot({ path: screenshot, fullPage: true });
  step(`screenshot saved to ${screenshot}`);

  step(`stop ${target}'s server`);
  await page.getByRole('button', { name: `Stop ${target}'s server` }).click();
  await page.waitForLoadState();
  await expectFlash(page, 'ok', `Stopped ${target}'s server.`);
  check((await row(page, target).locator('td.status').innerText()).trim().startsWith('stopped'), 'the row shows the server stopped');
  const stopped = await api(`/users/${target}`);
  check(Object.keys(stopped.json.servers).length === 0, `the API lists no running server: ${JSON.stringify(stopped.json.servers)}`);

  step('search by name');
  await page.getByLabel('Search by name').fill(other.slice(-4));
  await page.getByLabel('Search by name').press('Enter');
  await page.waitForURL((url) => url.searchParams.get('q') === other.slice(-4));
  check(await row(page, other).count() === 1, `${other} matches`);
  check(await row(page, target).count() === 0, `${target} does not match`);

  step(`mint a token for ${target} on their page`);
  await page.goto(`${hub}/hub/admin`);
  await page.getByRole('link', { name: `Manage ${target}` }).click();
  await page.waitForURL((url) => url.pathname === `/hub/admin/users/${target}`);
  await checkLabels(page);
  await page.getByLabel('Note').fill('made in the admin page test');
  await page.getByLabel('Expires').selectOption({ label: '1 day' });
  await page.getByRole('button', { name: 'Create token' }).click();
  await page.waitForLoadState();
  const token = await page.getByLabel('Token', { exact: true }).inputValue();
  check(/^[0-9a-f]{32,}$/.test(token), `a token is shown: ${token}`);
  const whoami = await api('/user', token);
  check(whoami.status === 200 && whoami.json.name === target, `the token belongs to ${target}: ${JSON.stringify(whoami)}`);
  const tokens = await api(`/users/${target}/tokens`);
  const minted = tokens.json.api_tokens.find((t) => t.note === 'made in the admin page test');
  check(minted && minted.expires_at, `the API lists the token with its expiry: ${JSON.stringify(tokens.json)}`);
  await page.goto(`${hub}/hub/admin/users/${target}`);
  check(!(await page.content()).includes(token), 'the token is never shown again');

  step(`remove ${target} from the group on their page`);
  await page.getByRole('button', { name: `Remove ${target} from group staff` }).click();
  await page.waitForLoadState();
  await expectFlash(page, 'ok', `Removed ${target} from group staff.`);
  check((await api('/groups/staff')).json.users.length === 0, 'the API lists no member');
  await page.getByLabel('Add to group').fill('staff');
  await page.getByRole('button', { name: 'Add to group' }).click();
  await page.waitForLoadState();
  await expectFlash(page, 'ok', `Added ${target} to group staff.`);

  step(`delete ${other}`);
  await page.goto(`${hub}/hub/admin/users/${other}`);
  await page.getByLabel(`Stop ${other}'s servers and delete ${other}`).check();
  await page.getByRole('button', { name: `Delete ${other}` }).click();
  await page.waitForURL((url) => url.pathname === '/hub/admin');
  await expectFlash(page, 'ok', `Deleted ${other}.`);
  check((await api(`/users/${other}`)).status === 404, `the API no longer knows ${other}`);

  console.log('admin page test passed');
} finally {
  await context.close();
  rmSync(userDataDir, { recursive: true, force: true });
}
