// End-to-end tests of `ruvllm serve` through the real OpenAI client (openai v6) on
// 127.0.0.1, with stories260K. Responses are validated against OpenAI's schemas
// (../shared/testdata/openai/schemas_subset.json) by ajv, an independent validator.
//
// usage: node e2e.mjs PATH/TO/ruvllm      (RUVLLM_TESTDATA: the shared data folder)
// Exit 0: all passed; 1: a check failed; 77: the model data is missing.
import fs from 'node:fs';
import net from 'node:net';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { check, denull, sleep, startServer as startServerWith, tally, test } from './harness.mjs';

const here = path.dirname(fileURLToPath(import.meta.url));
const bin = process.argv[2];
const data = process.env.RUVLLM_TESTDATA || path.resolve(here, '../../../shared');
const modelPath = path.join(data, 'models/stories260K.gguf');
const schemaPath = path.join(data, 'testdata/openai/schemas_subset.json');
if (!bin || !fs.existsSync(bin)) {
  console.error(`e2e: no ruvllm binary given (${bin})`);
  process.exit(1);
}
if (!fs.existsSync(modelPath) || !fs.existsSync(schemaPath)) {
  console.error(`e2e: skipped: ${modelPath} or ${schemaPath} missing`);
  process.exit(77);
}
let OpenAI, Ajv2020;
try {
  OpenAI = (await import('openai')).default;
  Ajv2020 = (await import('ajv/dist/2020.js')).default;
} catch (e) {
  console.error(`e2e: node modules missing (run npm ci in ${here}): ${e.message}`);
  process.exit(1);
}


// ---- schemas: OpenAPI's `nullable: true` means null is allowed too --------------------
const ajv = new Ajv2020({ strict: false, allErrors: true, validateFormats: false });
ajv.addSchema(denull(JSON.parse(fs.readFileSync(schemaPath, 'utf8'))), 'openai');
const schemaOf = (name) => ajv.getSchema(`openai#/$defs/${name}`);
const V = {
  chat: schemaOf('CreateChatCompletionResponse'),
  chunk: schemaOf('CreateChatCompletionStreamResponse'),
  cmpl: schemaOf('CreateCompletionResponse'),
  models: schemaOf('ListModelsResponse'),
  model: schemaOf('Model'),
};
function valid(v, obj, what) {
  const ok = v(obj);
  check(ok, `${what} matches the schema`, ok ? undefined : { errors: v.errors, obj });
}
function isErrorObject(body, status, param) {
  const e = body && body.error;
  check(e && typeof e.message === 'string' && typeof e.type === 'string' && 'param' in e && 'code' in e,
    `status ${status}: OpenAI error object`, body);
  if (param !== undefined && e) check(e.param === param, `error names the field ${param}`, e);
}

// ---- the server process ---------------------------------------------------------------
const API_KEY = 'sk-test-ruvllm';
const startServer = (args) => startServerWith(bin, modelPath, args);

async function raw(base, method, url, body, headers = {}) {
  const init = { method, headers: { authorization: `Bearer ${API_KEY}`, ...headers } };
  if (body !== undefined) {
    init.body = typeof body === 'string' || body instanceof Uint8Array ? body : JSON.stringify(body);
    init.headers['content-type'] = 'application/json';
  }
  const r = await fetch(base + url, init);
  const text = await r.text();
  let json = null;
  try { json = JSON.parse(text); } catch { /* not JSON */ }
  return { status: r.status, headers: r.headers, text, json };
}

async function metrics(base) {
  const r = await raw(base, 'GET', '/metrics');
  const m = {};
  for (const line of r.text.split('\n')) {
    if (!line || line.startsWith('#')) continue;
    const i = line.lastIndexOf(' ');
    m[line.slice(0, i)] = Number(line.slice(i + 1));
  }
  return m;
}

