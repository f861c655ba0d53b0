// `webgpu-vlm serve` under load and faults, through the openai client: concurrent clients all answered, a
// client that leaves mid-stream or while waiting has its generation stopped at once, a burst past --max-queue
// gets 429s, a request past its time gets 504, and a lost GPU device answers 500 and the model reloads.
import { describe, it, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { setTimeout as sleep } from 'node:timers/promises';
import { APIUserAbortError, type OpenAI } from 'openai';
import { ChatServer, type RequestLog } from '../../src/server/server.ts';
import { DIR, MODEL, client, imageMessage, raw, rejectsWith } from './helpers.ts';

const HI: OpenAI.ChatCompletionMessageParam[] = [{ role: 'user', content: 'Hi' }];

/** Polls `f` until it is true (every 20 ms, for at most `ms`). */
async function until(f: () => boolean | Promise<boolean>, ms = 30_000, what = 'condition'): Promise<void> {
  const end = Date.now() + ms;
  while (!(await f())) {
    if (Date.now() > end) assert.fail(`timed out waiting for ${what}`);
    await sleep(20);
  }
}

async function health(server: ChatServer): Promise<{ status: number; body: any }> {
  return raw(server.url.replace(/\/v1$/, '/health'));
}

/** Admitted requests (running or waiting), as /health reports them. */
async function admitted(server: ChatServer): Promise<number> {
  const h = (await health(server)).body;
  return h.running + h.queue_depth;
}

describe('serve under load (SmolVLM tiny, --max-queue 3)', () => {
  let server: ChatServer;
  let api: OpenAI;
  const logs: RequestLog[] = [];
  before(async () => {
    server = await ChatServer.start({ model: DIR, port: 0, maxQueue: 3, onRequest: (r) => logs.push(r) });
    api = client(server.url);
  });
  after(() => server?.close());

  it('answers concurrent clients, one of which leaves mid-stream; its generation stops and the others finish', async () => {
    const from = logs.length;
    const plain = async (i: number) => {
      for (let k = 0; k < 3; k++) {
        const messages = k % 2 ? [imageMessage(`Picture ${i}.${k}?`)] : [{ role: 'user' as const, content: `Client ${i}, request ${k}` }];
        if ((i + k) % 2) {
          const r = await api.chat.completions.create({ model: MODEL, messages, max_tokens: 8, temperature: 0 });
          assert.equal(r.choices.length, 1);
        } else {
          let text = '';
          for await (const c of await api.chat.completions.create({ model: MODEL, messages, max_tokens: 8, temperature: 0, stream: true })) text += c.choices[0]?.delta.content ?? '';
          assert.equal(typeof text, 'string');
        }
      }
    };
    const leaver = async () => {
      const stream = await api.chat.completions.create({ model: MODEL, messages: HI, max_tokens: 4000, temperature: 0, stream: true });
      let n = 0;
      for await (const _ of stream) if (++n === 3) break; // closes the connection
    };
    await Promise.all([plain(0), plain(1), plain(2), leaver()]);
    await until(() => logs.length - from === 10, 30_000, 'ten request logs');
    const mine = logs.slice(from);
    const left = mine.filter((r) => r.status === 499);
    assert.equal(left.length, 1, JSON.stringify(mine));
    assert.equal(left[0].finishReason, 'abort');
    // Stopped after the step in flight: a handful of tokens, not 4000.
    assert.ok(left[0].completionTokens! < 100, `${left[0].completionTokens} tokens generated for a client that left after 2`);
    assert.deepEqual(
      mine.filter((r) => r !== left[0]).map((r) => r.status),
      new Array(9).fill(200),
    );
    assert.equal(await admitted(server), 0);
  });

  it('drops a client that leaves while waiting: its request leaves the queue without generating', async () => {
    const release = await server.pipe!.model.acquire(); // the model is busy until release()
    try {
      const ctl = new AbortController();
      const call = api.chat.completions.create({ model: MODEL, messages: HI, max_tokens: 50 }, { signal: ctl.signal });
      await until(async () => (await admitted(server)) === 1, 30_000, 'the request to wait');
      const from = logs.length;
      ctl.abort();
      await assert.rejects(call, APIUserAbortError);
      await until(() => logs.length > from, 30_000, 'its log');
      const r = logs.at(-1)!;
      assert.deepEqual([r.status, r.finishReason, r.completionTokens], [499, 'abort', 0]);
      assert.equal(await admitted(server), 0);
    } finally {
      release();
    }
    const after = await api.chat.completions.create({ model: MODEL, messages: HI, max_tokens: 2 });
    assert.equal(after.choices[0].finish_reason, 'length');
  });

  it('refuses a burst past --max-queue with 429 and Retry-After, and answers every admitted request', async () => {
    const release = await server.pipe!.model.acquire();
    let calls: Promise<{ status: number; retryAfter?: string | null; code?: string }>[];
    try {
      // One request counts as running and three may wait: four admitted, the other six refused at once.
      calls = Array.from({ length: 10 }, () =>
        api.chat.completions.create({ model: MODEL, messages: HI, max_tokens: 2 }).then(
          () => ({ status: 200 }),
          (e) => ({ status: e.status, retryAfter: e.headers?.get('retry-after'), code: e.code }),
        ),
      );
      await until(async () => (await admitted(server)) === 4, 30_000, 'four admitted requests');
      const metrics = (await raw(server.url.replace(/\/v1$/, '/metrics'))).body as string;
      assert.match(metrics, /^webgpu_vlm_queue_depth 3$/m);
    } finally {
      release();
    }
    const answers = await Promise.all(calls);
    assert.equal(answers.filter((a) => a.status === 200).length, 4, JSON.stringify(answers));
    const refused = answers.filter((a) => a.status === 429);
    assert.equal(refused.length, 6, JSON.stringify(answers));
    assert.ok(refused.every((a) => a.retryAfter === '1'));
    // The queue is free again: the next call is answered.
    assert.equal((await api.chat.completions.create({ model: MODEL, messages: HI, max_tokens: 1 })).choices.length, 1);
    assert.equal(await admitted(server), 0);
  });
});

describe('serve faults (SmolVLM tiny, --timeout 1 s)', () => {
  let server: ChatServer;
  let api: OpenAI;
  before(async () => {
    server = await ChatServer.start({ model: DIR, port: 0, timeoutMs: 1000 });
    api = client(server.url);
  });
  after(() => server?.close());

  it('answers 504 at the request timeout, also while the request waits', async () => {
    const release = await server.pipe!.model.acquire();
    const t0 = performance.now();
    try {
      const e = await rejectsWith(api.chat.completions.create({ model: MODEL, messages: HI, max_tokens: 2 }), 504, { code: 'timeout' });
      assert.equal(e.headers?.get('x-should-retry'), 'false');
      const ms = performance.now() - t0;
      assert.ok(ms >= 900 && ms < 10_000, `answered after ${ms.toFixed(0)} ms`);
    } finally {
      release();
    }
    await until(async () => (await admitted(server)) === 0, 30_000, 'the timed-out request to leave');
    assert.equal((await api.chat.completions.create({ model: MODEL, messages: HI, max_tokens: 2 })).choices.length, 1);
  });

  it('answers 500 when the GPU device is lost, says so on /health while it reloads, then serves again', async () => {
    const before = await api.chat.completions.create({ model: MODEL, messages: [imageMessage()], max_tokens: 6, temperature: 0 });
    const lost = server.pipe!;
    lost.model.gpu.device.destroy();
    await rejectsWith(api.chat.completions.create({ model: MODEL, messages: HI, max_tokens: 2 }), 500);
    const seen = new Set<string>();
    await until(async () => {
      const h = await health(server);
      seen.add(`${h.status} ${h.body.status}`);
      return h.status === 200;
    }, 60_000, 'the model to load again');
    assert.ok(server.pipe && server.pipe !== lost);
    assert.equal((await health(server)).body.reloads, 1);
    const again = await api.chat.completions.create({ model: MODEL, messages: [imageMessage()], max_tokens: 6, temperature: 0 });
    assert.equal(again.choices[0].message.content, before.choices[0].message.content);
    // While it reloaded, /health said so (or the reload was done before the first look).
    assert.ok([...seen].every((s) => s === '503 loading' || s === '200 ok'), [...seen].join(', '));
  });
});
