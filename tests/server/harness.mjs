// harness.mjs - what the end-to-end server tests share: counted checks grouped in named tests,
// OpenAPI's `nullable` turned into JSON Schema for ajv, and starting `ruvllm serve` on a free
// loopback port.
import { spawn } from 'node:child_process';

export const sleep = (ms) => new Promise((r) => setTimeout(r, ms));

// Counters of passed and failed checks; `current` names the running test in failure lines.
export const tally = { passed: 0, failed: 0, current: '' };

export function check(cond, what, detail) {
  if (cond) tally.passed++;
  else {
    tally.failed++;
    console.error(`FAIL ${tally.current}: ${what}` +
      `${detail !== undefined ? ': ' + JSON.stringify(detail).slice(0, 800) : ''}`);
  }
}

// Runs one named test; an exception counts as a failure and the run goes on.
export async function test(name, fn) {
  tally.current = name;
  const f0 = tally.failed, t0 = Date.now();
  try {
    await fn();
  } catch (e) {
    tally.failed++;
    console.error(`FAIL ${name}: exception: ${e && e.stack ? e.stack : e}`);
  }
  console.error(`${tally.failed === f0 ? 'ok  ' : 'FAIL'} ${name} (${Date.now() - t0} ms)`);
}

// OpenAPI's `nullable: true` means null is allowed too.
export function denull(s) {
  if (Array.isArray(s)) return s.map(denull);
  if (!s || typeof s !== 'object') return s;
  const o = {};
  for (const [k, v] of Object.entries(s)) if (k !== 'nullable') o[k] = denull(v);
  if (s.nullable === true) {
    if (typeof o.type === 'string') {
      o.type = [o.type, 'null'];
      if (o.enum) o.enum = [...o.enum, null];
      return o;
    }
    return { anyOf: [o, { type: 'null' }] };
  }
  return o;
}

// `ruvllm serve -m model` with args on 127.0.0.1 and a port the kernel picks; resolves once
// /health says 200 (checking that it says 503 until then) and stderr has said "ready".
// Returns { proc, port, base, log() }.
export async function startServer(bin, modelPath, args) {
  const p = spawn(bin, ['serve', '-m', modelPath, '--host', '127.0.0.1', '--port', '0', ...args],
    { stdio: ['ignore', 'ignore', 'pipe'] });
  let log = '';
  const port = await new Promise((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error('server did not start: ' + log)), 20000);
    p.stderr.on('data', (d) => {
      log += d;
      const m = /listening on http:\/\/127\.0\.0\.1:(\d+)/.exec(log);
      if (m) { clearTimeout(timer); resolve(Number(m[1])); }
    });
    p.on('exit', (code) => reject(new Error(`server exited with ${code}: ${log}`)));
  });
  p.stderr.on('data', (d) => { log += d; });
  const base = `http://127.0.0.1:${port}`;
  for (let i = 0; i < 200; i++) {
    try {
      const r = await fetch(`${base}/health`);
      if (r.status === 200) break;
      check(r.status === 503, '/health is 503 while loading', r.status);
    } catch { /* not yet */ }
    await sleep(50);
  }
  // The startup lines (model, tool-call family) come before "ready" on stderr, but the pipe may
  // deliver them after /health already answers: wait for them so tests can read the log.
  for (let i = 0; i < 200 && !/ruvllm serve: ready/.test(log); i++) await sleep(10);
  return { proc: p, port, base, log: () => log };
}
