// Load on `webgpu-vlm serve` with the tiny SmolVLM, on loopback only and bounded in count and time: 16
// concurrent clients each send a sequence of chat requests (streamed and not, with and without an image,
// greedy and sampled) through the openai client, with faults mixed in: clients that leave mid-stream,
// malformed JSON, bodies over --max-body, bad base64, wrong API keys, and a burst past --max-queue. Then,
// alone on the server, a conversation's second turn with KV-prefix reuse against a full recompute.
//
// The server runs in this process, so that its GPU buffer count (pipe.model.gpu.pool.liveCount) can be read
// at start and end; RSS is this process's (server and clients together). Exits 1 if a request failed: any
// answer other than 200, or 429 for a well-formed request, or, for a deliberately bad one, its 4xx.
//
//   npm run bench:serve [-- --clients 16] [--requests 8] [--seconds 180] [--turns 5] [--json FILE]
//   (default FILE: bench/results/lavapipe-serve.json on lavapipe, gpu-serve.json elsewhere)
import { parseArgs } from 'node:util';
import { writeFileSync, readFileSync } from 'node:fs';
import { execSync } from 'node:child_process';
import { fileURLToPath } from 'node:url';
import OpenAI, { APIError, APIUserAbortError } from 'openai';
import { ChatServer, type RequestLog } from '../src/server/server.ts';
import { SeededRandom } from '../src/random.ts';

const { values: args } = parseArgs({
  options: { clients: { type: 'string' }, requests: { type: 'string' }, seconds: { type: 'string' }, json: { type: 'string' }, turns: { type: 'string' } },
});
const CLIENTS = Number(args.clients ?? 16);
const REQUESTS = Number(args.requests ?? 8);
const SECONDS = Number(args.seconds ?? 180);
const TURN_RUNS = Number(args.turns ?? 5);
const MAX_QUEUE = 24;
const BURST = 40;
const MAX_BODY = 4 * 2 ** 20;
const KEY = 'sk-bench';
const DIR = fileURLToPath(new URL('../test/fixtures/smolvlm-tiny', import.meta.url));
const MODEL = 'smolvlm-tiny';
const IMAGE_URI = `data:image/png;base64,${readFileSync(`${DIR}/image.png`).toString('base64')}`;

/** Seeded, so that every run sends the same mix. */
function rng(seed: number): () => number {
  const r = new SeededRandom(seed);
  return () => r.next();
}

function percentile(xs: number[], p: number): number | null {
  if (!xs.length) return null;
  const s = [...xs].sort((a, b) => a - b);
  return s[Math.min(s.length - 1, Math.floor((p / 100) * s.length))];
}
const stats = (xs: number[]) => ({ n: xs.length, p50: percentile(xs, 50), p99: percentile(xs, 99), max: xs.length ? Math.max(...xs) : null });
const mib = (n: number) => Math.round((n / 2 ** 20) * 10) / 10;

type Kind = 'chat' | 'stream' | 'leave' | 'bad-json' | 'too-large' | 'bad-base64' | 'wrong-key' | 'burst';
/** The status a deliberately bad request must get. */
const EXPECTED: Partial<Record<Kind, number>> = { 'bad-json': 400, 'too-large': 413, 'bad-base64': 400, 'wrong-key': 401 };

interface Outcome {
  kind: Kind;
  status: number | 'left' | 'error';
  ms: number;
  /** Client-side: to the first chunk of a stream. */
  ttftMs?: number;
  tokens?: number;
  detail?: string;
}

const logs: RequestLog[] = [];
const server = await ChatServer.start({ model: DIR, port: 0, apiKey: KEY, maxQueue: MAX_QUEUE, maxBody: MAX_BODY, timeoutMs: 60_000, onRequest: (r) => logs.push(r) });
const pipe = server.pipe!;
const adapter = pipe.model.gpu.info.description || pipe.model.gpu.info.device;
const api = new OpenAI({ baseURL: server.url, apiKey: KEY, maxRetries: 0, timeout: 60_000 });
const deadline = performance.now() + SECONDS * 1000;

function messages(i: number, k: number, image: boolean): OpenAI.ChatCompletionMessageParam[] {
  const text = `Client ${i}, question ${k}: what is in the picture?`;
  return [{ role: 'user', content: image ? [{ type: 'image_url', image_url: { url: IMAGE_URI } }, { type: 'text', text }] : text }];
}

async function post(body: string, headers: Record<string, string> = {}): Promise<number> {
  const r = await fetch(`${server.url}/chat/completions`, { method: 'POST', body, headers: { Authorization: `Bearer ${KEY}`, 'Content-Type': 'application/json', ...headers } });
  await r.arrayBuffer();
  return r.status;
}

