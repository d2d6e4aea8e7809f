// Drives the auditor's console in Debian's Chromium with playwright-core (no browser
// download): sign in, search, a record's timeline, an entry's evidence, CSV export, sign
// out; an unauthenticated request lands on the sign-in page. Saves a screenshot of each page.
// Run by tests/it/browser.rs with CONSOLE_URL, CONSOLE_USER, CONSOLE_TOKEN, SCREENSHOTS.
import { chromium } from 'playwright-core';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';

const { CONSOLE_URL: base, CONSOLE_USER: user, CONSOLE_TOKEN: token, SCREENSHOTS: out } = process.env;
const chromiumPath = process.env.CHROMIUM || '/usr/bin/chromium';
if (!base || !user || !token || !out) throw new Error('CONSOLE_URL, CONSOLE_USER, CONSOLE_TOKEN and SCREENSHOTS are required');
fs.mkdirSync(out, { recursive: true });

function check(ok, what) {
  if (!ok) throw new Error(`check failed: ${what}`);
  console.log(`ok: ${what}`);
}

const profile = fs.mkdtempSync(path.join(os.tmpdir(), 'tb-console-chromium-'));
const context = await chromium.launchPersistentContext(profile, {
  executablePath: chromiumPath,
  headless: true,
  acceptDownloads: true,
  viewport: { width: 1280, height: 860 },
  args: ['--headless', '--no-sandbox', '--disable-gpu', '--no-first-run',
         '--disable-background-networking', '--disable-component-update', '--disable-sync'],
});
const page = context.pages()[0] ?? await context.newPage();
const shot = async (name) => page.screenshot({ path: path.join(out, `${name}.png`), fullPage: true });

try {
  await page.goto(`${base}/console`);
  check(new URL(page.url()).pathname === '/console/login', 'an unauthenticated visit is sent to the sign-in page');
  const unlabelled = await page.$$eval('input:not([type=hidden])', (inputs) =>
    inputs.filter((i) => !document.querySelector(`label[for="${i.id}"]`)).length);
  check(unlabelled === 0, 'every field of the sign-in form has a label');
  await shot('1-sign-in');

  await page.getByLabel('Your name').fill(user);
  await page.getByLabel('Sign-in token').fill(token);
  await page.getByLabel('Sign-in token').press('Enter');
  await page.waitForURL(`${base}/console`);
  check((await page.textContent('header')).includes(`Signed in as ${user}`), 'signed in');

  await page.getByLabel('Record').fill('E-1042');
  await page.getByRole('button', { name: 'Search' }).click();
  await page.waitForURL(/record=E-1042/);
  const rows = await page.locator('tbody tr').count();
  check(rows === 3, `the search finds E-1042's three entries (found ${rows})`);
  await shot('2-search');

  await page.locator('tbody tr').first().getByRole('link', { name: 'E-1042' }).click();
  await page.waitForURL(`${base}/console/records/E-1042`);
  const timeline = await page.textContent('main');
  check(timeline.includes('Current state') && timeline.includes('Senior Engineer'), "the record's timeline shows its current state");
  await shot('3-record-timeline');

  await page.getByRole('link', { name: 'evidence' }).first().click();
  await page.waitForURL(/\/console\/entries\//);
  const evidence = await page.textContent('main');
  check(evidence.includes('valid') && evidence.includes('sealed') && evidence.includes('"aadObjectId"'),
        "the entry's evidence: the HMAC verifies, the seal, the message as sent");
  await shot('4-entry-evidence');

  await page.goto(`${base}/console?record=E-1042`);
  const [download] = await Promise.all([
    page.waitForEvent('download'),
    page.getByRole('link', { name: 'Export these results as CSV' }).click(),
  ]);
  const csv = fs.readFileSync(await download.path(), 'utf8');
  fs.writeFileSync(path.join(out, 'export.csv'), csv);
  const lines = csv.trim().split('\n');
  check(lines[0].startsWith('activity_at,operation,entity,record_id'), 'the CSV has its header');
  check(lines.length === 4 && lines.slice(1).every((l) => l.includes('E-1042')), 'the CSV holds the three entries of E-1042');

  await page.goto(`${base}/console/access`);
  const access = await page.textContent('main');
  check(access.includes('GET /console/export.csv?record=E-1042') && access.includes('GET /console/records/E-1042'),
        'the access log shows the pages viewed and the export');
  await shot('5-access-log');

  await page.getByRole('button', { name: 'Sign out' }).click();
  await page.waitForURL(`${base}/console/login`);
  await shot('6-signed-out');
  await page.goto(`${base}/console/records/E-1042`);
  check(new URL(page.url()).pathname === '/console/login', 'after sign-out the console needs signing in again');
} finally {
  await context.close();
  fs.rmSync(profile, { recursive: true, force: true });
}
