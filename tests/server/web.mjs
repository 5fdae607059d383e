// The chat page of `ruvllm serve` (GET /) in headless Chromium (Debian's chromium, driven
// by playwright-core; no browser download): the page loads with its own files only, a
// typed message is sent, the reply streams in (the text grows over several updates, then
// completes) and equals the API's answer for the same request, text is never parsed as
// HTML, the stop button aborts a reply, and the settings reach the request.
//
// usage: node web.mjs PATH/TO/ruvllm      (RUVLLM_TESTDATA: the shared data folder;
//   CHROMIUM: the browser, default /usr/bin/chromium; RUVLLM_WEB_SCREENSHOT: a PNG to write)
// Exit 0: all passed; 1: a check failed; 77: chromium or the model is missing.
import { spawn } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';

const here = path.dirname(fileURLToPath(import.meta.url));
const bin = process.argv[2];
const data = process.env.RUVLLM_TESTDATA || path.resolve(here, '../../../shared');
const modelPath = path.join(data, 'models/stories260K.gguf');
const chromiumPath = process.env.CHROMIUM || '/usr/bin/chromium';
if (!bin || !fs.existsSync(bin)) {
  console.error(`web: no ruvllm binary given (${bin})`);
  process.exit(1);
}
if (!fs.existsSync(chromiumPath)) {
  console.error(`web: skipped: ${chromiumPath} missing (scripts/install-deps.sh installs chromium)`);
  process.exit(77);
}
if (!fs.existsSync(modelPath)) {
  console.error(`web: skipped: ${modelPath} missing`);
  process.exit(77);
}
let chromium;
try {
  ({ chromium } = await import('playwright-core'));
} catch (e) {
  console.error(`web: node modules missing (run npm ci in ${here}): ${e.message}`);
  process.exit(1);
}

let passed = 0, failed = 0, current = '';
function check(cond, what, detail) {
  if (cond) passed++;
  else {
    failed++;
    console.error(`FAIL ${current}: ${what}${detail !== undefined ? ': ' + JSON.stringify(detail).slice(0, 600) : ''}`);
  }
}
async function test(name, fn) {
  current = name;
  const f0 = failed, t0 = Date.now();
  try {
    await fn();
  } catch (e) {
    failed++;
    console.error(`FAIL ${name}: exception: ${e && e.stack ? e.stack : e}`);
  }
  console.error(`${failed === f0 ? 'ok  ' : 'FAIL'} ${name} (${Date.now() - t0} ms)`);
}
const sleep = (ms) => new Promise((r) => setTimeout(r, ms));

// ---- the server --------------------------------------------------------------------------
// Servers still running when this script ends (a failure thrown past the checks) are killed.
const spawned = [];
process.on('exit', () => { for (const p of spawned) if (p.exitCode === null && p.signalCode === null) p.kill('SIGKILL'); });
async function startServer(extra) {
  const proc = spawn(bin, ['serve', '-m', modelPath, '--host', '127.0.0.1', '--port', '0', '--threads', '1',
    '--parallel', '4', '--ctx', '2048', ...extra], { stdio: ['ignore', 'ignore', 'pipe'] });
  spawned.push(proc);
  const s = { proc, log: '' };
  s.exit = new Promise((resolve) => proc.on('exit', (code) => resolve(code)));
  s.base = await new Promise((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error('server did not start: ' + s.log)), 20000);
    proc.stderr.on('data', (d) => {
      s.log += d;
      const m = /listening on (http:\/\/127\.0\.0\.1:\d+)/.exec(s.log);
      if (m && /ready/.test(s.log)) { clearTimeout(timer); resolve(m[1]); }
    });
    proc.on('exit', (code) => reject(new Error(`server exited with ${code}: ${s.log}`)));
  });
  return s;
}
const srv = await startServer([]);
const base = srv.base;

async function metrics() {
  const text = await (await fetch(`${base}/metrics`)).text();
  const m = {};
  for (const line of text.split('\n')) {
    if (!line || line.startsWith('#')) continue;
    const i = line.lastIndexOf(' ');
    m[line.slice(0, i)] = Number(line.slice(i + 1));
  }
  return m;
}

// ---- the browser: a fresh profile, nothing reaching outside --------------------------------
const profile = fs.mkdtempSync(path.join(os.tmpdir(), 'ruvllm-web-'));
const ctx = await chromium.launchPersistentContext(profile, {
  executablePath: chromiumPath,
  headless: true,
  args: ['--headless', '--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run',
    '--disable-background-networking', '--disable-component-update', '--disable-sync'],
  viewport: { width: 1100, height: 760 },
});
const page = ctx.pages()[0] || await ctx.newPage();
const consoleErrors = [], requests = [];
page.on('console', (msg) => { if (msg.type() === 'error') consoleErrors.push(msg.text()); });
page.on('pageerror', (e) => consoleErrors.push(String(e)));
page.on('request', (r) => requests.push(r.url()));
const chatBodies = [];
page.on('request', (r) => {
  if (r.url().endsWith('/v1/chat/completions')) chatBodies.push(JSON.parse(r.postData() || '{}'));
});