async function one(kind: Kind, i: number, k: number, rand: () => number): Promise<Outcome> {
  const t0 = performance.now();
  const image = rand() < 0.5;
  const sampling = rand() < 0.3 ? { temperature: 0.8, top_p: 0.95, seed: i * 100 + k } : { temperature: 0 };
  const max_tokens = 4 + Math.floor(rand() * 21);
  const done = (o: Omit<Outcome, 'kind' | 'ms'>): Outcome => ({ kind, ms: performance.now() - t0, ...o });
  try {
    switch (kind) {
      case 'chat':
      case 'burst': {
        const r = await api.chat.completions.create({ model: MODEL, messages: messages(i, k, image), max_tokens, ...sampling });
        return done({ status: 200, tokens: r.usage?.completion_tokens });
      }
      case 'stream':
      case 'leave': {
        const stream = await api.chat.completions.create({ model: MODEL, messages: messages(i, k, image), max_tokens: kind === 'leave' ? 2000 : max_tokens, ...sampling, stream: true, stream_options: { include_usage: true } });
        let ttftMs: number | undefined;
        let tokens: number | undefined;
        let chunks = 0;
        for await (const c of stream) {
          ttftMs ??= performance.now() - t0;
          if (c.usage) tokens = c.usage.completion_tokens;
          if (kind === 'leave' && ++chunks === 3) return done({ status: 'left', ttftMs }); // leaving closes the connection
        }
        return done({ status: 200, ttftMs, tokens });
      }
      case 'bad-json':
        return done({ status: await post(`{"model": "${MODEL}", "messages": [{"role": "user", "content": "Hi"}`) });
      case 'too-large':
        return done({ status: await post(JSON.stringify({ model: MODEL, messages: messages(i, k, false), pad: 'x'.repeat(MAX_BODY) })) });
      case 'bad-base64': {
        const m = [{ role: 'user' as const, content: [{ type: 'image_url' as const, image_url: { url: 'data:image/png;base64,iVBORw0K$$$$' } }] }];
        await api.chat.completions.create({ model: MODEL, messages: m, max_tokens });
        return done({ status: 200 });
      }
      case 'wrong-key':
        await new OpenAI({ baseURL: server.url, apiKey: 'sk-wrong', maxRetries: 0 }).chat.completions.create({ model: MODEL, messages: messages(i, k, false), max_tokens });
        return done({ status: 200 });
    }
  } catch (e) {
    if (e instanceof APIError && e.status !== undefined) return done({ status: e.status, detail: e.message });
    return done({ status: 'error', detail: e instanceof APIUserAbortError ? 'aborted' : String((e as Error)?.message ?? e) });
  }
}

/** Client i's sequence: mostly plain and streamed chats, with one fault for most clients. */
function schedule(i: number): Kind[] {
  const rand = rng(1000 + i);
  const kinds: Kind[] = Array.from({ length: REQUESTS }, () => (rand() < 0.5 ? 'chat' : 'stream'));
  const faults: Kind[] = ['leave', 'bad-json', 'too-large', 'bad-base64', 'wrong-key'];
  if (i < faults.length * 2) kinds[1 + (i % (REQUESTS - 1))] = faults[i % faults.length];
  return kinds;
}

const gc = (globalThis as { gc?: () => void }).gc ?? (() => {});
const rss = () => {
  gc();
  return process.memoryUsage().rss;
};

// Warm-up: one request of each shape, so that start figures are taken after the first prompts' pipelines.
for (const kind of ['chat', 'stream'] as Kind[]) for (const image of [0, 1]) await one(kind, 99, image, () => (image ? 0.1 : 0.9));
const start = { rss: rss(), gpuBuffers: pipe.model.gpu.pool.liveCount, gpuBytes: pipe.model.gpu.pool.liveBytes };
console.log(`server ${server.url} (in-process), ${adapter}; GPU buffers ${start.gpuBuffers}, RSS ${mib(start.rss)} MiB`);

// Load: the clients, and halfway through the first client's sequence, a burst past --max-queue; twice, the
// same mix, so that memory after the first round (every prompt shape seen) and after the second shows
// whether serving more requests of those shapes holds on to anything.
const outcomes: Outcome[] = [];
const loadFrom = logs.length; // the warm-up's logs are left out of the figures
const t0 = performance.now();
const afterRound: { rss: number; gpuBuffers: number; gpuBytes: number }[] = [];
for (let round = 0; round < 2; round++) {
  let burstDone: Promise<void> | undefined;
  await Promise.all(
    Array.from({ length: CLIENTS }, async (_, i) => {
      const rand = rng(7 + i);
      for (const [k, kind] of schedule(i).entries()) {
        if (performance.now() > deadline) break;
        if (i === 0 && k === Math.floor(REQUESTS / 2)) {
          burstDone = Promise.all(Array.from({ length: BURST }, (_, b) => one('burst', 100 + b, 0, rng(500 + b)))).then((os) => void outcomes.push(...os));
        }
        outcomes.push(await one(kind, i, k, rand));
      }
    }),
  );
  await burstDone;
  const p = server.pipe!;
  afterRound.push({ rss: rss(), gpuBuffers: p.model.gpu.pool.liveCount, gpuBytes: p.model.gpu.pool.liveBytes });
}
const wall = (performance.now() - t0) / 1000;
await new Promise((r) => setTimeout(r, 200)); // the last request logs
const loadLogs = logs.slice(loadFrom).filter((l) => l.path === '/v1/chat/completions');

