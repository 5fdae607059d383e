// A bounded load test of `ruvllm serve` on loopback with stories260K: 200 requests, 32 in
// flight at once against 16 running sequences (so requests also wait in the queue) and a
// KV pool of 64 blocks, too small for 16 of them (so sequences are preempted), a mix
// of chat and completions, streamed and not, n = 1 and 2, stop strings, seeds, shared
// system prompts (prefix-cache hits). Every request must get a complete, well-formed
// answer (status 200, the response schema, every choice with a finish reason, [DONE] for
// streams, usage that adds up and respects max_tokens); afterwards the server is still up
// and /metrics shows nothing running or waiting, every KV block back (none used; cached
// ones are free), and the 200 requests counted as finished, none aborted or rejected.
//
// usage: node load.mjs PATH/TO/ruvllm      (RUVLLM_TESTDATA: the shared data folder)
// Exit 0: all passed; 1: a check failed; 77: the model data is missing.
import { spawn } from 'node:child_process';
import fs from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { denull } from './harness.mjs';

const here = path.dirname(fileURLToPath(import.meta.url));
const bin = process.argv[2];
const data = process.env.RUVLLM_TESTDATA || path.resolve(here, '../../../shared');
const modelPath = path.join(data, 'models/stories260K.gguf');
const schemaPath = path.join(data, 'testdata/openai/schemas_subset.json');
if (!bin || !fs.existsSync(bin)) {
  console.error(`load: no ruvllm binary given (${bin})`);
  process.exit(1);
}
if (!fs.existsSync(modelPath) || !fs.existsSync(schemaPath)) {
  console.error(`load: skipped: ${modelPath} or ${schemaPath} missing`);
  process.exit(77);
}
let Ajv2020;
try {
  Ajv2020 = (await import('ajv/dist/2020.js')).default;
} catch (e) {
  console.error(`load: node modules missing (run npm ci in ${here}): ${e.message}`);
  process.exit(1);
}

const N_REQUESTS = 200, CONCURRENCY = 32, PARALLEL = 16;
const DEADLINE_MS = 120000; // the whole load must end well before this

let passed = 0, failed = 0;
const failures = new Map(); // one line per kind of failure, with a count
function check(cond, what, detail) {
  if (cond) { passed++; return true; }
  failed++;
  const n = failures.get(what);
  if (n === undefined && failures.size < 40)
    console.error(`FAIL ${what}${detail !== undefined ? ': ' + JSON.stringify(detail).slice(0, 500) : ''}`);
  failures.set(what, (n || 0) + 1);
  return false;
}

const ajv = new Ajv2020({ strict: false, allErrors: true, validateFormats: false });
ajv.addSchema(denull(JSON.parse(fs.readFileSync(schemaPath, 'utf8'))), 'openai');
const V = {
  chat: ajv.getSchema('openai#/$defs/CreateChatCompletionResponse'),
  chunk: ajv.getSchema('openai#/$defs/CreateChatCompletionStreamResponse'),
  cmpl: ajv.getSchema('openai#/$defs/CreateCompletionResponse'),
};

// ---- the server ---------------------------------------------------------------------------
const srv = spawn(bin, ['serve', '-m', modelPath, '--host', '127.0.0.1', '--port', '0', '--threads', '1',
  '--parallel', String(PARALLEL), '--ctx', '1024', '--kv-mem', '640K', '--max-conns', '256'], { stdio: ['ignore', 'ignore', 'pipe'] });
// killed if this script ends while it runs (a failure thrown past the checks)
process.on('exit', () => { if (srv.exitCode === null && srv.signalCode === null) srv.kill('SIGKILL'); });
let log = '';
const base = await new Promise((resolve, reject) => {
  const timer = setTimeout(() => reject(new Error('server did not start: ' + log)), 20000);
  srv.stderr.on('data', (d) => {
    log += d;
    const m = /listening on (http:\/\/127\.0\.0\.1:\d+)/.exec(log);
    if (m && /ready/.test(log)) { clearTimeout(timer); resolve(m[1]); }
  });
  srv.on('exit', (code) => reject(new Error(`server exited with ${code}: ${log}`)));
});
let exitCode = null;
const serverExit = new Promise((resolve) => srv.on('exit', (code, sig) => { exitCode = [code, sig]; resolve(exitCode); }));

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

// ---- the requests ---------------------------------------------------------------------------
const systems = ['You tell short stories about animals.', 'You are a helpful assistant who likes the sea.',
  'Answer in one sentence.'];