// Watch the last assistant message: every text it shows (each update replaces the text
// node), with the time, until its state leaves "streaming".
async function watchReply() {
  await page.evaluate(() => {
    window.__snaps = [];
    const log = document.getElementById('log');
    const obs = new MutationObserver((records) => {
      for (const r of records) {
        const box = r.target.closest ? r.target.closest('.msg.assistant') : null;
        const all = log.querySelectorAll('.msg.assistant');
        if (!box || box !== all[all.length - 1]) continue;
        for (const n of r.addedNodes)
          if (n.nodeType === Node.TEXT_NODE) window.__snaps.push([performance.now(), n.data]);
      }
    });
    obs.observe(log, { childList: true, subtree: true, characterData: true });
  });
}
const lastAssistant = () => page.locator('.msg.assistant').last();
async function waitState(state, timeout = 30000) {
  await page.waitForFunction((s) => {
    const all = document.querySelectorAll('.msg.assistant');
    return all.length && all[all.length - 1].dataset.state === s;
  }, state, { timeout });
}
async function setField(id, value) {
  await page.fill(`#${id}`, String(value));
}

await test('page loads', async () => {
  const r = await page.goto(`${base}/`);
  check(r.status() === 200, 'GET / is 200', r.status());
  const h = r.headers();
  check(/text\/html/.test(h['content-type']), 'HTML', h['content-type']);
  check(/script-src 'self'/.test(h['content-security-policy'] || ''), 'a content security policy', h);
  check(h['x-content-type-options'] === 'nosniff', 'nosniff');
  check(await page.title() === 'ruvllm chat', 'title', await page.title());
  await page.waitForFunction(() => /stories260K/.test(document.getElementById('model').textContent), null, { timeout: 10000 });
  check(true, 'the model id from /v1/models is shown');
  const js = await fetch(`${base}/app.js`);
  check(js.status === 200 && /javascript/.test(js.headers.get('content-type')), '/app.js', js.status);
  check(requests.every((u) => u.startsWith(base)), 'no request leaves the server', requests.filter((u) => !u.startsWith(base)));
});

await test('a streamed answer appears', async () => {
  await setField('system', 'You tell short stories.');
  await setField('temperature', 0);
  await setField('max-tokens', 120);
  await setField('top-p', 1);
  await setField('seed', 7);
  await watchReply();
  await page.fill('#input', 'Tell me about a cat.');
  await page.click('#send');
  await page.waitForSelector('.msg.user');
  await waitState('done');
  const snaps = await page.evaluate(() => window.__snaps);
  const text = await lastAssistant().locator('.body').textContent();
  check(text.length > 20, 'a reply', text);
  check(await page.locator('.msg.user .body').first().textContent() === 'Tell me about a cat.', 'the user message is shown');
  // streamed: several growing prefixes of the final text, the last one the whole text
  const lens = snaps.map(([, t]) => t.length);
  check(snaps.length >= 3, 'the text was updated several times', snaps.length);
  check(snaps.every(([, t]) => text.startsWith(t)), 'every update is a prefix of the reply');
  check(lens.every((l, i) => i === 0 || l >= lens[i - 1]) && lens[lens.length - 1] === text.length, 'the text grows to the reply', lens);
  check(new Set(lens).size >= 3, 'at least three lengths seen', lens);
  check(snaps[snaps.length - 1][0] > snaps[0][0], 'over time');
  console.error(`     ${snaps.length} updates over ${(snaps[snaps.length - 1][0] - snaps[0][0]).toFixed(1)} ms, ${text.length} characters`);
  // the request carried the settings and the system prompt
  const req = chatBodies[chatBodies.length - 1];
  check(req.stream === true && req.temperature === 0 && req.max_tokens === 120 && req.top_p === 1 && req.seed === 7,
    'settings in the request', req);
  check(req.messages[0].role === 'system' && req.messages[0].content === 'You tell short stories.', 'system prompt first', req.messages);
  // the same request through the API, not streamed: the same text
  const api = await (await fetch(`${base}/v1/chat/completions`, {
    method: 'POST', headers: { 'content-type': 'application/json' },
    body: JSON.stringify({ ...req, stream: false, stream_options: undefined }),
  })).json();
  check(api.choices && api.choices[0].message.content === text, 'the page shows what the API answers', [text, api]);
  const stats = await page.textContent('#stats');
  check(/tokens/.test(stats) && /finish: (stop|length)/.test(stats), 'stats line', stats);
  check(await page.isEnabled('#send') && !(await page.isEnabled('#stop')), 'send enabled, stop disabled after the reply');
});

await test('the conversation goes on', async () => {
  const before = chatBodies.length;
  await page.fill('#input', 'And then?');
  await page.keyboard.press('Enter'); // Enter sends
  await page.waitForFunction(() => document.querySelectorAll('.msg.assistant').length === 2, null, { timeout: 10000 });
  await waitState('done');
  const req = chatBodies[before];
  check(req.messages.length === 4 && req.messages[2].role === 'assistant' && req.messages[3].content === 'And then?',
    'the history goes with the next turn', req.messages.map((m) => m.role));
});

