// `webgpu-vlm serve`'s API through the official openai client, on the tiny SmolVLM fixture: greedy replies
// equal generate()'s and the reference's, streamed and not, with an image; usage counts; stop sequences; the
// model list, health and metrics; each 4xx in OpenAI's error shape; and prefix reuse on a second turn.
import { describe, it, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtempSync, rmSync, symlinkSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { pathToFileURL } from 'node:url';
import type OpenAI from 'openai';
import { ChatServer } from '../../src/server/server.ts';
import { openReference } from '../reference.ts';
import { DIR, IMAGE, IMAGE_URI, MODEL, client, imageMessage, raw, rejectsWith } from './helpers.ts';

// Fixture README §5: the reference's prompt, whose 16 greedy tokens are stored.
const REFERENCE_MESSAGES: OpenAI.ChatCompletionMessageParam[] = [
  {
    role: 'user',
    content: [
      { type: 'text', text: 'Look at 7:' },
      { type: 'image_url', image_url: { url: IMAGE_URI } },
      { type: 'text', text: ' What is in it?' },
    ],
  },
];

describe('serve: OpenAI chat completions (SmolVLM tiny)', () => {
  let server: ChatServer;
  let api: OpenAI;
  let outside: string;
  before(async () => {
    outside = mkdtempSync(join(tmpdir(), 'serve-outside-'));
    server = await ChatServer.start({ model: DIR, port: 0, allowFiles: DIR });
    api = client(server.url);
  });
  after(async () => {
    await server?.close();
    rmSync(outside, { recursive: true, force: true });
  });

  it('answers a greedy request with an image with the reference tokens, in chat.completion shape', async () => {
    const ref = await openReference(join(DIR, 'reference.safetensors'));
    const want = [...(await ref.i32('greedy_ids'))];
    await ref.close();
    const r = await api.chat.completions.create({ model: MODEL, messages: REFERENCE_MESSAGES, max_tokens: want.length, temperature: 0 });
    assert.match(r.id, /^chatcmpl-/);
    assert.equal(r.object, 'chat.completion');
    assert.equal(r.model, MODEL);
    assert.ok(Number.isInteger(r.created) && Math.abs(r.created - Date.now() / 1000) < 60);
    assert.equal(r.choices.length, 1);
    assert.equal(r.choices[0].index, 0);
    assert.equal(r.choices[0].message.role, 'assistant');
    assert.equal(r.choices[0].message.content, server.pipe!.tokenizer.decode(want, true));
    assert.equal(r.choices[0].finish_reason, 'length');
    assert.equal(r.usage?.completion_tokens, want.length);
    assert.equal(r.usage?.total_tokens, r.usage!.prompt_tokens + want.length);
  });

  it("gives generate()'s greedy reply, and usage counts its tokens", async () => {
    const r = await api.chat.completions.create({ model: MODEL, messages: [imageMessage('Describe it.')], max_tokens: 12, temperature: 0 });
    const local = await server.pipe!.generate({
      messages: [{ role: 'user', content: [{ type: 'image' }, { type: 'text', text: 'Describe it.' }] }],
      images: [IMAGE],
      maxNewTokens: 12,
      temperature: 0,
    });
    assert.equal(r.choices[0].message.content, local.text);
    assert.equal(r.usage?.prompt_tokens, local.timings.promptTokens);
    assert.equal(r.usage?.completion_tokens, local.tokens.length);
    assert.equal(r.choices[0].finish_reason, local.finishReason === 'length' ? 'length' : 'stop');
  });

  it('streams the same reply: the role first, content deltas, the finish reason, then usage and [DONE]', async () => {
    const whole = await api.chat.completions.create({ model: MODEL, messages: [imageMessage()], max_tokens: 10, temperature: 0 });
    const stream = await api.chat.completions.create({
      model: MODEL,
      messages: [imageMessage()],
      max_tokens: 10,
      temperature: 0,
      stream: true,
      stream_options: { include_usage: true },
    });
    const chunks: OpenAI.ChatCompletionChunk[] = [];
    for await (const c of stream) chunks.push(c);
    assert.ok(chunks.every((c) => c.object === 'chat.completion.chunk' && c.model === MODEL && c.id === chunks[0].id));
    assert.equal(chunks[0].choices[0].delta.role, 'assistant');
    const usage = chunks.at(-1)!;
    assert.deepEqual(usage.choices, []);
    // The same counts; cached_tokens differs, as the second of two equal prompts finds the first in the KV cache.
    const counts = (u?: OpenAI.CompletionUsage | null) => [u?.prompt_tokens, u?.completion_tokens, u?.total_tokens];
    assert.deepEqual(counts(usage.usage), counts(whole.usage));
    assert.equal(typeof usage.usage?.prompt_tokens_details?.cached_tokens, 'number');
    const last = chunks.at(-2)!;
    assert.equal(last.choices[0].finish_reason, 'length');
    assert.deepEqual(last.choices[0].delta, {});
    const content = chunks.slice(1, -2);
    assert.ok(content.length > 0 && content.every((c) => c.choices[0].finish_reason === null && c.usage === null && typeof c.choices[0].delta.content === 'string'));
    assert.equal(content.map((c) => c.choices[0].delta.content).join(''), whole.choices[0].message.content);
  });

  it('streams without a usage chunk unless asked', async () => {
    const stream = await api.chat.completions.create({ model: MODEL, messages: [{ role: 'user', content: 'Hi' }], max_tokens: 3, temperature: 0, stream: true });
    const chunks: OpenAI.ChatCompletionChunk[] = [];
    for await (const c of stream) chunks.push(c);
    assert.equal(chunks.at(-1)!.choices[0].finish_reason, 'length');
    assert.ok(chunks.every((c) => !('usage' in c)));
  });

  it('ends at a stop sequence, leaving it out, with finish_reason stop (a string, and in a list)', async () => {
    const messages: OpenAI.ChatCompletionMessageParam[] = [{ role: 'user', content: 'Hi' }];
    const free = (await api.chat.completions.create({ model: MODEL, messages, max_tokens: 40, temperature: 0 })).choices[0].message.content!;
    const at = [...free.matchAll(/[ -~]{2}/g)].find((m) => m.index! >= 4);
    assert.ok(at, `no two printable characters past the fourth in ${JSON.stringify(free)}`);
    const stop = at[0];
    for (const s of [stop, ['\u0000never', stop]]) {
      const r = await api.chat.completions.create({ model: MODEL, messages, max_tokens: 40, temperature: 0, stop: s });
      assert.equal(r.choices[0].message.content, free.slice(0, free.indexOf(stop)));
      assert.equal(r.choices[0].finish_reason, 'stop');
    }
  });

  it('samples reproducibly with a seed (temperature, top_p, top_k)', async () => {
    const ask = () => api.chat.completions.create({ model: MODEL, messages: [{ role: 'user', content: 'Hi' }], max_tokens: 8, temperature: 0.9, top_p: 0.95, seed: 11, top_k: 40 } as OpenAI.ChatCompletionCreateParamsNonStreaming);
    assert.equal((await ask()).choices[0].message.content, (await ask()).choices[0].message.content);
  });

  it('reads a file:// image inside --allow-files, and refuses one outside it', async () => {
    const url = pathToFileURL(IMAGE).href;
    const r = await api.chat.completions.create({ model: MODEL, messages: [{ role: 'user', content: [{ type: 'image_url', image_url: { url } }] }], max_tokens: 4, temperature: 0 });
    const viaUri = await api.chat.completions.create({ model: MODEL, messages: [{ role: 'user', content: [{ type: 'image_url', image_url: { url: IMAGE_URI } }] }], max_tokens: 4, temperature: 0 });
    assert.equal(r.choices[0].message.content, viaUri.choices[0].message.content);
    // A symlink inside the directory does not lead out of it; nor does a path outside.
    const link = join(DIR, 'escape.tmp.png');
    writeFileSync(join(outside, 'x.png'), Buffer.from(IMAGE_URI.split(',')[1], 'base64'));
    symlinkSync(join(outside, 'x.png'), link);
    try {
      for (const p of [link, join(outside, 'x.png'), join(DIR, '..', 'llava-tiny', 'image.png')]) {
        const m = { role: 'user' as const, content: [{ type: 'image_url' as const, image_url: { url: pathToFileURL(p).href } }] };
        await rejectsWith(api.chat.completions.create({ model: MODEL, messages: [m] }), 400, { param: 'messages[0].content[0].image_url.url', code: 'invalid_image_url' });
      }
    } finally {
      rmSync(link);
    }
  });

  it('lists the model, reports health and Prometheus metrics', async () => {
    const models = await api.models.list();
    assert.deepEqual(
      models.data.map((m) => [m.id, m.object, m.owned_by]),
      [[MODEL, 'model', 'webgpu-vlm']],
    );
    assert.equal((await api.models.retrieve(MODEL)).id, MODEL);
    await rejectsWith(api.models.retrieve('gpt-4o'), 404, { code: 'model_not_found' });
    const health = await raw(server.url.replace('/v1', '/health'));
    assert.equal(health.status, 200);
    assert.equal(health.body.status, 'ok');
    assert.equal(health.body.model, MODEL);
    const metrics = await raw(server.url.replace('/v1', '/metrics'));
    assert.equal(metrics.status, 200);
    assert.match(metrics.headers.get('content-type')!, /^text\/plain; version=0\.0\.4/);
    const text = metrics.body as string;
    assert.match(text, /^webgpu_vlm_requests_total\{route="\/v1\/chat\/completions",status="200"\} [1-9]\d*$/m);
    assert.match(text, /^webgpu_vlm_requests_total\{route="\/v1\/models\/\{id\}",status="404"\} 1$/m);
    assert.match(text, /^webgpu_vlm_prompt_tokens_total [1-9]\d*$/m);
    assert.match(text, /^webgpu_vlm_completion_tokens_total [1-9]\d*$/m);
    assert.match(text, /^webgpu_vlm_queue_depth 0$/m);
    assert.match(text, /^webgpu_vlm_time_to_first_token_seconds_bucket\{le="\+Inf"\} [1-9]\d*$/m);
    assert.match(text, /^webgpu_vlm_decode_tokens_per_second_count [1-9]\d*$/m);
  });

  describe('refuses bad requests with 4xx in OpenAI error shape', () => {
    const user = (content: OpenAI.ChatCompletionUserMessageParam['content']) => [{ role: 'user' as const, content }];
    const image = (url: string) => user([{ type: 'image_url', image_url: { url } }]);

    it('400: malformed JSON, a body that is not an object', async () => {
      for (const body of ['{"model": "smolvlm-tiny", "messages": [', '[1, 2]']) {
        const r = await raw(`${server.url}/chat/completions`, { method: 'POST', body, headers: { 'content-type': 'application/json' } });
        assert.equal(r.status, 400);
        assert.equal(r.body.error.type, 'invalid_request_error');
      }
    });

    it('400: fields of the wrong type or out of range, each named in param', async () => {
      const cases: [Record<string, unknown>, string][] = [
        [{ temperature: 'hot' }, 'temperature'],
        [{ temperature: 3 }, 'temperature'],
        [{ max_tokens: 0 }, 'max_tokens'],
        [{ max_completion_tokens: 2.5 }, 'max_completion_tokens'],
        [{ top_p: 1.5 }, 'top_p'],
        [{ stop: [1] }, 'stop'],
        [{ stop: '' }, 'stop'],
        [{ stream: 'yes' }, 'stream'],
        [{ n: 2 }, 'n'],
        [{ tools: [{ type: 'function', function: { name: 'f' } }] }, 'tools'],
        [{ messages: [] }, 'messages'],
        [{ messages: [{ role: 'tool', content: 'x' }] }, 'messages[0].role'],
        [{ messages: [{ role: 'user', content: [{ type: 'input_audio' }] }] }, 'messages[0].content[0].type'],
        [{ messages: [{ role: 'user', content: 'an <image> in words' }] }, 'messages[0].content'],
      ];
      for (const [fields, param] of cases) {
        const body = { model: MODEL, messages: [{ role: 'user', content: 'Hi' }], ...fields } as unknown as OpenAI.ChatCompletionCreateParamsNonStreaming;
        await rejectsWith(api.chat.completions.create(body), 400, { param });
      }
    });

    it('400: a bad data: URI, bad base64, an undecodable image, an http(s) URL', async () => {
      const param = 'messages[0].content[0].image_url.url';
      await rejectsWith(api.chat.completions.create({ model: MODEL, messages: image('data:text/plain;base64,aGk=') }), 400, { param, code: 'invalid_image_url' });
      await rejectsWith(api.chat.completions.create({ model: MODEL, messages: image('data:image/png;base64,iVBOR!!w0KGgo=') }), 400, { param, code: 'invalid_base64' });
      await rejectsWith(api.chat.completions.create({ model: MODEL, messages: image(`data:image/png;base64,${Buffer.from('not an image at all').toString('base64')}`) }), 400, {
        param,
        code: 'invalid_image',
      });
      const e = await rejectsWith(api.chat.completions.create({ model: MODEL, messages: image('https://example.com/cat.png') }), 400, { param, code: 'invalid_image_url' });
      assert.match(e.message, /fetches nothing/);
    });

    it('400: a prompt longer than the context', async () => {
      const e = await rejectsWith(api.chat.completions.create({ model: MODEL, messages: [{ role: 'user', content: 'word '.repeat(3000) }], max_tokens: 4 }), 400, {
        code: 'context_length_exceeded',
      });
      assert.match(e.message, /maximum context length is 8192 tokens/);
    });

    it('404: an unknown model, an unknown route; 405: a wrong method', async () => {
      await rejectsWith(api.chat.completions.create({ model: 'gpt-4o', messages: [{ role: 'user', content: 'Hi' }] }), 404, { param: 'model', code: 'model_not_found' });
      const r = await raw(`${server.url}/completions`, { method: 'POST', body: '{}' });
      assert.equal(r.status, 404);
      assert.equal(r.body.error.code, 'not_found');
      const m = await raw(`${server.url}/chat/completions`);
      assert.equal(m.status, 405);
      assert.equal(m.headers.get('allow'), 'POST');
    });

    it('413: a body over the limit (20 MiB by default)', async () => {
      const big = `data:image/png;base64,${'A'.repeat(21 * 2 ** 20)}`;
      await rejectsWith(api.chat.completions.create({ model: MODEL, messages: image(big) }), 413, { code: 'request_too_large' });
      // The server still answers on a fresh connection.
      const r = await api.chat.completions.create({ model: MODEL, messages: [{ role: 'user', content: 'Hi' }], max_tokens: 2 });
      assert.equal(r.choices.length, 1);
    });
  });

  it('reuses the KV prefix on a second turn, with the tokens of a full recompute', async () => {
    const first: OpenAI.ChatCompletionMessageParam[] = [imageMessage('Look.')];
    const one = await api.chat.completions.create({ model: MODEL, messages: first, max_tokens: 6, temperature: 0 });
    const second: OpenAI.ChatCompletionMessageParam[] = [...first, { role: 'assistant', content: one.choices[0].message.content }, { role: 'user', content: 'And then?' }];
    const reused = await api.chat.completions.create({ model: MODEL, messages: second, max_tokens: 8, temperature: 0 });
    const full = await api.chat.completions.create({ model: MODEL, messages: second, max_tokens: 8, temperature: 0, reuse_prefix: false } as OpenAI.ChatCompletionCreateParamsNonStreaming);
    assert.equal(reused.choices[0].message.content, full.choices[0].message.content);
    assert.deepEqual(
      [reused.usage?.prompt_tokens, reused.usage?.completion_tokens],
      [full.usage?.prompt_tokens, full.usage?.completion_tokens],
    );
    const cached = reused.usage?.prompt_tokens_details?.cached_tokens ?? 0;
    // Most of the first turn's prompt (the image included) is the second's prefix.
    assert.ok(cached > one.usage!.prompt_tokens / 2 && cached < reused.usage!.prompt_tokens, `${cached} cached of ${reused.usage!.prompt_tokens}; the first turn's prompt had ${one.usage!.prompt_tokens}`);
    assert.equal(full.usage?.prompt_tokens_details?.cached_tokens, 0);
  });
});