// Turn two: the same conversation's second turn, with the KV prefix reused and recomputed, alone on the server.
const SYSTEM = `You are a careful assistant. ${'Describe what you see, plainly and briefly. '.repeat(12)}`;
async function ttftOf(msgs: OpenAI.ChatCompletionMessageParam[], extra: object): Promise<{ ttftMs: number; usage?: OpenAI.CompletionUsage; text: string }> {
  const t = performance.now();
  const stream = await api.chat.completions.create({ model: MODEL, messages: msgs, max_tokens: 8, temperature: 0, stream: true, stream_options: { include_usage: true }, ...extra });
  let ttftMs = 0;
  let usage: OpenAI.CompletionUsage | undefined;
  let text = '';
  for await (const c of stream) {
    if (!ttftMs) ttftMs = performance.now() - t;
    if (c.usage) usage = c.usage;
    text += c.choices[0]?.delta.content ?? '';
  }
  return { ttftMs, usage, text };
}
const turns = { reuse: [] as number[], full: [] as number[], cachedTokens: [] as (number | null)[], promptTokens: 0 };
for (let r = 0; r < TURN_RUNS; r++) {
  for (const mode of ['reuse', 'full'] as const) {
    const first: OpenAI.ChatCompletionMessageParam[] = [
      { role: 'system', content: SYSTEM },
      { role: 'user', content: [{ type: 'image_url', image_url: { url: IMAGE_URI } }, { type: 'text', text: `Run ${r}: what is in it?` }] },
    ];
    const one = await ttftOf(first, {});
    const second: OpenAI.ChatCompletionMessageParam[] = [...first, { role: 'assistant', content: one.text }, { role: 'user', content: 'And what else?' }];
    const two = await ttftOf(second, mode === 'full' ? { reuse_prefix: false } : {});
    turns[mode].push(two.ttftMs);
    turns.promptTokens = two.usage?.prompt_tokens ?? 0;
    if (mode === 'reuse') turns.cachedTokens.push(two.usage?.prompt_tokens_details?.cached_tokens ?? null);
  }
}

const end = { rss: rss(), gpuBuffers: server.pipe?.model.gpu.pool.liveCount ?? null, gpuBytes: server.pipe?.model.gpu.pool.liveBytes ?? null };
await server.close();

// Tally.
const by = (f: (o: Outcome) => boolean) => outcomes.filter(f);
const wellFormed = by((o) => !(o.kind in EXPECTED));
const answered = wellFormed.filter((o) => o.status === 200);
const refused = wellFormed.filter((o) => o.status === 429);
const left = wellFormed.filter((o) => o.status === 'left');
const bad = by((o) => o.kind in EXPECTED);
const badOk = bad.filter((o) => o.status === EXPECTED[o.kind]);
const failures = [...wellFormed.filter((o) => o.status !== 200 && o.status !== 429 && o.status !== 'left'), ...bad.filter((o) => o.status !== EXPECTED[o.kind])];
const tokens = answered.reduce((a, o) => a + (o.tokens ?? 0), 0);
const served = loadLogs.filter((l) => l.promptTokens !== undefined);
const median = (xs: number[]) => percentile(xs, 50);

