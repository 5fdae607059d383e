// app.js - the chat page of `ruvllm serve`: a conversation streamed through
// POST /v1/chat/completions (stream: true), read with fetch + ReadableStream and parsed as
// server-sent events. Everything the model, the user or the server writes is put on the
// page with textContent, never as HTML.
'use strict';

const $ = (id) => document.getElementById(id);

const state = {
  history: [],       // [{role, content}] of the finished turns
  controller: null,  // AbortController of the reply being streamed
  model: null,       // the id /v1/models reports
};

function headers(json) {
  const h = {};
  if (json) h['content-type'] = 'application/json';
  const key = $('api-key').value.trim();
  if (key) h.authorization = `Bearer ${key}`;
  return h;
}

function setStatus(text, isError) {
  const s = $('status');
  s.textContent = text;
  s.style.color = isError ? 'var(--error)' : '';
}

function scrollDown() {
  const log = $('log');
  log.scrollTop = log.scrollHeight;
}

// A message box; returns its body element (text goes in through textContent only).
function addMessage(role, text) {
  const box = document.createElement('div');
  box.className = `msg ${role}`;
  const who = document.createElement('div');
  who.className = 'who';
  who.textContent = role;
  const body = document.createElement('div');
  body.className = 'body';
  body.textContent = text;
  box.append(who, body);
  $('log').append(box);
  scrollDown();
  return body;
}

function setBusy(busy) {
  $('send').disabled = busy;
  $('stop').disabled = !busy;
}

// A number from an input, or undefined when empty; throws naming the field when invalid.
function numberOf(id, name, lo, hi, integer) {
  const raw = $(id).value.trim();
  if (raw === '') return undefined;
  const v = Number(raw);
  if (!Number.isFinite(v) || v < lo || v > hi || (integer && !Number.isInteger(v)))
    throw new Error(`${name}: expected ${integer ? 'an integer' : 'a number'} in ${lo}..${hi}`);
  return v;
}

function buildRequest() {
  const messages = [];
  const system = $('system').value;
  if (system.trim()) messages.push({ role: 'system', content: system });
  messages.push(...state.history);
  const req = { messages, stream: true, stream_options: { include_usage: true } };
  if (state.model) req.model = state.model;
  const temperature = numberOf('temperature', 'temperature', 0, 2, false);
  const maxTokens = numberOf('max-tokens', 'max tokens', 1, 1e6, true);
  const topP = numberOf('top-p', 'top p', 0, 1, false);
  const seed = numberOf('seed', 'seed', 0, Number.MAX_SAFE_INTEGER, true);
  if (temperature !== undefined) req.temperature = temperature;
  if (maxTokens !== undefined) req.max_tokens = maxTokens;
  if (topP !== undefined) req.top_p = topP;
  if (seed !== undefined) req.seed = seed;
  return req;
}

// The message of an error response (an OpenAI error object), or the status line.
async function errorText(r) {
  let msg = `HTTP ${r.status}`;
  try {
    const j = await r.json();
    if (j && j.error && j.error.message) msg += `: ${j.error.message}`;
  } catch { /* not JSON */ }
  return msg;
}

// Split buffered text into complete SSE events; returns [events, rest]. An event is the
// joined value of its data: lines.
function takeEvents(buf) {
  const events = [];
  for (;;) {
    const m = /\r\n\r\n|\n\n|\r\r/.exec(buf);
    if (!m) break;
    const block = buf.slice(0, m.index);
    buf = buf.slice(m.index + m[0].length);
    const data = [];
    for (const line of block.split(/\r\n|\n|\r/)) {
      if (line.startsWith('data:')) data.push(line.slice(line.startsWith('data: ') ? 6 : 5));
    }
    if (data.length) events.push(data.join('\n'));
  }
  return [events, buf];
}

