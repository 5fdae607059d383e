// End-to-end tests of structured output and tool calling in `ruvllm serve`, through the
// real OpenAI client (openai v6), with stories260K and a published tool-capable chat
// template (Qwen 2.5: Hermes <tool_call> syntax) given by --chat-template. The model is
// tiny and wants to write stories, never JSON: the grammars force the structure, so every
// check below is about what the constraint guarantees. Responses are validated against
// OpenAI's schemas (testdata/openai/schemas_subset.json) and JSON outputs against their
// JSON Schemas, both with ajv.
//
// usage: node tools.mjs PATH/TO/ruvllm      (RUVLLM_TESTDATA: the shared data folder)
// Exit 0: all passed; 1: a check failed; 77: the data is missing.
import fs from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { check, denull, sleep, startServer as startServerWith, tally, test } from './harness.mjs';

const here = path.dirname(fileURLToPath(import.meta.url));
const bin = process.argv[2];
const data = process.env.RUVLLM_TESTDATA || path.resolve(here, '../../../shared');
const modelPath = path.join(data, 'models/stories260K.gguf');
const schemaPath = path.join(data, 'testdata/openai/schemas_subset.json');
const templatePath = path.join(data, 'testdata/chat-templates/templates/Qwen-Qwen2.5-7B-Instruct.jinja');
if (!bin || !fs.existsSync(bin)) {
  console.error(`tools: no ruvllm binary given (${bin})`);
  process.exit(1);
}
for (const f of [modelPath, schemaPath, templatePath])
  if (!fs.existsSync(f)) {
    console.error(`tools: skipped: ${f} missing`);
    process.exit(77);
  }
let OpenAI, Ajv2020;
try {
  OpenAI = (await import('openai')).default;
  Ajv2020 = (await import('ajv/dist/2020.js')).default;
} catch (e) {
  console.error(`tools: node modules missing (run npm ci in ${here}): ${e.message}`);
  process.exit(1);
}


// OpenAPI's `nullable: true` means null is allowed too.
const ajv = new Ajv2020({ strict: false, allErrors: true, validateFormats: false });
ajv.addSchema(denull(JSON.parse(fs.readFileSync(schemaPath, 'utf8'))), 'openai');
const V = {
  chat: ajv.getSchema('openai#/$defs/CreateChatCompletionResponse'),
  chunk: ajv.getSchema('openai#/$defs/CreateChatCompletionStreamResponse'),
  cmpl: ajv.getSchema('openai#/$defs/CreateCompletionResponse'),
};
function valid(v, obj, what) {
  const ok = v(obj);
  check(ok, `${what} matches the schema`, ok ? undefined : { errors: v.errors, obj });
}
// A JSON text that must parse and validate against schema.
function validJson(schema, text, what) {
  let value;
  try {
    value = JSON.parse(text);
  } catch (e) {
    check(false, `${what}: parses as JSON`, text);
    return undefined;
  }
  const v = ajv.compile(schema);
  check(v(value), `${what}: validates against its schema`, { text, errors: v.errors });
  return value;
}

// ---- the server ---------------------------------------------------------------------------
const API_KEY = 'sk-test-tools';
const startServer = (args) => startServerWith(bin, modelPath, args);
async function post(base, url, body) {
  const r = await fetch(base + url, {
    method: 'POST',
    headers: { authorization: `Bearer ${API_KEY}`, 'content-type': 'application/json' },
    body: JSON.stringify(body),
  });
  const text = await r.text();
  let json = null;
  try { json = JSON.parse(text); } catch { /* not JSON */ }
  return { status: r.status, text, json };
}

const srv = await startServer(['--parallel', '4', '--ctx', '4096', '--threads', '2', '--api-key', API_KEY,
  '--chat-template', templatePath]);
const client = new OpenAI({ baseURL: `${srv.base}/v1`, apiKey: API_KEY, maxRetries: 0, timeout: 120000 });
const MODEL = 'stories260K';
const user = (t) => [{ role: 'user', content: t }];

const weatherSchema = {
  type: 'object',
  properties: {
    city: { type: 'string', maxLength: 12 },
    unit: { type: 'string', enum: ['c', 'f'] },
    days: { type: 'integer', minimum: 1, maximum: 7 },
  },
  required: ['city', 'unit'],
  additionalProperties: false,
};
const searchSchema = {
  type: 'object',
  properties: { query: { type: 'string', maxLength: 10 }, limit: { type: 'integer', minimum: 1, maximum: 5 } },
  required: ['query', 'limit'],
  additionalProperties: false,
};
const TOOLS = [
  { type: 'function', function: { name: 'get_weather', description: 'Current weather of a city', parameters: weatherSchema } },
  { type: 'function', function: { name: 'search', description: 'Search the web', parameters: searchSchema } },
];
const toolSchema = { get_weather: weatherSchema, search: searchSchema };

