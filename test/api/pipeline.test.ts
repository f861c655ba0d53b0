// The public API from an image and a question to streamed text, on the tiny SmolVLM fixture: the
// prepared ids and pixels equal the reference's inputs, greedy generation reproduces the reference
// tokens, streaming yields the same text as the awaited result, a generation stops when its caller stops
// (AbortSignal, or leaving the stream) and keeps what it made, and concurrent calls queue in order. Also the
// offline Hugging Face cache resolution.
import { describe, it, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { mkdirSync, mkdtempSync, readdirSync, rmSync, symlinkSync, writeFileSync, copyFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { FIXTURES, batchPixels, openReference } from '../reference.ts';
import { testGpu, assertClose } from '../helpers.ts';
import { loadModel, type VisionLanguagePipeline } from '../../src/index.ts';
import { resolveHubId } from '../../src/io/hub.ts';

const DIR = join(FIXTURES, 'smolvlm-tiny');
// Fixture README §5.
const MESSAGES = [
  { role: 'user', content: [{ type: 'text' as const, text: 'Look at 7:' }, { type: 'image' as const }, { type: 'text' as const, text: ' What is in it?' }] },
];

describe('loadModel + generate (SmolVLM tiny)', () => {
  let pipe: VisionLanguagePipeline;
  before(async () => {
    pipe = await loadModel(DIR, { gpu: await testGpu() });
  });
  after(() => pipe?.dispose());

  it('prepares exactly the reference input_ids and pixel_values from the image file and the chat', async () => {
    const ref = await openReference(join(DIR, 'reference.safetensors'));
    try {
      const p = await pipe.prepare({ messages: MESSAGES, images: [join(DIR, 'image.png')] });
      try {
        assert.deepEqual(p.ids, [...(await ref.i32('input_ids'))]);
        assertClose(await batchPixels(p.images!), (await ref.f32('pixel_values')).data, { atol: 1e-6 }, 'pixel_values');
      } finally {
        p.dispose();
      }
    } finally {
      await ref.close();
    }
  });

  it('streams the reference greedy tokens and the same text it resolves to', async () => {
    const ref = await openReference(join(DIR, 'reference.safetensors'));
    const want = [...(await ref.i32('greedy_ids'))];
    await ref.close();
    const gen = pipe.generate({ messages: MESSAGES, images: [join(DIR, 'image.png')], maxNewTokens: want.length });
    let streamed = '';
    const tokens: number[] = [];
    for await (const c of gen) {
      streamed += c.text;
      tokens.push(c.token);
    }
    const r = await gen;
    // The reference never stops at EOS and eos (259) does not occur in its 16 tokens.
    assert.deepEqual(r.tokens, want);
    assert.deepEqual(tokens, want);
    assert.equal(streamed, r.text);
    assert.equal(r.finishReason, 'length');
    assert.ok(r.timings.ttftMs > 0 && r.timings.decodeTokensPerSecond > 0 && r.timings.imageEncodeMs >= 0);
  });

  it('samples reproducibly with a seed', async () => {
    const a = await pipe.generate({ prompt: 'Hi', maxNewTokens: 6, temperature: 0.8, topK: 20, topP: 0.9, seed: 7 });
    const b = await pipe.generate({ prompt: 'Hi', maxNewTokens: 6, temperature: 0.8, topK: 20, topP: 0.9, seed: 7 });
    assert.deepEqual(a.tokens, b.tokens);
  });

  // Leaving the stream or aborting lets the step in flight finish: the generation runs at most one step ahead
  // of a consumer that reads as chunks arrive, so the result may hold one token more than was read.
  const RUN_AHEAD = 1;

  it('stops when the consumer breaks out of the stream, frees the model, and the next call is unaffected', async () => {
    const fresh = await pipe.generate({ prompt: 'Hi', maxNewTokens: 6 });
    const gen = pipe.generate({ prompt: 'Hi', maxNewTokens: 50 });
    const read: number[] = [];
    for await (const c of gen) if (read.push(c.token) === 2) break;
    const r = await gen;
    assert.equal(r.finishReason, 'abort');
    assert.deepEqual(r.tokens.slice(0, 2), read);
    assert.ok(r.tokens.length <= 2 + RUN_AHEAD, `${r.tokens.length} tokens after leaving at the second`);
    assert.equal(r.text, pipe.tokenizer.decode(r.tokens, true));
    const next = await pipe.generate({ prompt: 'Hi', maxNewTokens: 6 });
    assert.deepEqual(next.tokens, fresh.tokens);
  });

  it('stops when the consumer calls return() on the iterator', async () => {
    const fresh = await pipe.generate({ prompt: 'Hi', maxNewTokens: 6 });
    const gen = pipe.generate({ prompt: 'Hi', maxNewTokens: 50 });
    const it = gen[Symbol.asyncIterator]();
    const read = [(await it.next()).value.token, (await it.next()).value.token];
    assert.deepEqual(await it.return!(), { done: true, value: undefined });
    const r = await gen;
    assert.equal(r.finishReason, 'abort');
    assert.deepEqual(r.tokens.slice(0, 2), read);
    assert.ok(r.tokens.length <= 2 + RUN_AHEAD, `${r.tokens.length} tokens after return() at the second`);
    assert.deepEqual((await pipe.generate({ prompt: 'Hi', maxNewTokens: 6 })).tokens, fresh.tokens);
  });

  it('resolves an abort through the signal with the tokens generated so far', async () => {
    const ctl = new AbortController();
    const gen = pipe.generate({ prompt: 'Hi', maxNewTokens: 50, signal: ctl.signal });
    const read: number[] = [];
    let atAbort: number[] = [];
    for await (const c of gen) {
      if (read.push(c.token) === 2) {
        ctl.abort();
        atAbort = [...read];
      }
    }
    const r = await gen;
    assert.equal(r.finishReason, 'abort');
    // Streamed up to abort(), plus at most the step that was in flight; the stream delivers that one too.
    assert.deepEqual(r.tokens.slice(0, 2), atAbort);
    assert.ok(r.tokens.length <= 2 + RUN_AHEAD, `${r.tokens.length} tokens after aborting at the second`);
    assert.deepEqual(read, r.tokens);
    assert.equal(r.timings.newTokens, r.tokens.length);
    assert.ok(r.timings.ttftMs > 0);
  });

  it('resolves at once with no tokens when the signal is already aborted', async () => {
    // The image does not exist: an aborted call does not even read it.
    const r = await pipe.generate({ prompt: 'Hi', images: ['/nonexistent.png'], signal: AbortSignal.abort() });
    assert.equal(r.finishReason, 'abort');
    assert.deepEqual(r.tokens, []);
    assert.equal(r.text, '');
    assert.equal(r.timings.prefillTokensPerSecond, 0);
  });

  it('runs two calls started together one after the other, in order, each as if alone', async () => {
    const a = { prompt: 'Hi', maxNewTokens: 5 };
    const b = { messages: MESSAGES, images: [join(DIR, 'image.png')], maxNewTokens: 4 };
    const alone = [(await pipe.generate(a)).tokens, (await pipe.generate(b)).tokens];
    const order: string[] = [];
    const drain = async (g: ReturnType<typeof pipe.generate>, name: string) => {
      for await (const _ of g) order.push(name);
      return g;
    };
    const [ra, rb] = await Promise.all([drain(pipe.generate(a), 'a'), drain(pipe.generate(b), 'b')]);
    assert.deepEqual(order, [...'aaaaa', ...'bbbb']);
    assert.deepEqual([ra.tokens, rb.tokens], alone);
    assert.ok(rb.timings.queueMs > 0 && rb.timings.ttftMs > rb.timings.queueMs);
  });

  it('drops a queued call whose signal aborts before its turn, without holding up the next', async () => {
    const first = pipe.generate({ prompt: 'Hi', maxNewTokens: 30 });
    const ctl = new AbortController();
    const second = pipe.generate({ prompt: 'Hi', maxNewTokens: 4, signal: ctl.signal });
    const third = pipe.generate({ prompt: 'Hi', maxNewTokens: 2 });
    let firstDone = false;
    void first.then(() => (firstDone = true));
    // Once the first call has a token, the other two have prepared their prompts and wait for the model.
    await first[Symbol.asyncIterator]().next();
    ctl.abort();
    const r2 = await second;
    assert.equal(firstDone, false, 'the aborted call waited for the running one');
    assert.equal(r2.finishReason, 'abort');
    assert.deepEqual(r2.tokens, []);
    assert.equal((await first).tokens.length, 30);
    assert.equal((await third).tokens.length, 2);
  });

  it('frees the model when a step fails, and the next call works', async () => {
    const forward = pipe.model.forward;
    let calls = 0;
    pipe.model.forward = function (...args) {
      if (++calls === 2) throw new Error('injected step failure');
      return forward.apply(this, args);
    };
    try {
      await assert.rejects(pipe.generate({ prompt: 'Hi', maxNewTokens: 5 }).then((r) => r), /injected step failure/);
    } finally {
      pipe.model.forward = forward;
    }
    assert.equal((await pipe.generate({ prompt: 'Hi', maxNewTokens: 2 })).tokens.length, 2);
  });

  it('reuses the KV cache for the next turn of a chat, with the reply of a full recompute', async () => {
    const image = join(DIR, 'image.png');
    const turn1 = await pipe.generate({ messages: MESSAGES, images: [image], maxNewTokens: 5 });
    const messages = [
      ...MESSAGES,
      { role: 'assistant', content: [{ type: 'text' as const, text: turn1.text }] },
      { role: 'user', content: [{ type: 'text' as const, text: 'And then?' }] },
    ];
    const reused = await pipe.generate({ messages, images: [image], maxNewTokens: 6 });
    // At least the whole first prompt is kept (the image included), so the image is not encoded again.
    assert.ok(reused.timings.reusedTokens >= turn1.timings.promptTokens, `${reused.timings.reusedTokens} tokens reused`);
    assert.equal(reused.timings.imageEncodeMs, 0);
    const full = await pipe.generate({ messages, images: [image], maxNewTokens: 6, reusePrefix: false });
    assert.equal(full.timings.reusedTokens, 0);
    assert.deepEqual(reused.tokens, full.tokens);
    assert.equal(reused.text, full.text);
  });

  it('fails before any GPU work when prompt + maxNewTokens exceed max_position_embeddings', async () => {
    await assert.rejects(pipe.generate({ prompt: 'Hi', maxNewTokens: 9000 }).then((r) => r), /exceeds max_position_embeddings \(8192\)/);
  });
});

describe('Hugging Face cache resolution (offline)', () => {
  let cache: string;
  before(() => {
    cache = mkdtempSync(join(tmpdir(), 'hfcache-'));
    // The hub layout: blobs hold the files, the snapshot links to them, refs/main names the snapshot.
    const repo = join(cache, 'models--Test--tiny-smolvlm');
    mkdirSync(join(repo, 'blobs'), { recursive: true });
    mkdirSync(join(repo, 'snapshots', 'abc123'), { recursive: true });
    mkdirSync(join(repo, 'refs'));
    writeFileSync(join(repo, 'refs', 'main'), 'abc123');
    for (const f of readdirSync(DIR)) {
      copyFileSync(join(DIR, f), join(repo, 'blobs', `blob-${f}`));
      symlinkSync(join('..', '..', 'blobs', `blob-${f}`), join(repo, 'snapshots', 'abc123', f));
    }
  });
  after(() => rmSync(cache, { recursive: true, force: true }));

  it('finds a snapshot through HF_HUB_CACHE and loads it (links into blobs/ allowed)', async () => {
    const snap = resolveHubId('Test/tiny-smolvlm', 'main', { HF_HUB_CACHE: cache });
    assert.equal(snap.revision, 'abc123');
    const old = process.env.HF_HUB_CACHE;
    process.env.HF_HUB_CACHE = cache;
    try {
      const pipe = await loadModel('Test/tiny-smolvlm', { gpu: await testGpu() });
      const r = await pipe.generate({ prompt: 'Hi', maxNewTokens: 2 });
      assert.equal(r.tokens.length, 2);
      pipe.dispose();
    } finally {
      if (old === undefined) delete process.env.HF_HUB_CACHE;
      else process.env.HF_HUB_CACHE = old;
    }
  });

  it('says where it looked when the id is not cached', () => {
    assert.throws(() => resolveHubId('Nobody/nothing', 'main', { HF_HUB_CACHE: cache, HF_HOME: '/nonexistent-hf-home' }), (e: Error) => {
      assert.match(e.message, /Nobody\/nothing is not in the local Hugging Face cache/);
      assert.ok(e.message.includes(join(cache, 'models--Nobody--nothing')));
      assert.ok(e.message.includes('/nonexistent-hf-home/hub/models--Nobody--nothing'));
      return true;
    });
  });
});

describe('loadModel + generate (LLaVA tiny)', () => {
  const LLAVA = join(FIXTURES, 'llava-tiny');
  it('prepares the reference input_ids (BOS, 36 image tokens) and CLIP pixel_values, and greedy-decodes the reference tokens', async () => {
    const pipe = await loadModel(LLAVA, { gpu: await testGpu() });
    const ref = await openReference(join(LLAVA, 'reference.safetensors'));
    try {
      const req = { messages: [{ role: 'user', content: [{ type: 'image' as const }, { type: 'text' as const, text: 'Hi?' }] }], images: [join(LLAVA, 'image.png')] };
      const p = await pipe.prepare(req);
      assert.deepEqual(p.ids, [...(await ref.i32('input_ids'))]);
      assertClose(await batchPixels(p.images!), (await ref.f32('pixel_values')).data, { atol: 1e-6 }, 'pixel_values');
      p.dispose();
      const want = [...(await ref.i32('greedy_ids'))];
      const r = await pipe.generate({ ...req, maxNewTokens: want.length });
      assert.deepEqual(r.tokens, want);
    } finally {
      await ref.close();
      pipe.dispose();
    }
  });
});
