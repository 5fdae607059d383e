// bench/serve.mjs - drive `ruvllm serve` with N concurrent streams and print, as JSON,
// output throughput (tok/s), time to first token and inter-token latency percentiles,
// and the TTFT of a long prompt uncached vs with its prefix in the prefix cache.
// No dependencies: node's fetch and a small SSE reader.
//
// usage: node bench/serve.mjs --bin build/ruvllm --model M.gguf [--streams 1,8] [--tokens 64]
//                             [--threads N] [--parallel N] [--prefix 1000] [--url URL]
// With --url, an already running server is used (no --bin/--model).
import { spawn } from 'node:child_process';

const args = Object.fromEntries(process.argv.slice(2).reduce((acc, a, i, all) => {
  if (a.startsWith('--')) acc.push([a.slice(2), all[i + 1]]);
  return acc;
}, []));
const streams = (args.streams || '1,8').split(',').map(Number);
const nTok = Number(args.tokens || 64);
const prefixTok = Number(args.prefix || 1000);

async function start() {
  if (args.url) return { base: args.url, proc: null };
  const p = spawn(args.bin, ['serve', '-m', args.model, '--port', '0', '--parallel', String(args.parallel || Math.max(...streams)),
    '--threads', String(args.threads || 0), '--ctx', String(args.ctx || 2048)], { stdio: ['ignore', 'ignore', 'pipe'] });
  let log = '';
  const base = await new Promise((resolve, reject) => {
    p.stderr.on('data', (d) => {
      log += d;
      const m = /listening on (http:\/\/[^\s]+)/.exec(log);
      if (m && /ready/.test(log)) resolve(m[1]);
    });
    p.on('exit', (c) => reject(new Error(`server exited ${c}: ${log}`)));
  });
  return { base, proc: p };
}

// One streamed completion; returns arrival times (ms) of the first token and each chunk.
async function stream(base, prompt, maxTokens) {
  const t0 = performance.now();
  const r = await fetch(`${base}/v1/completions`, {
    method: 'POST', headers: { 'content-type': 'application/json' },
    body: JSON.stringify({ prompt, max_tokens: maxTokens, temperature: 0, ignore_eos: true, stream: true, stream_options: { include_usage: true } }),
  });
  const times = [];
  let usage = null, buf = '';
  const dec = new TextDecoder();
  for await (const part of r.body) {
    buf += dec.decode(part, { stream: true });
    let i;
    while ((i = buf.indexOf('\n\n')) >= 0) {
      const ev = buf.slice(0, i);
      buf = buf.slice(i + 2);
      if (!ev.startsWith('data: ') || ev === 'data: [DONE]') continue;
      const j = JSON.parse(ev.slice(6));
      if (j.usage) usage = j.usage;
      if (j.choices?.length && j.choices[0].text) times.push(performance.now() - t0);
    }
  }
  return { times, usage };
}

const pct = (xs, p) => {
  if (!xs.length) return null;
  const s = [...xs].sort((a, b) => a - b);
  return +s[Math.min(s.length - 1, Math.floor(p / 100 * s.length))].toFixed(2);
};

const srv = await start();
const result = { tokens_per_stream: nTok, runs: [] };
await stream(srv.base, 'Warm up', 4);
for (const c of streams) {
  const prompts = Array.from({ length: c }, (_, i) => `Story number ${i}: once upon a time`);
  const t0 = performance.now();
  const rs = await Promise.all(prompts.map((p) => stream(srv.base, p, nTok)));
  const wall = (performance.now() - t0) / 1000;
  const out = rs.reduce((a, r) => a + (r.usage ? r.usage.completion_tokens : r.times.length), 0);
  const ttft = rs.map((r) => r.times[0]);
  const itl = rs.flatMap((r) => r.times.slice(1).map((t, i) => t - r.times[i]));
  result.runs.push({
    streams: c, output_tokens: out, wall_s: +wall.toFixed(3), output_tok_s: +(out / wall).toFixed(2),
    per_stream_tok_s: +(out / wall / c).toFixed(2),
    ttft_ms: { p50: pct(ttft, 50), p90: pct(ttft, 90), p99: pct(ttft, 99) },
    itl_ms: { p50: pct(itl, 50), p90: pct(itl, 90), p99: pct(itl, 99) },
  });
}
if (result.runs.length > 1) result.speedup_vs_first = +(result.runs[result.runs.length - 1].output_tok_s / result.runs[0].output_tok_s).toFixed(2);

// Prefix cache: a long prompt, then the same prompt with another ending.
if (prefixTok > 0) {
  const words = Array.from({ length: prefixTok }, (_, i) => ['the', 'cat', 'sat', 'on', 'a', 'mat', 'and', 'then'][i % 8]).join(' ');
  const cold = await stream(srv.base, words + ' Once', 1);
  const warm = await stream(srv.base, words + ' Twice', 1);
  result.prefix = {
    prompt_tokens: warm.usage?.prompt_tokens, cached_tokens: warm.usage?.prompt_tokens_details?.cached_tokens,
    ttft_uncached_ms: +cold.times[0].toFixed(2), ttft_cached_ms: +warm.times[0].toFixed(2),
    ratio: +(cold.times[0] / warm.times[0]).toFixed(2),
  };
}
console.log(JSON.stringify(result, null, 1));
if (srv.proc) srv.proc.kill('SIGTERM');