// ---- structured output ------------------------------------------------------------------------
await test('response_format json_schema (strict)', async () => {
  const schema = {
    type: 'object',
    properties: {
      name: { type: 'string', maxLength: 10 },
      age: { type: 'integer', minimum: 0, maximum: 120 },
      pet: { enum: ['cat', 'dog', 'none'] },
      tags: { type: 'array', items: { type: 'string', maxLength: 5 }, maxItems: 3 },
    },
    required: ['name', 'age', 'pet', 'tags'],
    additionalProperties: false,
  };
  for (const seed of [1, 2, 3]) {
    const r = await client.chat.completions.create({
      model: MODEL, messages: user('Describe a person.'), max_tokens: 1024, seed,
      response_format: { type: 'json_schema', json_schema: { name: 'person', strict: true, schema } },
    });
    valid(V.chat, r, 'chat response');
    const c = r.choices[0];
    check(c.finish_reason === 'stop', `seed ${seed}: bounded schema completes`, c);
    validJson(schema, c.message.content, `seed ${seed}`);
  }
  // n = 2: each choice on its own matcher
  const r = await client.chat.completions.create({
    model: MODEL, messages: user('Describe a person.'), max_tokens: 1024, seed: 9, n: 2,
    response_format: { type: 'json_schema', json_schema: { name: 'person', strict: true, schema } },
  });
  check(r.choices.length === 2, 'n = 2');
  for (const c of r.choices) validJson(schema, c.message.content, `choice ${c.index}`);
});