async function collectStream(stream, validate = true) {
  const texts = [], finish = [], lps = [];
  let usage = null, chunks = 0;
  for await (const c of stream) {
    chunks++;
    if (validate) valid(V.chunk, c, 'chat chunk');
    if (c.usage) usage = c.usage;
    for (const ch of c.choices) {
      texts[ch.index] = (texts[ch.index] || '') + (ch.delta?.content ?? ch.text ?? '');
      if (ch.finish_reason) finish[ch.index] = ch.finish_reason;
      if (ch.logprobs?.content) lps[ch.index] = [...(lps[ch.index] || []), ...ch.logprobs.content];
    }
  }
  return { texts, finish, usage, chunks, lps };
}

// ---- the tests ---------------------------------------------------------------------------
const srv = await startServer(['--parallel', '16', '--ctx', '1024', '--api-key', API_KEY,
  '--max-body', '262144', '--threads', '2']);
const client = new OpenAI({ baseURL: `${srv.base}/v1`, apiKey: API_KEY, maxRetries: 0, timeout: 60000 });
const MODEL = 'stories260K';
const chatMsgs = (t) => [{ role: 'system', content: 'You tell short stories.' }, { role: 'user', content: t }];

await test('models', async () => {
  const list = await client.models.list();
  check(list.data.length === 1 && list.data[0].id === MODEL, 'one model, named after the file', list.data);
  valid(V.models, await (await fetch(`${srv.base}/v1/models`, { headers: { authorization: `Bearer ${API_KEY}` } })).json(), 'model list');
  const m = await client.models.retrieve(MODEL);
  valid(V.model, m, 'model');
  const r = await raw(srv.base, 'GET', '/v1/models/gpt-4');
  check(r.status === 404, 'unknown model: 404', r.status);
  isErrorObject(r.json, 404);
});

let greedyChat;
await test('chat completion', async () => {
  const r = await client.chat.completions.create({ model: MODEL, messages: chatMsgs('Tell me about a cat.'), max_tokens: 40, temperature: 0 });
  valid(V.chat, r, 'chat response');
  greedyChat = r;
  check(r.object === 'chat.completion' && r.choices.length === 1, 'one choice');
  const c = r.choices[0];
  check(c.message.role === 'assistant' && c.message.content.length > 0, 'assistant text', c.message);
  check(['stop', 'length'].includes(c.finish_reason), 'finish reason', c.finish_reason);
  check(r.usage.prompt_tokens > 10 && r.usage.completion_tokens > 0 && r.usage.completion_tokens <= 40 &&
    r.usage.total_tokens === r.usage.prompt_tokens + r.usage.completion_tokens, 'usage', r.usage);
  if (c.finish_reason === 'length') check(r.usage.completion_tokens === 40, 'length: max_tokens generated');
  // max_completion_tokens is the same knob
  const r2 = await client.chat.completions.create({ model: MODEL, messages: chatMsgs('Tell me about a cat.'), max_completion_tokens: 40, temperature: 0 });
  check(r2.choices[0].message.content === c.message.content, 'max_completion_tokens = max_tokens');
});

await test('chat streaming equals non-streaming', async () => {
  const s = await client.chat.completions.create({ model: MODEL, messages: chatMsgs('Tell me about a cat.'), max_tokens: 40, temperature: 0, stream: true, stream_options: { include_usage: true } });
  const got = await collectStream(s);
  check(got.texts[0] === greedyChat.choices[0].message.content, 'same text', [got.texts[0], greedyChat.choices[0].message.content]);
  check(got.finish[0] === greedyChat.choices[0].finish_reason, 'same finish reason');
  check(got.usage && got.usage.completion_tokens === greedyChat.usage.completion_tokens &&
    got.usage.prompt_tokens === greedyChat.usage.prompt_tokens, 'usage in the last chunk', got.usage);
  check(got.chunks > 3, 'several chunks', got.chunks);
  // without include_usage: no usage anywhere
  const s2 = await client.chat.completions.create({ model: MODEL, messages: chatMsgs('Tell me about a cat.'), max_tokens: 10, temperature: 0, stream: true });
  const g2 = await collectStream(s2);
  check(g2.usage === null, 'no usage unless asked');
});

