// The public API from an image and a question to streamed text, on the tiny SmolVLM fixture: the
// prepared ids and pixels equal the reference's inputs, greedy generation reproduces the reference
// tokens, streaming yields the same text as the awaited result, and AbortSignal and concurrent calls
// behave as documented. Also the offline Hugging Face cache resolution.
import { describe, it, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { mkdirSync, mkdtempSync, readdirSync, rmSync, symlinkSync, writeFileSync, copyFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { FIXTURES, openReference } from '../reference.ts';
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
      assert.deepEqual(p.ids, [...(await ref.i32('input_ids'))]);
      assertClose(p.pixels!, (await ref.f32('pixel_values')).data, { atol: 1e-6 }, 'pixel_values');
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

  it('cancels through an AbortSignal', async () => {
    const ctl = new AbortController();
    const gen = pipe.generate({ prompt: 'Hi', maxNewTokens: 50, signal: ctl.signal });
    let n = 0;
    await assert.rejects(
      (async () => {
        for await (const _ of gen) if (++n === 2) ctl.abort();
      })(),
      { name: 'AbortError' },
    );
    // Generation runs one step ahead of a slow consumer, so at most one more chunk arrives after abort().
    assert.ok(n === 2 || n === 3, `${n} chunks after aborting at the second`);
  });

  it('rejects a second generate() while one is running, and works again after', async () => {
    const first = pipe.generate({ prompt: 'Hi', maxNewTokens: 4 });
    const second = pipe.generate({ prompt: 'Hi', maxNewTokens: 4 });
    const results = await Promise.allSettled([first.then((r) => r), second.then((r) => r)]);
    assert.equal(results.filter((r) => r.status === 'fulfilled').length, 1);
    const rejected = results.find((r) => r.status === 'rejected') as PromiseRejectedResult;
    assert.match(String(rejected.reason), /already generating/);
    const again = await pipe.generate({ prompt: 'Hi', maxNewTokens: 2 });
    assert.equal(again.tokens.length, 2);
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
      assertClose(p.pixels!, (await ref.f32('pixel_values')).data, { atol: 1e-6 }, 'pixel_values');
      const want = [...(await ref.i32('greedy_ids'))];
      const r = await pipe.generate({ ...req, maxNewTokens: want.length });
      assert.deepEqual(r.tokens, want);
    } finally {
      await ref.close();
      pipe.dispose();
    }
  });
});