await test('response_format json_object', async () => {
  let completed = 0;
  for (const seed of [1, 2, 3]) {
    const r = await client.chat.completions.create({
      model: MODEL, messages: user('Answer in JSON.'), max_tokens: 400, seed, response_format: { type: 'json_object' },
    });
    valid(V.chat, r, 'chat response');
    const c = r.choices[0];
    const text = c.message.content;
    check(/^\s*\{/.test(text), `seed ${seed}: starts as an object`, text);
    if (c.finish_reason === 'stop') {
      completed++;
      const v = validJson({ type: 'object' }, text, `seed ${seed}`);
      check(v !== null && !Array.isArray(v), `seed ${seed}: an object`, text);
    } else {
      check(c.finish_reason === 'length' && r.usage.completion_tokens === 400, `seed ${seed}: else cut by max_tokens`, c);
    }
  }
  check(completed >= 1, 'at least one object completed', completed);
  // streamed: the same text
  const opts = { model: MODEL, messages: user('Answer in JSON.'), max_tokens: 400, seed: 1, response_format: { type: 'json_object' } };
  const a = await client.chat.completions.create(opts);
  let text = '', finish = null;
  for await (const ch of await client.chat.completions.create({ ...opts, stream: true })) {
    valid(V.chunk, ch, 'chunk');
    for (const c of ch.choices) {
      text += c.delta?.content ?? '';
      if (c.finish_reason) finish = c.finish_reason;
    }
  }
  check(text === a.choices[0].message.content && finish === a.choices[0].finish_reason, 'streamed = non-streamed', [text, a.choices[0].message.content]);
});

await test('grammar and regex extras', async () => {
  for (const seed of [1, 2, 3, 4]) {
    const g = await post(srv.base, '/v1/chat/completions', {
      messages: user('Pick one.'), max_tokens: 100, seed,
      grammar: 'root ::= ("cat" | "dog" | "bird") " " [0-9]{2} ("!" | ".")',
    });
    check(g.status === 200, 'grammar: 200', g.text);
    if (g.status !== 200) continue;
    valid(V.chat, g.json, 'chat response');
    const t = g.json.choices[0].message.content;
    check(/^(cat|dog|bird) [0-9]{2}[!.]$/.test(t) && g.json.choices[0].finish_reason === 'stop', `grammar seed ${seed}`, t);
    const re = await post(srv.base, '/v1/chat/completions', {
      messages: user('A code.'), max_tokens: 100, seed, regex: '[A-Z][a-z]{2,6}-[0-9]{3}(x|yz)?',
    });
    check(re.status === 200, 'regex: 200', re.text);
    if (re.status !== 200) continue;
    const u = re.json.choices[0].message.content;
    check(/^[A-Z][a-z]{2,6}-[0-9]{3}(x|yz)?$/.test(u) && re.json.choices[0].finish_reason === 'stop', `regex seed ${seed}`, u);
  }
});

await test('completions with grammar, regex and response_format', async () => {
  const r = await post(srv.base, '/v1/completions', { prompt: 'Once upon a time', max_tokens: 60, seed: 5, regex: ' [a-z]{3,9}, [a-z]{3,9}\\.' });
  check(r.status === 200, '200', r.text);
  if (r.status === 200) {
    valid(V.cmpl, r.json, 'completion');
    check(/^ [a-z]{3,9}, [a-z]{3,9}\.$/.test(r.json.choices[0].text), 'regex text', r.json.choices[0].text);
  }
  const schema = { type: 'object', properties: { ok: { type: 'boolean' }, n: { type: 'integer', minimum: 1, maximum: 9 } }, required: ['ok', 'n'] };
  const s = await client.completions.create({
    model: MODEL, prompt: 'JSON:', max_tokens: 300, seed: 2,
    response_format: { type: 'json_schema', json_schema: { name: 'x', schema } },
  });
  valid(V.cmpl, s, 'completion');
  validJson(schema, s.choices[0].text, 'completion json_schema');
  const g = await client.completions.create({ model: MODEL, prompt: 'Once', max_tokens: 30, seed: 2, grammar: 'root ::= " a" [a-z ]{4,12} "."' });
  check(/^ a[a-z ]{4,12}\.$/.test(g.choices[0].text), 'grammar text', g.choices[0].text);
});

// ---- tool calling -----------------------------------------------------------------------------
function checkCalls(msg, names, what) {
  const calls = msg.tool_calls || [];
  check(calls.length >= 1, `${what}: tool_calls`, msg);
  for (const c of calls) {
    check(typeof c.id === 'string' && c.id.length > 0 && c.type === 'function', `${what}: id and type`, c);
    check(names.includes(c.function?.name), `${what}: a named tool`, c);
    check(typeof c.function?.arguments === 'string', `${what}: arguments as a JSON string`, c);
    if (toolSchema[c.function?.name]) validJson(toolSchema[c.function.name], c.function.arguments, `${what}: arguments of ${c.function.name}`);
  }
  return calls;
}

// Reassemble a streamed answer: content and tool calls from OpenAI's deltas.
async function collectTools(stream) {
  let content = '', finish = null, sawRole = false;
  const calls = [];
  for await (const ch of stream) {
    valid(V.chunk, ch, 'chunk');
    for (const c of ch.choices) {
      const d = c.delta || {};
      if (d.role) sawRole = true;
      if (typeof d.content === 'string') content += d.content;
      for (const t of d.tool_calls || []) {
        if (!calls[t.index]) {
          check(typeof t.id === 'string' && t.type === 'function' && typeof t.function?.name === 'string', 'a call starts with id, type and name', t);
          calls[t.index] = { id: t.id, type: 'function', function: { name: t.function?.name, arguments: '' } };
        } else {
          check(t.id === undefined && t.function?.name === undefined, 'id and name only in the first delta', t);
        }
        calls[t.index].function.arguments += t.function?.arguments ?? '';
      }
      if (c.finish_reason) finish = c.finish_reason;
    }
  }
  check(sawRole, 'a role delta');
  return { content, calls, finish };
}

await test('tool_choice required', async () => {
  for (const seed of [1, 2, 3]) {
    const opts = { model: MODEL, messages: user('What is the weather in Paris?'), tools: TOOLS, tool_choice: 'required', parallel_tool_calls: false, max_tokens: 1500, seed };
    const r = await client.chat.completions.create(opts);
    valid(V.chat, r, 'chat response');
    const c = r.choices[0];
    check(c.finish_reason === 'tool_calls', `seed ${seed}: finish_reason tool_calls`, c);
    const calls = checkCalls(c.message, ['get_weather', 'search'], `seed ${seed}`);
    check(calls.length === 1, `seed ${seed}: one call (parallel_tool_calls false)`, calls);
    check(c.message.content === null || !/<tool_call>/.test(c.message.content), `seed ${seed}: no tool syntax in content`, c.message.content);
    // the same request streamed
    const s = await collectTools(await client.chat.completions.create({ ...opts, stream: true }));
    check(s.finish === 'tool_calls', `seed ${seed}: streamed finish_reason`, s.finish);
    check(!/<tool_call>|<\/tool_call>/.test(s.content), `seed ${seed}: streamed content without tool syntax`, s.content);
    check(s.calls.length === calls.length &&
      s.calls.every((x, i) => x.function.name === calls[i].function.name && x.function.arguments === calls[i].function.arguments),
      `seed ${seed}: streamed calls = non-streamed`, [s.calls, calls]);
    check((c.message.content ?? '') === s.content, `seed ${seed}: streamed content = non-streamed`, [s.content, c.message.content]);
  }
});

await test('tool_choice named', async () => {
  for (const seed of [4, 5]) {
    const opts = { model: MODEL, messages: user('Find cats.'), tools: TOOLS, tool_choice: { type: 'function', function: { name: 'search' } }, parallel_tool_calls: false, max_tokens: 1500, seed };
    const r = await client.chat.completions.create(opts);
    valid(V.chat, r, 'chat response');
    const c = r.choices[0];
    check(c.finish_reason === 'tool_calls', `seed ${seed}: finish_reason`, c);
    const calls = checkCalls(c.message, ['search'], `seed ${seed}`);
    check(calls.length === 1 && calls[0].function.name === 'search', `seed ${seed}: the named function`, calls);
    const s = await collectTools(await client.chat.completions.create({ ...opts, stream: true }));
    check(s.calls.length === 1 && s.calls[0].function.name === 'search' && s.calls[0].function.arguments === calls[0].function.arguments,
      `seed ${seed}: streamed = non-streamed`, [s.calls, calls]);
  }
});

await test('parallel tool calls', async () => {
  // the random model never stops calling: every complete call is well-formed; a call cut by
  // max_tokens stays text
  const r = await client.chat.completions.create({ model: MODEL, messages: user('Weather in Paris and Rome?'), tools: TOOLS, tool_choice: 'required', max_tokens: 900, seed: 11 });
  valid(V.chat, r, 'chat response');
  const calls = checkCalls(r.choices[0].message, ['get_weather', 'search'], 'parallel');
  check(calls.length >= 1, 'calls', calls.length);
  check(new Set(calls.map((c) => c.id)).size === calls.length, 'distinct ids', calls.map((c) => c.id));
});

await test('tool_choice none and auto', async () => {
  const n = await client.chat.completions.create({ model: MODEL, messages: user('Hello'), tools: TOOLS, tool_choice: 'none', max_tokens: 30, seed: 1 });
  valid(V.chat, n, 'chat response');
  check(!n.choices[0].message.tool_calls && typeof n.choices[0].message.content === 'string' && n.choices[0].finish_reason !== 'tool_calls', 'none: text only', n.choices[0]);
  const a = await client.chat.completions.create({ model: MODEL, messages: user('Hello'), tools: TOOLS, max_tokens: 60, seed: 1 });
  valid(V.chat, a, 'chat response');
  const m = a.choices[0].message;
  if (m.tool_calls) checkCalls(m, ['get_weather', 'search'], 'auto');
  else check(typeof m.content === 'string' && !/<tool_call>/.test(m.content), 'auto: text without call syntax', m);
});

await test('tool results go back through the template', async () => {
  const history = (args, result) => [
    { role: 'user', content: 'What is the weather in Paris?' },
    { role: 'assistant', content: null, tool_calls: [{ id: 'call_abc123', type: 'function', function: { name: 'get_weather', arguments: args } }] },
    { role: 'tool', tool_call_id: 'call_abc123', content: result },
  ];
  const base = { model: MODEL, tools: TOOLS, tool_choice: 'none', max_tokens: 8, temperature: 0 };
  const r1 = await client.chat.completions.create({ ...base, messages: history('{"city": "Paris", "unit": "c"}', '{"temp": 21}') });
  valid(V.chat, r1, 'chat response');
  check(typeof r1.choices[0].message.content === 'string', 'an answer');
  const r0 = await client.chat.completions.create({ ...base, messages: user('What is the weather in Paris?') });
  check(r1.usage.prompt_tokens > r0.usage.prompt_tokens + 20, 'the call and its result are in the prompt', [r0.usage.prompt_tokens, r1.usage.prompt_tokens]);
  // the result's text reaches the prompt
  const r2 = await client.chat.completions.create({ ...base, messages: history('{"city": "Paris", "unit": "c"}', '{"temp": 21, "wind": "strong from the north west"}') });
  check(r2.usage.prompt_tokens > r1.usage.prompt_tokens, 'tool content rendered', [r1.usage.prompt_tokens, r2.usage.prompt_tokens]);
  // arguments as JSON text are given to the template as the object (as the templates expect)
  const obj = await post(srv.base, '/v1/chat/completions', { ...base, messages: history({ city: 'Paris', unit: 'c' }, '{"temp": 21}') });
  check(obj.status === 200 && obj.json.usage.prompt_tokens === r1.usage.prompt_tokens, 'string and object arguments render alike', [obj.status, obj.json?.usage, r1.usage]);
  // a follow-up that calls again, after a result
  const r3 = await client.chat.completions.create({ ...base, tool_choice: 'required', parallel_tool_calls: false, max_tokens: 1500, seed: 2, messages: history('{"city": "Paris", "unit": "c"}', '{"temp": 21}') });
  valid(V.chat, r3, 'chat response');
  checkCalls(r3.choices[0].message, ['get_weather', 'search'], 'after a result');
});

await test('bad inputs: 400 naming the field', async () => {
  const cases = [
    [{ tools: TOOLS, tool_choice: { type: 'function', function: { name: 'nope' } } }, 'tool_choice', /nope/],
    [{ tools: TOOLS, tool_choice: 'sometimes' }, 'tool_choice'],
    [{ tool_choice: 'required' }, 'tool_choice'],
    [{ tools: [{ type: 'function', function: { name: 'bad name!' } }] }, 'tools'],
    [{ tools: [{ type: 'function', function: { name: 'f', parameters: { type: 'object', properties: { x: { type: 'number', multipleOf: 3 } }, required: ['x'] } } }], tool_choice: 'required' }, 'tools', /multipleOf/],
    [{ response_format: { type: 'json_schema', json_schema: { name: 'x', schema: { type: 'nope' } } } }, 'response_format'],
    [{ response_format: { type: 'json_schema', json_schema: { name: 'x', schema: { type: 'integer', multipleOf: 3 } } } }, 'response_format', /multipleOf/],
    [{ response_format: { type: 'json_schema', json_schema: { schema: { type: 'object' } } } }, 'response_format', /name/],
    [{ response_format: { type: 'xml' } }, 'response_format'],
    [{ grammar: 'root ::= [a-z]+', regex: 'a+' }, 'regex'],
    [{ response_format: { type: 'json_object' }, grammar: 'root ::= "a"' }, 'grammar'],
    [{ grammar: 'root ::= ( "a"' }, 'grammar', /line 1/],
    [{ grammar: 'start ::= "a"' }, 'grammar', /root/],
    [{ regex: '(a)\\1' }, 'regex'],
    [{ regex: '[a-' }, 'regex'],
    [{ tools: TOOLS, tool_choice: 'required', response_format: { type: 'json_object' } }, 'response_format'],
    [{ messages: [{ role: 'tool', content: 'x' }] }, 'messages[0]'],
  ];
  for (const [extra, param, msg] of cases) {
    const r = await post(srv.base, '/v1/chat/completions', { messages: user('hi'), max_tokens: 5, ...extra });
    check(r.status === 400, `${JSON.stringify(extra).slice(0, 120)}: 400`, [r.status, r.text.slice(0, 300)]);
    const e = r.json?.error;
    check(e && e.param === param && typeof e.message === 'string', `error names ${param}`, e);
    if (msg && e) check(msg.test(e.message), `message says ${msg}`, e.message);
  }
  const c = await post(srv.base, '/v1/completions', { prompt: 'x', grammar: 'root ::= ', regex: 'b' });
  check(c.status === 400 && c.json?.error?.param === 'regex', 'completions: one constraint', c.text);
  // the server is fine afterwards
  const ok = await client.chat.completions.create({ model: MODEL, messages: user('hi'), max_tokens: 5 });
  check(ok.choices.length === 1, 'still serving');
});

// A template that shows no tools (the ChatML fallback: stories260K has no template): the
// tools are described in the system prompt and calls come as the generic JSON.
await test('template without tools: generic JSON calls', async () => {
  const s2 = await startServer(['--parallel', '2', '--ctx', '2048', '--threads', '2', '--api-key', API_KEY]);
  check(/tool calls: generic/.test(s2.log()), 'generic family announced', s2.log());
  const c2 = new OpenAI({ baseURL: `${s2.base}/v1`, apiKey: API_KEY, maxRetries: 0, timeout: 120000 });
  const opts = { model: MODEL, messages: user('Weather?'), tools: TOOLS, tool_choice: { type: 'function', function: { name: 'get_weather' } }, parallel_tool_calls: false, max_tokens: 1200, seed: 3, n: 2 };
  const r = await c2.chat.completions.create(opts);
  valid(V.chat, r, 'chat response');
  check(r.choices.length === 2, 'n = 2');
  const calls = r.choices.map((c) => {
    check(c.finish_reason === 'tool_calls' && c.message.content === null, `choice ${c.index}: a call only`, c);
    return checkCalls(c.message, ['get_weather'], `choice ${c.index}`);
  });
  check(calls[0][0]?.id !== calls[1][0]?.id, 'ids differ between choices', calls.map((c) => c[0]?.id));
  // the system prompt carries the tools: longer than without them
  const plain = await c2.chat.completions.create({ model: MODEL, messages: user('Weather?'), max_tokens: 1 });
  check(r.usage.prompt_tokens > plain.usage.prompt_tokens + 50, 'tools described in the prompt', [plain.usage.prompt_tokens, r.usage.prompt_tokens]);
  const exited2 = new Promise((resolve) => s2.proc.on('exit', (code) => resolve(code)));
  s2.proc.kill('SIGTERM');
  check((await exited2) === 0, 'second server exits 0');
});

// Other families through their published templates: the call comes back parsed from each
// syntax (Llama 3.1 JSON, Mistral [TOOL_CALLS], Functionary v3.2 >>>name), streamed alike,
// and a history with a call and its result renders (Mistral wants 9-character ids;
// Functionary v3.2 writes arguments as text).
await test('other template families', async () => {
  const fams = [
    ['meta-llama-Llama-3.1-8B-Instruct.jinja', 'llama3'],
    ['mistralai-Mistral-Nemo-Instruct-2407.jinja', 'mistral'],
    ['meetkai-functionary-medium-v3.2.jinja', 'functionary-v3.2'],
  ];
  for (const [file, fam] of fams) {
    const s3 = await startServer(['--parallel', '2', '--ctx', '4096', '--threads', '2', '--api-key', API_KEY,
      '--chat-template', path.join(path.dirname(templatePath), file)]);
    check(new RegExp(`tool calls: ${fam.replace('.', '\\.')}\\b`).test(s3.log()), `${fam}: family detected`, s3.log().slice(-300));
    const c3 = new OpenAI({ baseURL: `${s3.base}/v1`, apiKey: API_KEY, maxRetries: 0, timeout: 120000 });
    const opts = { model: MODEL, messages: user('Find cats.'), tools: TOOLS, tool_choice: { type: 'function', function: { name: 'search' } }, parallel_tool_calls: false, max_tokens: 1500, seed: 7 };
    const r = await c3.chat.completions.create(opts);
    valid(V.chat, r, `${fam} response`);
    check(r.choices[0].finish_reason === 'tool_calls', `${fam}: finish_reason`, r.choices[0]);
    const calls = checkCalls(r.choices[0].message, ['search'], fam);
    const st = await collectTools(await c3.chat.completions.create({ ...opts, stream: true }));
    check(st.calls.length === calls.length && st.calls[0]?.function.arguments === calls[0]?.function.arguments,
      `${fam}: streamed = non-streamed`, [st.calls, calls]);
    const history = [
      ...user('Find cats.'),
      { role: 'assistant', content: null, tool_calls: [{ id: 'call_0123456789abcdef', type: 'function', function: { name: 'search', arguments: '{"query": "cats", "limit": 2}' } }] },
      { role: 'tool', tool_call_id: 'call_0123456789abcdef', content: 'three cats found' },
    ];
    const h = await post(s3.base, '/v1/chat/completions', { messages: history, tools: TOOLS, max_tokens: 4, temperature: 0 });
    check(h.status === 200, `${fam}: a call and its result render`, h.text.slice(0, 300));
    const exited3 = new Promise((resolve) => s3.proc.on('exit', (code) => resolve(code)));
    s3.proc.kill('SIGTERM');
    check((await exited3) === 0, `${fam}: exit 0`);
  }
});

const exited = new Promise((resolve) => srv.proc.on('exit', (code) => resolve(code)));
srv.proc.kill('SIGINT');
const code = await exited;
tally.current = 'shutdown';
check(code === 0, 'exit 0 after SIGINT', [code, srv.log().slice(-400)]);
console.error(`${tally.passed} passed, ${tally.failed} failed`);
process.exit(tally.failed ? 1 : 0);