await test('completions', async () => {
  const r = await client.completions.create({ model: MODEL, prompt: 'Once upon a time', max_tokens: 30, temperature: 0 });
  valid(V.cmpl, r, 'completion response');
  check(r.object === 'text_completion' && r.choices[0].text.startsWith(', there was'), 'greedy story text', r.choices[0].text);
  const tok = await raw(srv.base, 'POST', '/tokenize', { content: 'Once upon a time', add_special: true });
  check(tok.status === 200 && r.usage.prompt_tokens === tok.json.tokens.length, 'prompt_tokens = /tokenize count', [r.usage, tok.json]);
  check(r.usage.completion_tokens === 30 && r.choices[0].finish_reason === 'length', 'length after max_tokens', r.usage);
  const s = await client.completions.create({ model: MODEL, prompt: 'Once upon a time', max_tokens: 30, temperature: 0, stream: true, stream_options: { include_usage: true } });
  const got = await collectStream(s, false);
  check(got.texts[0] === r.choices[0].text, 'streamed = not streamed', [got.texts[0], r.choices[0].text]);
  check(got.usage && got.usage.completion_tokens === 30, 'stream usage');
  // tokens without text (a control token, forced) still stream: a chunk per step, not only
  // the finish chunk at the end (steps may coalesce when the reader lags, so at least one)
  const e = await client.completions.create({ model: MODEL, prompt: 'Once upon a time', max_tokens: 5, temperature: 0, logit_bias: { 1: 100 }, stream: true });
  let emptyChunks = 0;
  for await (const c of e) for (const ch of c.choices) if (ch.text === '' && !ch.finish_reason) emptyChunks++;
  check(emptyChunks >= 1, 'streamed chunks for tokens whose text is empty', emptyChunks);
  // default max_tokens is 16; echo; token-id prompt
  const d = await client.completions.create({ model: MODEL, prompt: 'Once upon a time', temperature: 0, echo: true });
  check(d.usage.completion_tokens === 16, 'default max_tokens 16', d.usage);
  check(d.choices[0].text.startsWith('Once upon a time, there was'), 'echo puts the prompt first', d.choices[0].text);
  const ids = await client.completions.create({ model: MODEL, prompt: tok.json.tokens, max_tokens: 30, temperature: 0 });
  check(ids.choices[0].text === r.choices[0].text, 'prompt as token ids');
  const dt = await raw(srv.base, 'POST', '/detokenize', { tokens: tok.json.tokens });
  check(dt.status === 200 && dt.json.content.includes('Once upon a time'), 'detokenize', dt.json);
});

await test('same seed, same text', async () => {
  const ask = (seed) => client.chat.completions.create({ model: MODEL, messages: chatMsgs('A story about a dog.'), max_tokens: 40, temperature: 1.0, top_p: 0.95, seed });
  const [a, b, c] = await Promise.all([ask(42), ask(42), ask(43)]);
  check(a.choices[0].message.content === b.choices[0].message.content, 'seed 42 twice: same text');
  check(a.choices[0].message.content !== c.choices[0].message.content, 'seed 43 differs');
  const k = await client.completions.create({ model: MODEL, prompt: 'The dog', max_tokens: 30, temperature: 0.9, top_k: 20, min_p: 0.05, presence_penalty: 0.5, frequency_penalty: 0.3, seed: 7, logit_bias: { 13: -100 } });
  const k2 = await client.completions.create({ model: MODEL, prompt: 'The dog', max_tokens: 30, temperature: 0.9, top_k: 20, min_p: 0.05, presence_penalty: 0.5, frequency_penalty: 0.3, seed: 7, logit_bias: { 13: -100 } });
  check(k.choices[0].text === k2.choices[0].text, 'all the sampling knobs: deterministic with a seed');
  // logit_bias bans a token: ban the greedy continuation's first token
  const g = await client.completions.create({ model: MODEL, prompt: 'Once upon a time', max_tokens: 1, temperature: 0, logprobs: 1 });
  const first = g.choices[0].text;
  const ids = (await raw(srv.base, 'POST', '/tokenize', { content: 'Once upon a time' + first, add_special: true })).json.tokens;
  const banned = ids[ids.length - 1];
  const b2 = await client.completions.create({ model: MODEL, prompt: 'Once upon a time', max_tokens: 1, temperature: 0, logit_bias: { [banned]: -100 } });
  check(b2.choices[0].text !== first, 'logit_bias -100 bans the greedy token', [first, b2.choices[0].text]);
});

