// Opens a page through `hubfleet proxy` on HTTPS in headless Chromium and echoes one message over a
// WebSocket from that page. Chromium loads the page over HTTP/2 and, because the proxy advertises
// SETTINGS_ENABLE_CONNECT_PROTOCOL, opens the WebSocket on the same HTTP/2 connection (RFC 8441).
//
// Run by crates/hubfleet/tests/it/proxy.rs. Environment:
//   PAGE_URL      the page, e.g. https://localhost:8443/ (the page opens wss://<same host>/ws)
//   NODE_MODULES  the node_modules directory holding playwright-core
//   CHROMIUM      the Chromium executable (default /usr/bin/chromium)
// Prints `protocol <nextHopProtocol>` and `echo <message>`; exits non-zero on failure.

import { createRequire } from 'node:module';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';

const env = (name) => {
  const value = process.env[name];
  if (!value) throw new Error(`environment variable ${name} is not set`);
  return value;
};
const require = createRequire(join(env('NODE_MODULES'), 'noop.js'));
const { chromium } = require('playwright-core');

const profile = mkdtempSync(join(tmpdir(), 'hubfleet-h2ws-'));
const context = await chromium.launchPersistentContext(profile, {
  executablePath: process.env.CHROMIUM || '/usr/bin/chromium',
  headless: true,
  args: ['--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run',
    '--disable-background-networking', '--disable-component-update', '--disable-sync',
    // The test's certificate is self-signed. (Playwright's `ignoreHTTPSErrors` is not enough:
    // with it Chromium keeps WebSockets off the HTTP/2 connection.)
    '--ignore-certificate-errors'],
});
try {
  const page = await context.newPage();
  const response = await page.goto(env('PAGE_URL'));
  if (!response || response.status() !== 200) {
    throw new Error(`page answered ${response && response.status()}`);
  }
  const protocol = await page.evaluate(
    () => performance.getEntriesByType('navigation')[0].nextHopProtocol);
  console.log(`protocol ${protocol}`);
  const echo = await page.evaluate(() => window.echoed);
  console.log(`echo ${echo}`);
} finally {
  await context.close();
  rmSync(profile, { recursive: true, force: true });
}