async function send() {
  if (state.controller) return;
  const input = $('input');
  const text = input.value;
  if (!text.trim()) return;
  let req;
  try {
    state.history.push({ role: 'user', content: text });
    req = buildRequest();
  } catch (e) {
    state.history.pop();
    setStatus(e.message, true);
    return;
  }
  input.value = '';
  setStatus('');
  addMessage('user', text);
  const body = addMessage('assistant', '');
  const box = body.parentElement;
  box.dataset.state = 'streaming';

  const controller = new AbortController();
  state.controller = controller;
  setBusy(true);
  const t0 = performance.now();
  let reply = '', finish = null, usage = null, tFirst = null, nDeltas = 0, outcome = 'done';
  try {
    const r = await fetch('/v1/chat/completions', {
      method: 'POST', headers: headers(true), body: JSON.stringify(req), signal: controller.signal,
    });
    if (!r.ok) throw new Error(await errorText(r));
    const reader = r.body.getReader();
    const dec = new TextDecoder();
    let buf = '', ended = false;
    while (!ended) {
      const { value, done } = await reader.read();
      if (done) break;
      let events;
      [events, buf] = takeEvents(buf + dec.decode(value, { stream: true }));
      for (const data of events) {
        if (data === '[DONE]') { ended = true; break; }
        const j = JSON.parse(data);
        if (j.error) throw new Error(j.error.message || 'server error');
        if (j.usage) usage = j.usage;
        const c = j.choices && j.choices[0];
        if (!c) continue;
        if (c.delta && c.delta.content) {
          if (tFirst === null) tFirst = performance.now();
          reply += c.delta.content;
          nDeltas++;
          body.textContent = reply;
          scrollDown();
        }
        if (c.finish_reason) finish = c.finish_reason;
      }
    }
    if (!ended) throw new Error('the stream ended early');
  } catch (e) {
    if (e.name === 'AbortError') {
      outcome = 'stopped';
    } else {
      outcome = 'error';
      const err = addMessage('error', e.message);
      err.parentElement.classList.add('error');
    }
  }
  state.controller = null;
  setBusy(false);
  box.dataset.state = outcome;
  if (outcome === 'error' && !reply) {
    state.history.pop(); // the turn did not happen: the user can send it again
    box.remove();
  } else {
    state.history.push({ role: 'assistant', content: reply });
  }
  const secs = (performance.now() - t0) / 1000;
  const parts = [];
  if (usage) {
    parts.push(`${usage.completion_tokens} tokens`, `prompt ${usage.prompt_tokens}`);
    const cached = usage.prompt_tokens_details && usage.prompt_tokens_details.cached_tokens;
    if (cached) parts.push(`${cached} cached`);
    if (tFirst !== null && usage.completion_tokens > 1) {
      const genSecs = (performance.now() - tFirst) / 1000;
      if (genSecs > 0) parts.push(`${((usage.completion_tokens - 1) / genSecs).toFixed(1)} tok/s`);
    }
  } else {
    parts.push(`${nDeltas} chunks`);
  }
  if (tFirst !== null) parts.push(`first token ${Math.round(tFirst - t0)} ms`);
  parts.push(`${secs.toFixed(2)} s`);
  parts.push(outcome === 'done' ? `finish: ${finish}` : outcome);
  $('stats').textContent = parts.join(' · ');
  $('input').focus();
}

function stop() {
  if (state.controller) state.controller.abort();
}

function clearChat() {
  stop();
  state.history = [];
  $('log').replaceChildren();
  $('stats').textContent = '';
  setStatus('');
}

async function loadModel() {
  try {
    const r = await fetch('/v1/models', { headers: headers(false) });
    if (r.status === 401) {
      $('model').textContent = 'API key needed (see the settings)';
      return;
    }
    if (!r.ok) throw new Error(await errorText(r));
    const j = await r.json();
    state.model = j.data && j.data[0] ? j.data[0].id : null;
    $('model').textContent = state.model ? `model: ${state.model}` : 'no model';
  } catch (e) {
    $('model').textContent = `cannot reach the server: ${e.message}`;
  }
}

function init() {
  const saved = sessionStorage.getItem('ruvllm-api-key');
  if (saved) $('api-key').value = saved;
  $('api-key').addEventListener('change', () => {
    sessionStorage.setItem('ruvllm-api-key', $('api-key').value.trim());
    loadModel();
  });
  $('composer').addEventListener('submit', (ev) => { ev.preventDefault(); send(); });
  $('input').addEventListener('keydown', (ev) => {
    if (ev.key === 'Enter' && !ev.shiftKey && !ev.isComposing) { ev.preventDefault(); send(); }
  });
  $('stop').addEventListener('click', stop);
  $('clear').addEventListener('click', clearChat);
  $('settings-toggle').addEventListener('click', () => {
    const hidden = $('settings').classList.toggle('hidden');
    $('settings-toggle').setAttribute('aria-expanded', String(!hidden));
  });
  setBusy(false);
  loadModel();
  $('input').focus();
}

init();