await test('n = 3', async () => {
  const r = await client.chat.completions.create({ model: MODEL, messages: chatMsgs('A story.'), max_tokens: 30, temperature: 1, n: 3, seed: 5 });
  valid(V.chat, r, 'n=3 response');
  check(r.choices.length === 3 && r.choices.map((c) => c.index).join() === '0,1,2', 'three choices', r.choices.map((c) => c.index));
  const texts = r.choices.map((c) => c.message.content);
  check(new Set(texts).size > 1, 'choices differ', texts);
  const s = await client.chat.completions.create({ model: MODEL, messages: chatMsgs('A story.'), max_tokens: 30, temperature: 1, n: 3, seed: 5, stream: true, stream_options: { include_usage: true } });
  const got = await collectStream(s);
  check(JSON.stringify(got.texts) === JSON.stringify(texts), 'streamed n=3 = not streamed', [got.texts, texts]);
  check(got.usage.completion_tokens === r.usage.completion_tokens, 'usage sums the choices', [got.usage, r.usage]);
  const c = await client.completions.create({ model: MODEL, prompt: 'Once', max_tokens: 10, n: 3, temperature: 1, seed: 1 });
  check(c.choices.length === 3, 'completions n=3');
});

await test('logprobs', async () => {
  const r = await client.chat.completions.create({ model: MODEL, messages: chatMsgs('A cat story.'), max_tokens: 20, temperature: 0, logprobs: true, top_logprobs: 3 });
  valid(V.chat, r, 'logprobs response');
  const lp = r.choices[0].logprobs.content;
  check(lp.length === r.usage.completion_tokens, 'one entry per token', [lp.length, r.usage]);
  let bytes = [];
  for (const e of lp) {
    check(e.logprob <= 0 && e.top_logprobs.length === 3, 'entry', e);
    // greedy: the chosen token is the most likely one
    check(Math.abs(e.top_logprobs[0].logprob - e.logprob) < 1e-5, 'greedy picks the top token', e);
    bytes = bytes.concat(e.bytes);
  }
  if (r.choices[0].finish_reason === 'length')
    check(Buffer.from(bytes).toString('utf8') === r.choices[0].message.content, 'bytes spell the text');
  const s = await client.chat.completions.create({ model: MODEL, messages: chatMsgs('A cat story.'), max_tokens: 20, temperature: 0, logprobs: true, top_logprobs: 3, stream: true });
  const got = await collectStream(s);
  check(got.lps[0] && got.lps[0].length === lp.length && got.lps[0].every((e, i) => Math.abs(e.logprob - lp[i].logprob) < 1e-6),
    'streamed logprobs = not streamed');
  const c = await client.completions.create({ model: MODEL, prompt: 'Once upon a time', max_tokens: 8, temperature: 0, logprobs: 2 });
  valid(V.cmpl, c, 'completion logprobs');
  const l = c.choices[0].logprobs;
  check(l.tokens.length === 8 && l.token_logprobs.length === 8 && l.top_logprobs.length === 8 && l.text_offset.length === 8,
    'completions logprobs arrays', l);
  check(l.tokens.join('') === c.choices[0].text, 'tokens spell the text', l.tokens);
});