const starts = ['Once upon a time', 'The little dog', 'Lily and Tom went to the park', 'One day, a bird',
  'The sun was hot and', 'Mom said'];

// Request i: its kind, body and what its answer must satisfy.
function makeRequest(i) {
  const chat = i % 2 === 0, stream = (i >> 1) % 2 === 0;
  const n = i % 7 === 3 ? 2 : 1;
  const maxTokens = 1 + (i * 37) % 48;
  const ignoreEos = i % 3 === 0;
  const body = { max_tokens: maxTokens, temperature: i % 5 === 0 ? 0 : 0.9, seed: i, n };
  if (ignoreEos) body.ignore_eos = true;
  if (i % 11 === 5) body.stop = ['.', 'zz'];
  if (chat) {
    body.messages = [{ role: 'system', content: systems[i % systems.length] },
      { role: 'user', content: `${starts[i % starts.length]} (request ${i})` }];
  } else {
    body.prompt = `${starts[i % starts.length]}, number ${i},`;
  }
  if (stream) {
    body.stream = true;
    body.stream_options = { include_usage: true };
  }
  return { i, chat, stream, n, maxTokens, ignoreEos, body };
}

async function readSse(r, req) {
  const texts = Array(req.n).fill(''), finish = Array(req.n).fill(null);
  let usage = null, done = false, buf = '', chunks = 0;
  const dec = new TextDecoder();
  for await (const part of r.body) {
    buf += dec.decode(part, { stream: true });
    let k;
    while ((k = buf.indexOf('\n\n')) >= 0) {
      const ev = buf.slice(0, k);
      buf = buf.slice(k + 2);
      if (!ev.startsWith('data: ')) { check(false, 'an SSE event is a data line', ev); continue; }
      const d = ev.slice(6);
      if (d === '[DONE]') { done = true; continue; }
      check(!done, 'nothing after [DONE]');
      const j = JSON.parse(d);
      if (!check(!j.error, 'no error in a stream', j.error)) continue;
      chunks++;
      if (req.chat && !V.chunk(j)) check(false, 'chat chunk matches the schema', { errors: V.chunk.errors, j });
      if (j.usage) usage = j.usage;
      for (const c of j.choices || []) {
        texts[c.index] += (req.chat ? c.delta?.content : c.text) ?? '';
        if (c.finish_reason) {
          check(finish[c.index] === null, 'one finish reason per choice');
          finish[c.index] = c.finish_reason;
        }
      }
    }
  }
  check(buf === '', 'the stream ends on an event boundary', buf.slice(0, 100));
  check(done, 'the stream ends with [DONE]', { i: req.i, chunks });
  return { texts, finish, usage };
}

async function runOne(req) {
  const r = await fetch(`${base}/${req.chat ? 'v1/chat/completions' : 'v1/completions'}`, {
    method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify(req.body),
  });
  if (r.status !== 200) {
    check(false, 'status 200', { i: req.i, status: r.status, body: (await r.text()).slice(0, 300) });
    return;
  }
  let got;
  if (req.stream) {
    check(/text\/event-stream/.test(r.headers.get('content-type')), 'a stream is text/event-stream');
    got = await readSse(r, req);
  } else {
    const j = await r.json();
    const v = req.chat ? V.chat : V.cmpl;
    if (!v(j)) check(false, 'response matches the schema', { errors: v.errors, j });
    check(j.choices.length === req.n && j.choices.every((c, k) => c.index === k), 'n choices in order', j.choices.length);
    got = {
      texts: j.choices.map((c) => (req.chat ? c.message.content : c.text)),
      finish: j.choices.map((c) => c.finish_reason),
      usage: j.usage,
    };
  }
  // every choice finished for a reason the request explains
  for (let k = 0; k < req.n; k++) {
    check(got.finish[k] === 'stop' || got.finish[k] === 'length', 'finish_reason stop or length', { i: req.i, k, f: got.finish[k] });
    check(typeof got.texts[k] === 'string', 'text is a string');
    if (req.body.stop) check(!got.texts[k].includes('.'), 'no stop string in the text', got.texts[k]);
  }
  const u = got.usage;
  if (!check(u && Number.isInteger(u.prompt_tokens) && Number.isInteger(u.completion_tokens), 'usage present', { i: req.i, u })) return;
  check(u.total_tokens === u.prompt_tokens + u.completion_tokens, 'total = prompt + completion', u);
  check(u.prompt_tokens > 0, 'prompt tokens counted', u);
  check(u.completion_tokens >= req.n && u.completion_tokens <= req.n * req.maxTokens, 'completion tokens within n x max_tokens',
    { i: req.i, u, n: req.n, max: req.maxTokens });
  if (req.ignoreEos && !req.body.stop)
    check(u.completion_tokens === req.n * req.maxTokens && got.finish.every((f) => f === 'length'),
      'ignore_eos: max_tokens each, finish length', { i: req.i, u, finish: got.finish });
  const cached = u.prompt_tokens_details?.cached_tokens ?? 0;
  check(cached >= 0 && cached < u.prompt_tokens, 'cached tokens fewer than the prompt', u);
}