const result = {
  adapter,
  revision: execSync('git rev-parse --short HEAD', { encoding: 'utf8' }).trim(),
  date: new Date().toISOString(),
  config: { clients: CLIENTS, requestsPerClient: REQUESTS, burst: BURST, maxQueue: MAX_QUEUE, maxBody: MAX_BODY, secondsLimit: SECONDS, maxTokens: '4-24 (2000 for clients that leave)' },
  wallSeconds: wall,
  requests: {
    sent: outcomes.length,
    answered: answered.length,
    refused429: refused.length,
    leftMidStream: left.length,
    serverSaw499: loadLogs.filter((l) => l.status === 499).length,
    deliberatelyBad: { sent: bad.length, gotTheirStatus: badOk.length, byKind: Object.fromEntries(Object.keys(EXPECTED).map((k) => [k, { sent: bad.filter((o) => o.kind === k).length, expected: EXPECTED[k as Kind], got: [...new Set(bad.filter((o) => o.kind === k).map((o) => o.status))] }])) },
    failed: failures.length,
    failures: failures.slice(0, 10),
  },
  throughput: { answeredPerSecond: answered.length / wall, completionTokensPerSecond: tokens / wall },
  ttftMs: { clientStreamed: stats(answered.filter((o) => o.ttftMs !== undefined).map((o) => o.ttftMs!)), server: stats(served.filter((l) => l.ttftMs !== undefined).map((l) => l.ttftMs!)) },
  latencyMs: stats(answered.map((o) => o.ms)),
  queueWaitMs: stats(served.map((l) => l.queueMs!)),
  memory: {
    rssStartMiB: mib(start.rss),
    rssAfterRoundsMiB: afterRound.map((m) => mib(m.rss)),
    gpuBuffersAfterRounds: afterRound.map((m) => m.gpuBuffers),
    gpuBytesAfterRounds: afterRound.map((m) => m.gpuBytes),
    rssEndMiB: mib(end.rss),
    gpuBuffersStart: start.gpuBuffers,
    gpuBuffersEnd: end.gpuBuffers,
    gpuMiBStart: mib(start.gpuBytes),
    gpuMiBEnd: end.gpuBytes === null ? null : mib(end.gpuBytes),
    // The model keeps a compiled plan (with its activation buffers) per recent prompt length.
    distinctPromptLengths: new Set(logs.flatMap((l) => (l.promptTokens ? [l.promptTokens] : []))).size,
  },
  prefixReuse: {
    runs: TURN_RUNS,
    promptTokensTurnTwo: turns.promptTokens,
    cachedTokens: turns.cachedTokens,
    turnTwoTtftMs: { reuse: { median: median(turns.reuse), runs: turns.reuse }, full: { median: median(turns.full), runs: turns.full } },
    note: turns.cachedTokens.every((c) => c === null)
      ? 'generate() reports no timings.reusedTokens yet (KV-prefix reuse is being added separately): both columns are full recomputes'
      : 'reuse: turn two prefills only what follows the cached prefix; full: reuse_prefix false',
  },
};

const f = (x: number | null) => (x === null ? '-' : x.toFixed(0));
const q = result.requests;
console.log(
  `${q.sent} requests in ${wall.toFixed(1)} s from ${CLIENTS} clients + a burst of ${BURST}: ${q.answered} answered, ${q.refused429} refused (429), ` +
    `${q.leftMidStream} left mid-stream (server saw ${q.serverSaw499} × 499), ${q.deliberatelyBad.gotTheirStatus}/${q.deliberatelyBad.sent} bad requests got their 4xx, ${q.failed} failed`,
);
console.log(
  `throughput ${result.throughput.answeredPerSecond.toFixed(2)} req/s, ${result.throughput.completionTokensPerSecond.toFixed(1)} tok/s; ` +
    `TTFT p50/p99 ${f(result.ttftMs.server.p50)}/${f(result.ttftMs.server.p99)} ms (server), ${f(result.ttftMs.clientStreamed.p50)}/${f(result.ttftMs.clientStreamed.p99)} ms (client, streamed); ` +
    `latency p50/p99 ${f(result.latencyMs.p50)}/${f(result.latencyMs.p99)} ms; queue wait p50/p99 ${f(result.queueWaitMs.p50)}/${f(result.queueWaitMs.p99)} ms`,
);
console.log(
  `after the load's two rounds (the same mix): RSS ${result.memory.rssAfterRoundsMiB.join(' → ')} MiB, GPU buffers ${result.memory.gpuBuffersAfterRounds.join(' → ')}`,
);
console.log(
  `RSS ${result.memory.rssStartMiB} → ${result.memory.rssEndMiB} MiB, GPU buffers ${start.gpuBuffers} → ${end.gpuBuffers} ` +
    `(${result.memory.gpuMiBStart} → ${result.memory.gpuMiBEnd} MiB; ${result.memory.distinctPromptLengths} distinct prompt lengths, a compiled plan for each recent one)`,
);
console.log(
  `turn two (${turns.promptTokens} prompt tokens, cached ${turns.cachedTokens.map((c) => c ?? '-').join('/')}): TTFT median ${f(result.prefixReuse.turnTwoTtftMs.reuse.median)} ms with reuse, ` +
    `${f(result.prefixReuse.turnTwoTtftMs.full.median)} ms recomputed; ${result.prefixReuse.note}`,
);
for (const x of q.failures) console.log(`failed: ${JSON.stringify(x)}`);
// Kept with the other results, named by the adapter kind (lavapipe on this repository's CI machine).
const out = args.json ?? fileURLToPath(new URL(`./results/${/llvmpipe/i.test(adapter) ? 'lavapipe' : 'gpu'}-serve.json`, import.meta.url));
writeFileSync(out, JSON.stringify(result, null, 2) + '\n');
console.log(`wrote ${out}`);
process.exitCode = q.failed ? 1 : 0;