await test('stop strings', async () => {
  const full = await client.completions.create({ model: MODEL, prompt: 'Once upon a time', max_tokens: 60, temperature: 0 });
  const text = full.choices[0].text;
  const stop = text.slice(25, 29);
  const cut = text.slice(0, text.indexOf(stop));
  const r = await client.completions.create({ model: MODEL, prompt: 'Once upon a time', max_tokens: 60, temperature: 0, stop: ['zzzz', stop] });
  check(r.choices[0].text === cut && r.choices[0].finish_reason === 'stop', 'cut before the stop string', [r.choices[0].text, cut, stop]);
  check(r.usage.completion_tokens < 60, 'stopped early', r.usage);
  const s = await client.completions.create({ model: MODEL, prompt: 'Once upon a time', max_tokens: 60, temperature: 0, stop, stream: true });
  const got = await collectStream(s, false);
  check(got.texts[0] === cut && got.finish[0] === 'stop', 'streamed: never shows the stop string', got.texts[0]);
  const chat = await client.chat.completions.create({ model: MODEL, messages: chatMsgs('Tell me about a cat.'), max_tokens: 40, temperature: 0, stop: '.' });
  const want = greedyChat.choices[0].message.content;
  check(!chat.choices[0].message.content.includes('.') && want.startsWith(chat.choices[0].message.content), 'chat stop', chat.choices[0].message.content);
});

await test('16 parallel greedy = sequential; batching', async () => {
  const prompts = ['Once upon a time', 'The cat', 'Lily went to the park', 'Tom had a red ball', 'One day', 'The sun was',
    'A little bird', 'Mom said', 'Ben and Sue', 'The dog ran', 'There was a big tree', 'She liked', 'The boy',
    'In the forest', 'Sam found a box', 'It was raining'];
  const ask = (p) => client.completions.create({ model: MODEL, prompt: p, max_tokens: 200, temperature: 0, ignore_eos: true });
  const seq = [];
  for (const p of prompts) seq.push((await ask(p)).choices[0].text);
  const par = await Promise.all(prompts.map(ask));
  let same = 0;
  par.forEach((r, i) => { if (r.choices[0].text === seq[i]) same++; else check(false, `prompt ${i} differs in parallel`, [r.choices[0].text, seq[i]]); });
  check(same === 16, '16 equal texts', same);
  const m = await metrics(srv.base);
  check(m.ruvllm_step_sequences_max >= 8, 'a step batched >= 8 sequences', m.ruvllm_step_sequences_max);
  const big = m.ruvllm_step_sequences_count - m['ruvllm_step_sequences_bucket{le="4"}'];
  check(big > 0, 'steps with more than 4 sequences counted in the histogram', big);
});

await test('prefix cache', async () => {
  const story = 'Once upon a time, there was a little girl named Lily. She loved to play outside in the sunshine. ' +
    'One day, she saw a big, red ball in the park. She wanted to play with it, but it was too high. ' +
    'Lily asked her mom for help. Her mom smiled and said they could get it together. ';
  const shared = story.repeat(3);
  const m0 = await metrics(srv.base);
  const a = await client.completions.create({ model: MODEL, prompt: shared + 'The end was near.', max_tokens: 4, temperature: 0 });
  const m1 = await metrics(srv.base);
  const b = await client.completions.create({ model: MODEL, prompt: shared + 'Then a dog came by.', max_tokens: 4, temperature: 0 });
  const m2 = await metrics(srv.base);
  const cached = b.usage.prompt_tokens_details.cached_tokens;
  check(a.usage.prompt_tokens > 150, 'a long prompt', a.usage);
  check(cached >= a.usage.prompt_tokens - 32 && cached % 16 === 0, 'the shared prefix is cached (whole blocks)', b.usage);
  const hit = m2.ruvllm_prefix_cache_hits_tokens_total - m1.ruvllm_prefix_cache_hits_tokens_total;
  check(hit === cached, 'metrics: hit tokens', [hit, cached]);
  const computed = m2.ruvllm_prefill_tokens_total - m1.ruvllm_prefill_tokens_total;
  check(computed === b.usage.prompt_tokens - cached, 'only the new tokens were computed', [computed, b.usage]);
  check(m1.ruvllm_prefill_tokens_total - m0.ruvllm_prefill_tokens_total >= a.usage.prompt_tokens - 16, 'the first computed (almost) all');
  check(m2.ruvllm_prefix_cache_hit_rate > 0, 'hit rate', m2.ruvllm_prefix_cache_hit_rate);
  // another tenant (cache_salt) does not hit
  const c = await client.completions.create({ model: MODEL, prompt: shared + 'Then a dog came by.', max_tokens: 4, temperature: 0, cache_salt: 'tenant-2' });
  check(c.usage.prompt_tokens_details.cached_tokens === 0, 'cache_salt isolates', c.usage);
  check(c.choices[0].text === b.choices[0].text, 'same text with or without cache');
});