const m0 = await metrics();
const t0 = Date.now();
const queue = Array.from({ length: N_REQUESTS }, (_, i) => makeRequest(i));
let next = 0, completed = 0;
async function worker() {
  while (next < queue.length && Date.now() - t0 < DEADLINE_MS) {
    const req = queue[next++];
    try {
      await runOne(req);
    } catch (e) {
      check(false, 'no exception', { i: req.i, e: String(e) });
    }
    completed++;
  }
}
await Promise.all(Array.from({ length: CONCURRENCY }, worker));
const wall = Date.now() - t0;
check(completed === N_REQUESTS, `all ${N_REQUESTS} requests completed before the deadline`, completed);

// ---- the server after the load ------------------------------------------------------------------
let m;
for (let k = 0; k < 50; k++) { // the engine may finish its bookkeeping a step after the last byte
  m = await metrics();
  if (m.ruvllm_requests_running === 0 && m.ruvllm_requests_waiting === 0 && m.ruvllm_kv_blocks_used === 0) break;
  await new Promise((r) => setTimeout(r, 100));
}
check(m.ruvllm_requests_running === 0 && m.ruvllm_requests_waiting === 0 && m.ruvllm_sequences_running === 0,
  'nothing running or waiting', [m.ruvllm_requests_running, m.ruvllm_requests_waiting, m.ruvllm_sequences_running]);
check(m.ruvllm_kv_blocks_used === 0, 'no KV block used', m.ruvllm_kv_blocks_used);
check(m.ruvllm_kv_blocks_free === m.ruvllm_kv_blocks_total, 'every block free (cached ones included)',
  [m.ruvllm_kv_blocks_free, m.ruvllm_kv_blocks_total, m.ruvllm_kv_blocks_cached]);
check(m.ruvllm_kv_blocks_cached > 0, 'blocks kept in the prefix cache', m.ruvllm_kv_blocks_cached);
const d = (k) => m[k] - m0[k];
check(d('ruvllm_requests_submitted_total') === N_REQUESTS, 'every request submitted', d('ruvllm_requests_submitted_total'));
check(d('ruvllm_requests_finished_total') === N_REQUESTS, 'every request finished', d('ruvllm_requests_finished_total'));
check(d('ruvllm_requests_aborted_total') === 0 && d('ruvllm_requests_rejected_total') === 0, 'none aborted or rejected',
  [d('ruvllm_requests_aborted_total'), d('ruvllm_requests_rejected_total')]);
check(d('ruvllm_prefix_cache_hits_tokens_total') > 0, 'prefix-cache hits (shared system prompts)');
check(m.ruvllm_step_sequences_max >= 8, 'steps batched >= 8 sequences', m.ruvllm_step_sequences_max);
check(d('ruvllm_client_disconnects_total') === 0, 'no disconnects');
check(m['ruvllm_http_responses_total{class="5xx"}'] === m0['ruvllm_http_responses_total{class="5xx"}'], 'no 5xx');
const h = await fetch(`${base}/health`);
check(h.status === 200, 'the server is up', h.status);
console.error(`load: ${N_REQUESTS} requests, ${CONCURRENCY} concurrent, in ${wall} ms; ` +
  `${d('ruvllm_generation_tokens_total')} tokens generated, ${d('ruvllm_prefill_tokens_total')} prefilled, ` +
  `${d('ruvllm_prefix_cache_hits_tokens_total')} prompt tokens from the prefix cache, ${d('ruvllm_preemptions_total')} preemptions, ` +
  `at most ${m.ruvllm_step_sequences_max} sequences in a step`);

srv.kill('SIGTERM');
const [code, sig] = await Promise.race([serverExit, new Promise((r) => setTimeout(() => r([null, 'timeout']), 20000))]);
check(code === 0, 'exit 0 after SIGTERM', [code, sig, log.slice(-300)]);
for (const [what, n] of failures) if (n > 1) console.error(`  ${what}: ${n} times`);
console.error(`${passed} passed, ${failed} failed`);
process.exit(failed ? 1 : 0);