if (process.env.RUVLLM_WEB_SCREENSHOT) await page.screenshot({ path: process.env.RUVLLM_WEB_SCREENSHOT });

await test('text is never HTML', async () => {
  const evil = '<img src=x onerror="window.__pwned=1"><b>bold</b> & <script>window.__pwned=2</script>';
  await page.fill('#input', evil);
  await page.click('#send');
  await waitState('done');
  const user = page.locator('.msg.user .body').last();
  check(await user.textContent() === evil, 'shown as typed');
  check(await page.locator('#log img, #log b, #log script').count() === 0, 'no element made from text');
  check(await page.evaluate(() => window.__pwned === undefined), 'nothing ran');
});

await test('stop aborts the reply', async () => {
  // Throttle the page's network so that the reply streams slowly enough to be stopped.
  const cdp = await ctx.newCDPSession(page);
  await cdp.send('Network.enable');
  await cdp.send('Network.emulateNetworkConditions', { offline: false, latency: 0, downloadThroughput: 3000, uploadThroughput: -1 });
  await page.click('#clear');
  await setField('max-tokens', 1500);
  await setField('temperature', 1);
  await page.fill('#input', 'Tell me a very long story.');
  await page.click('#send');
  await page.waitForFunction(() => {
    const b = document.querySelector('.msg.assistant .body');
    return b && b.textContent.length > 0;
  }, null, { timeout: 20000 });
  check(await page.isEnabled('#stop'), 'stop enabled while streaming');
  await page.click('#stop');
  await waitState('stopped', 10000);
  const t1 = await lastAssistant().locator('.body').textContent();
  await sleep(500);
  const t2 = await lastAssistant().locator('.body').textContent();
  check(t1.length > 0 && t1 === t2, 'the text stops growing', [t1.length, t2.length]);
  check(await page.isEnabled('#send') && !(await page.isEnabled('#stop')), 'send enabled again');
  check(/stopped/.test(await page.textContent('#stats')), 'stats say stopped');
  await cdp.send('Network.emulateNetworkConditions', { offline: false, latency: 0, downloadThroughput: -1, uploadThroughput: -1 });
  // the server is idle again: the stream was closed, its request ended
  let m;
  for (let i = 0; i < 50; i++) {
    m = await metrics();
    if (m.ruvllm_requests_running === 0 && m.ruvllm_kv_blocks_used === 0) break;
    await sleep(100);
  }
  check(m.ruvllm_requests_running === 0 && m.ruvllm_kv_blocks_used === 0, 'no request left running', m);
  // and the page still works
  await setField('max-tokens', 20);
  await page.fill('#input', 'One more.');
  await page.click('#send');
  await waitState('done');
  check((await lastAssistant().locator('.body').textContent()).length > 0, 'a new reply after stop');
});

await test('errors are shown', async () => {
  await setField('max-tokens', 5000); // more than the context
  await page.fill('#input', 'Too long.');
  await page.click('#send');
  await page.waitForSelector('.msg.error', { timeout: 10000 });
  const err = await page.locator('.msg.error .body').last().textContent();
  check(/HTTP 400/.test(err) && /max_tokens/.test(err), 'the API error message', err);
  check(await page.isEnabled('#send'), 'send enabled after an error');
  await setField('temperature', 7);
  await page.fill('#input', 'x');
  await page.click('#send');
  check(/temperature/.test(await page.textContent('#status')), 'bad settings are named', await page.textContent('#status'));
});

await test('with an API key', async () => {
  const key = 'sk-web-test';
  const s2 = await startServer(['--api-key', key]);
  try {
    await page.goto(`${s2.base}/`);
    await page.waitForFunction(() => /API key/.test(document.getElementById('model').textContent), null, { timeout: 10000 });
    check(true, 'the page says a key is needed');
    await page.fill('#api-key', key);
    await page.dispatchEvent('#api-key', 'change');
    await page.waitForFunction(() => /stories260K/.test(document.getElementById('model').textContent), null, { timeout: 10000 });
    await setField('max-tokens', 16);
    await page.fill('#input', 'Hello.');
    await page.click('#send');
    await waitState('done');
    check((await lastAssistant().locator('.body').textContent()).length > 0, 'a reply with the key');
    const req = chatBodies[chatBodies.length - 1];
    check(req.model === 'stories260K', 'the request names the model', req.model);
  } finally {
    s2.proc.kill('SIGTERM');
    check(await s2.exit === 0, 'second server exit 0');
  }
});

await test('no page errors', async () => {
  // the 400 of 'errors are shown' and the 401 before the key are logged by Chromium as
  // failed resource loads
  const real = consoleErrors.filter((e) => !/status of 40[01]/.test(e));
  check(real.length === 0, 'no console errors', real);
});

await ctx.close();
fs.rmSync(profile, { recursive: true, force: true });
srv.proc.kill('SIGTERM');
const code = await srv.exit;
current = 'shutdown';
check(code === 0, 'server exit 0', [code, srv.log.slice(-300)]);
console.error(`${passed} passed, ${failed} failed`);
process.exit(failed ? 1 : 0);