await test('bad input: right status, server stays up', async () => {
  const cases = [
    ['malformed JSON', '/v1/chat/completions', '{"messages": [', 400],
    ['not an object', '/v1/completions', '[1, 2]', 400],
    ['wrong type', '/v1/chat/completions', { messages: chatMsgs('x'), temperature: 'hot' }, 400, 'temperature'],
    ['messages not an array', '/v1/chat/completions', { messages: 'hi' }, 400, 'messages'],
    ['missing messages', '/v1/chat/completions', { model: MODEL }, 400, 'messages'],
    ['empty messages', '/v1/chat/completions', { messages: [] }, 400, 'messages'],
    ['bad role', '/v1/chat/completions', { messages: [{ role: 'wizard', content: 'x' }] }, 400, 'messages[0]'],
    ['negative max_tokens', '/v1/completions', { prompt: 'x', max_tokens: -5 }, 400, 'max_tokens'],
    ['zero max_tokens', '/v1/completions', { prompt: 'x', max_tokens: 0 }, 400, 'max_tokens'],
    ['huge max_tokens', '/v1/completions', { prompt: 'x', max_tokens: 1e9 }, 400, 'max_tokens'],
    ['fractional max_tokens', '/v1/completions', { prompt: 'x', max_tokens: 1.5 }, 400, 'max_tokens'],
    ['unknown field', '/v1/completions', { prompt: 'x', frobnicate: true }, 400, 'frobnicate'],
    ['unknown model', '/v1/completions', { prompt: 'x', model: 'gpt-4o' }, 404, 'model'],
    ['suffix refused', '/v1/completions', { prompt: 'x', suffix: 'y' }, 400, 'suffix'],
    ['tools refused', '/v1/chat/completions', { messages: chatMsgs('x'), tools: [] }, 400, 'tools'],
    ['n too large', '/v1/completions', { prompt: 'x', n: 1000 }, 400, 'n'],
    ['top_p out of range', '/v1/completions', { prompt: 'x', top_p: 1.5 }, 400, 'top_p'],
    ['top_logprobs without logprobs', '/v1/chat/completions', { messages: chatMsgs('x'), top_logprobs: 2 }, 400, 'top_logprobs'],
    ['stream_options without stream', '/v1/chat/completions', { messages: chatMsgs('x'), stream_options: { include_usage: true } }, 400, 'stream_options'],
    ['empty stop', '/v1/completions', { prompt: 'x', stop: [''] }, 400, 'stop'],
    ['bad logit_bias', '/v1/completions', { prompt: 'x', logit_bias: { abc: 1 } }, 400, 'logit_bias'],
    ['token id out of range', '/v1/completions', { prompt: [1, 999999] }, 400, 'prompt'],
    ['prompt longer than the context', '/v1/completions', { prompt: 'Once upon a time. '.repeat(400), max_tokens: 10 }, 400, 'prompt'],
    ['invalid UTF-8', '/v1/completions', new Uint8Array([...Buffer.from('{"prompt": "'), 0xff, 0xfe, ...Buffer.from('"}')]), 400],
    ['duplicate keys', '/v1/completions', '{"prompt": "a", "prompt": "b"}', 400],
    ['tokenize: wrong type', '/tokenize', { content: 5 }, 400, 'content'],
    ['detokenize: bad id', '/detokenize', { tokens: [1, -3] }, 400, 'tokens'],
  ];
  for (const [what, url, body, status, param] of cases) {
    const r = await raw(srv.base, 'POST', url, body);
    check(r.status === status, `${what}: ${status}`, [r.status, r.text]);
    isErrorObject(r.json, status, param);
  }
  // the client library sees the same errors
  try {
    await client.chat.completions.create({ model: MODEL, messages: chatMsgs('x'), max_tokens: -1 });
    check(false, 'openai client: error expected');
  } catch (e) {
    check(e.status === 400 && e.param === 'max_tokens', 'openai client: 400 with param', [e.status, e.param]);
  }
  // authentication
  let r = await raw(srv.base, 'POST', '/v1/completions', { prompt: 'x' }, { authorization: 'Bearer wrong' });
  check(r.status === 401, 'wrong API key: 401', r.status);
  isErrorObject(r.json, 401);
  r = await fetch(`${srv.base}/v1/models`);
  check(r.status === 401, 'no API key: 401', r.status);
  r = await fetch(`${srv.base}/health`);
  check(r.status === 200, '/health needs no key', r.status);
  // routes and methods
  r = await raw(srv.base, 'GET', '/v1/chat/completions');
  check(r.status === 405 && r.headers.get('allow') === 'POST', 'GET on a POST endpoint: 405 + Allow', r.status);
  r = await raw(srv.base, 'GET', '/v2/nothing');
  check(r.status === 404, 'unknown path: 404', r.status);
  // body too large (declared length and chunked)
  r = await raw(srv.base, 'POST', '/v1/completions', JSON.stringify({ prompt: 'x'.repeat(300000) }));
  check(r.status === 413, 'oversized body: 413', r.status);
  isErrorObject(r.json, 413);
  const big = new ReadableStream({ start(c) { for (let i = 0; i < 40; i++) c.enqueue(new Uint8Array(10000).fill(32)); c.close(); } });
  const rs = await fetch(`${srv.base}/v1/completions`, { method: 'POST', body: big, duplex: 'half', headers: { authorization: `Bearer ${API_KEY}` } });
  check(rs.status === 413, 'oversized chunked body: 413', rs.status);
  r = await raw(srv.base, 'GET', '/health');
  check(r.status === 200, 'server up after bad input');
});

