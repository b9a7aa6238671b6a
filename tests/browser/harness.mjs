// Browser test harness: starts a real `vbank up` on free ports in a temp dir, launches Debian's Chromium headless
// through playwright-core (never a downloaded browser), and saves a screenshot of every page a test leaves open when
// it fails (tests/artifacts/).
import { execFileSync, spawn } from 'node:child_process';
import { mkdtempSync, mkdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { request } from 'node:https';
import { createServer } from 'node:net';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { createInterface } from 'node:readline';
import { chromium } from 'playwright-core';
import { udpRelay } from './relay.mjs';

const ROOT = resolve(import.meta.dirname, '../..');
export const ARTIFACTS = join(ROOT, 'tests/artifacts');
export const VBANK = process.env.VBANK_BIN
  ?? join(process.env.CARGO_TARGET_DIR ?? join(process.env.HOME, '.cache/vbank/target'), 'debug/vbank');

// Flags from ../shared/reference/webrtc.md: without the background-networking ones Chromium floods the closed network.
const CHROMIUM_FLAGS = [
  '--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run', '--disable-background-networking',
  '--disable-component-update', '--disable-sync', '--use-fake-device-for-media-stream', '--use-fake-ui-for-media-stream',
  '--autoplay-policy=no-user-gesture-required',
  // The gateway under test is on loopback; Chromium leaves loopback out of ICE unless told.
  '--allow-loopback-in-peer-connection',
];

function portFree(port) {
  return new Promise((ok) => {
    const s = createServer();
    s.once('error', () => ok(false));
    s.listen(port, '0.0.0.0', () => s.close(() => ok(true)));
  });
}

/** Twelve free consecutive ports in 33000–34999 (eight internal TCP listeners, UDP media, the KYC vendor simulator,
 * the public port): below the ephemeral range and apart from the Rust tests' range. */
async function freePorts() {
  for (let i = 0; i < 100; i++) {
    const base = 33000 + 12 * Math.floor(Math.random() * 165);
    const free = await Promise.all([...Array(12).keys()].map((d) => portFree(base + d)));
    if (free.every(Boolean)) return { port: base + 11, base };
  }
  throw new Error('no free ports in 33000-34999');
}

/** Start `vbank up --json`; resolves with the URLs once every service is ready. With `{ relay: true }` browsers
 * reach the gateway's media port through a UDP relay the test can cut (`vbank.relay.cut(ms)`), and no ICE-TCP
 * candidate is offered (it would bypass the relay) unless `{ tcp: true }`. With `{ e2ee: 'aes-256-gcm' }` (or
 * 'sm4-gcm') calls joined by link are end-to-end encrypted with that frame cipher. */
export async function startVbank({ relay = false, tcp = false, e2ee = null } = {}) {
  const dir = mkdtempSync(join(tmpdir(), 'vbank-browser-'));
  const { port, base } = await freePorts();
  const mediaRelay = relay ? await udpRelay(base + 4) : null;
  const extra = mediaRelay ? ['--media-advertise', `127.0.0.1:${mediaRelay.port}`] : [];
  if (mediaRelay && !tcp) extra.push('--no-media-tcp');
  if (e2ee) extra.push('--e2ee-direct', '--e2ee-suite', e2ee);
  const proc = spawn(VBANK, ['up', '--json', '--data-dir', join(dir, 'data'), '--port', String(port),
    '--internal-port-base', String(base), '--ready-timeout', '60', ...extra], { stdio: ['ignore', 'pipe', 'pipe'] });
  const log = [];
  createInterface({ input: proc.stderr }).on('line', (l) => log.push(l));
  const urls = await new Promise((ok, fail) => {
    const timer = setTimeout(() => fail(new Error(`vbank up not ready in 90 s:\n${log.join('\n')}`)), 90_000);
    proc.once('exit', (code) => fail(new Error(`vbank up exited ${code}:\n${log.join('\n')}`)));
    createInterface({ input: proc.stdout }).once('line', (line) => { clearTimeout(timer); ok(JSON.parse(line)); });
  });
  return {
    urls,
    log,
    relay: mediaRelay,
    /** `vbank --json <args>` against this node (with `input` on stdin), parsed. */
    cli: (args, input) => JSON.parse(execFileSync(VBANK, ['--config', urls.config, '--json', ...args], { encoding: 'utf8', input, stdio: 'pipe' })),
    /** Poll `check` every 250 ms until it returns something truthy; fail with `what` and the log's tail after `ms`. */
    async until(what, check, ms = 20_000) {
      const deadline = Date.now() + ms;
      for (;;) {
        const v = await check();
        if (v) return v;
        if (Date.now() > deadline) throw new Error(`${what}\n${log.slice(-15).join('\n')}`);
        await new Promise((r) => setTimeout(r, 250));
      }
    },
    async stop() {
      mediaRelay?.close();
      if (proc.exitCode === null) {
        const exited = new Promise((ok) => proc.once('exit', ok));
        proc.kill('SIGTERM');
        await exited;
      }
      rmSync(dir, { recursive: true, force: true });
      // Kept for tests/run.sh's personal-data scan of every log the suite produced.
      const logs = join(ARTIFACTS, 'logs');
      mkdirSync(logs, { recursive: true });
      writeFileSync(join(logs, `vbank-up-${port}-${Date.now()}.log`), `${log.join('\n')}\n`);
    },
  };
}

/** Launch headless Chromium; `ignoreHTTPSErrors` because the page's certificate comes from the throw-away dev CA
 * (the Rust end-to-end tests verify that chain against the CA file). */
export async function launch() {
  const browser = await chromium.launch({ executablePath: '/usr/bin/chromium', headless: true, args: CHROMIUM_FLAGS });
  const context = await browser.newContext({ ignoreHTTPSErrors: true, locale: 'zh-CN' });
  return { browser, context };
}

/** Screenshot every open page of `context` into tests/artifacts as `<name>-<n>.png`. */
export async function screenshots(context, name) {
  mkdirSync(ARTIFACTS, { recursive: true });
  const files = [];
  for (const [i, page] of context.pages().entries()) {
    const file = join(ARTIFACTS, `${name.replace(/[^\w-]+/g, '_')}-${i}.png`);
    await page.screenshot({ path: file, fullPage: true }).catch(() => {});
    files.push(file);
  }
  return files;
}

/** Run `body(context)`; on failure, save screenshots and rethrow with their paths. */
export async function withBrowser(name, body) {
  const { browser, context } = await launch();
  try {
    await body(context);
    await screenshots(context, name);
  } catch (e) {
    const files = await screenshots(context, `FAILED-${name}`);
    e.message += `\nscreenshots: ${files.join(', ')}`;
    throw e;
  } finally {
    await browser.close();
  }
}

/** Open the customer page and the teller console in `room` and press join on both. */
export async function openCall(context, vbank, room) {
  const customer = await context.newPage();
  const teller = await context.newPage();
  await customer.goto(`${vbank.urls.customer}?room=${room}`);
  await teller.goto(`${vbank.urls.teller}?room=${room}`);
  await customer.click('#join');
  await teller.click('#join');
  return { customer, teller };
}

/** The supervisor console of `vbank` in its own browser context, logged in as `name`. */
export async function supervisorConsole(browser, vbank, name, password) {
  const context = await browser.newContext({ ignoreHTTPSErrors: true, locale: 'zh-CN', viewport: { width: 1280, height: 900 } });
  const page = await context.newPage();
  await page.goto(`${vbank.urls.customer}supervisor`);
  await page.fill('#login-name', name);
  await page.fill('#login-password', password);
  await page.click('#login-form button[type=submit]');
  return { context, page };
}

/** `vbank up` with the key ceremony held: every call is recorded. */
export async function startRecordedVbank(opts = {}) {
  const vbank = await startVbank(opts);
  const officers = mkdtempSync(join(tmpdir(), 'vbank-officers-'));
  await ceremony(vbank, officers);
  rmSync(officers, { recursive: true, force: true });
  return vbank;
}

/** Hold the key ceremony on `vbank` with two generated officers (their keys in `dir`), then give the gateway the
 * 2 s it takes to fetch the new call-token key. From then on calls are recorded. */
export async function ceremony(vbank, dir) {
  const json = (...args) => JSON.parse(execFileSync(VBANK, ['--config', vbank.urls.config, '--json', ...args], { encoding: 'utf8' }));
  const args = ['hsm', 'ceremony'];
  for (const name of ['alice', 'bob']) {
    json('hsm', 'officer-keygen', '--name', name, '--out', dir);
    args.push('--officer', `${name}=${join(dir, `${name}.pub.pem`)}`, '--witness', `${name}=${join(dir, `${name}.key`)}`);
  }
  json(...args);
  await new Promise((r) => setTimeout(r, 3000));
}

/** Video frames `page`'s call has decoded so far (0 before it joins). */
export async function framesDecoded(page) {
  return page.evaluate(async () => {
    let n = 0;
    (await window.vbankCall?.pc.getStats())?.forEach((r) => {
      if (r.type === 'inbound-rtp' && r.kind === 'video') n += r.framesDecoded ?? 0;
    });
    return n;
  });
}

/** Sign on the customer page's signature pad: one wavy stroke across it, as a finger or mouse would draw. */
export async function drawSignature(page) {
  await page.locator('#sign-pad').scrollIntoViewIfNeeded();
  const box = await page.locator('#sign-pad').boundingBox();
  await page.mouse.move(box.x + box.width * 0.05, box.y + box.height / 2);
  await page.mouse.down();
  for (let i = 1; i <= 20; i++) await page.mouse.move(box.x + box.width * (0.05 + i * 0.04), box.y + box.height * (0.5 + 0.2 * Math.sin(i / 2)));
  await page.mouse.up();
}

/** POST `body` from one of the node's services to another (`to`: keyd, recorder or kyc) over mTLS, with the caller's
 * certificate from the node's TLS directory: { status, body } (parsed JSON, or the bytes for anything else). */
export function serviceAs(configPath, from, to, path, body) {
  const config = readFileSync(configPath, 'utf8');
  const tlsDir = config.match(/\[tls\][^[]*?\ndir = "([^"]+)"/)[1];
  const [, host, port] = config.match(new RegExp(`\\[${to}\\]\\nlisten = "([^"]+):(\\d+)"`));
  return new Promise((ok, fail) => {
    const req = request({
      host, port, path, method: 'POST', servername: `${to}.vbank.internal`,
      ca: readFileSync(join(tlsDir, 'ca.crt')), cert: readFileSync(join(tlsDir, `${from}.crt`)), key: readFileSync(join(tlsDir, `${from}.key`)),
      headers: { 'content-type': 'application/json' },
    }, (res) => {
      const parts = [];
      res.on('data', (d) => parts.push(d));
      res.on('end', () => {
        const bytes = Buffer.concat(parts);
        const json = /json/.test(res.headers['content-type'] ?? '');
        ok({ status: res.statusCode, body: json ? JSON.parse(bytes.toString() || 'null') : bytes });
      });
    });
    req.on('error', fail);
    req.end(JSON.stringify(body));
  });
}