// A client that sends half a request and stalls, and clients that vanish mid-answer.
function rawSocket(port, text) {
  return new Promise((resolve) => {
    const s = net.connect(port, '127.0.0.1', () => { s.write(text); resolve(s); });
    s.on('error', () => {});
  });
}
await test('slow and vanishing clients', async () => {
  const slow = await rawSocket(srv.port, `POST /v1/completions HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer ${API_KEY}\r\nContent-Type: application/json\r\nContent-Length: 100\r\n\r\n{"prompt":`);
  const m0 = await metrics(srv.base);
  // streaming client that goes away after the first chunk
  const ac = new AbortController();
  const s = await client.chat.completions.create({ model: MODEL, messages: chatMsgs('x'), max_tokens: 900, ignore_eos: true, stream: true }, { signal: ac.signal });
  let n = 0;
  try { for await (const _ of s) { if (++n === 2) ac.abort(); } } catch { /* aborted */ }
  // non-streaming client that goes away while waiting (socket closed) -- once the server has
  // taken its request in (its prompt counted), not after a fixed time: on a loaded machine the
  // server may not have read the request yet, on a fast one it may have finished it
  const body = JSON.stringify({ prompt: 'Once', max_tokens: 900, ignore_eos: true });
  const p0 = (await metrics(srv.base)).ruvllm_prompt_tokens_total;
  const sock = await rawSocket(srv.port, `POST /v1/completions HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer ${API_KEY}\r\nContent-Type: application/json\r\nContent-Length: ${Buffer.byteLength(body)}\r\n\r\n${body}`);
  for (let i = 0; i < 300 && (await metrics(srv.base)).ruvllm_prompt_tokens_total === p0; i++) await sleep(5);
  sock.destroy();
  let m1;
  for (let i = 0; i < 40; i++) {
    await sleep(100);
    m1 = await metrics(srv.base);
    if (m1.ruvllm_requests_aborted_total - m0.ruvllm_requests_aborted_total >= 2 && m1.ruvllm_requests_running === 0) break;
  }
  check(m1.ruvllm_requests_aborted_total - m0.ruvllm_requests_aborted_total >= 2, 'both requests aborted', [m0.ruvllm_requests_aborted_total, m1.ruvllm_requests_aborted_total]);
  check(m1.ruvllm_client_disconnects_total - m0.ruvllm_client_disconnects_total >= 2, 'disconnects counted');
  check(m1.ruvllm_requests_running === 0 && m1.ruvllm_kv_blocks_used === 0, 'blocks freed at once', [m1.ruvllm_requests_running, m1.ruvllm_kv_blocks_used]);
  check(m1.ruvllm_generation_tokens_total - m0.ruvllm_generation_tokens_total < 1500, 'generation stopped early');
  slow.destroy();
  const r = await client.completions.create({ model: MODEL, prompt: 'Once', max_tokens: 5, temperature: 0 });
  check(r.choices[0].text.length > 0, 'server still answers');
});

await test('metrics', async () => {
  const r = await raw(srv.base, 'GET', '/metrics');
  check(r.status === 200 && /text\/plain/.test(r.headers.get('content-type')), 'Prometheus text');
  for (const name of ['ruvllm_requests_running', 'ruvllm_requests_waiting', 'ruvllm_prompt_tokens_total', 'ruvllm_generation_tokens_total',
    'ruvllm_kv_blocks_used', 'ruvllm_kv_blocks_free', 'ruvllm_prefix_cache_hit_rate', 'ruvllm_preemptions_total',
    'ruvllm_time_to_first_token_seconds_count', 'ruvllm_inter_token_latency_seconds_count', 'ruvllm_step_sequences_max'])
    check(new RegExp(`^${name} `, 'm').test(r.text), `metric ${name}`);
  check(/^ruvllm_time_to_first_token_seconds_bucket\{le="\+Inf"\} \d+/m.test(r.text), 'histogram buckets');
  const m = await metrics(srv.base);
  check(m['ruvllm_time_to_first_token_seconds_bucket{le="+Inf"}'] === m.ruvllm_time_to_first_token_seconds_count, 'cumulative buckets');
});

// A second server: a tiny queue (429 with Retry-After) and a clean SIGTERM.
await test('queue full, SIGTERM', async () => {
  const s2 = await startServer(['--parallel', '1', '--queue', '1', '--ctx', '2048', '--threads', '1']);
  const ask = () => raw(s2.base, 'POST', '/v1/completions', { prompt: 'Once', max_tokens: 1500, ignore_eos: true });
  const rs = await Promise.all([ask(), ask(), ask(), ask()]);
  const codes = rs.map((r) => r.status);
  const limited = rs.filter((r) => r.status === 429);
  check(limited.length >= 1 && codes.filter((c) => c === 200).length >= 1, 'some 429, some 200', codes);
  for (const r of limited) {
    check(r.headers.get('retry-after') !== null, '429 has Retry-After');
    isErrorObject(r.json, 429);
  }
  // SIGTERM with a request in flight: it finishes, exit 0
  const inflight = ask();
  await sleep(150);
  const exited = new Promise((resolve) => s2.proc.on('exit', (code, sig) => resolve([code, sig])));
  s2.proc.kill('SIGTERM');
  const r = await inflight;
  check(r.status === 200 && r.json.usage.completion_tokens === 1500, 'in-flight request finished', [r.status, r.text.slice(0, 200)]);
  const [code, sig] = await exited;
  check(code === 0, 'exit 0 after SIGTERM', [code, sig, s2.log().slice(-500)]);
});

const exited = new Promise((resolve) => srv.proc.on('exit', (code) => resolve(code)));
srv.proc.kill('SIGINT');
const code = await exited;
tally.current = 'shutdown';
check(code === 0, 'exit 0 after SIGINT', [code, srv.log().slice(-400)]);
console.error(`${tally.passed} passed, ${tally.failed} failed`);
process.exit(tally.failed ? 1 : 0);
