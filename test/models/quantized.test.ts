// Weights stored compactly, model by model:
//  - AWQ and GPTQ checkpoints, as published, against their own references (computed by third-party code
//    on the formats' own dequantized weights, so the f32 tolerance of the fixture READMEs applies);
//  - 16-bit storage (dtype auto keeps F16 / BF16 as they are): the same greedy tokens as f32 storage on
//    every fixture;
//  - q8 / q4 at load: teacher-forced over every position of the reference prompt and its greedy
//    continuation, top-1 agreement and mean KL divergence against the f32 reference logits. q8 must agree
//    on ≥ 95% of the positions (llama.cpp reports 97.7–98.9% for q8_0 on 7B models); q4 has no gate (random
//    tiny models have small logit gaps) and its figures are reported.
import { describe, it, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { join } from 'node:path';
import { testGpu } from '../helpers.ts';
import { FIXTURES, checkTaps, openReference, referenceImages, type Reference } from '../reference.ts';
import { loadModelDir } from '../../src/models/registry.ts';
import { greedy } from '../../src/generate.ts';
import type { WeightDType } from '../../src/models/storage.ts';
import type { VisionLanguageModel } from '../../src/models/vlm.ts';

/** n greedy tokens with the KV cache (no stop at EOS). */
async function tokens(model: VisionLanguageModel, ids: Int32Array, pixels: Parameters<typeof greedy>[2], n: number): Promise<number[]> {
  const out: number[] = [];
  for await (const s of greedy(model, ids, pixels, { maxNewTokens: n, stopAtEos: false })) out.push(s.token);
  return out;
}

const TAPS = ['vision_embeddings', 'vision_pre_layrnorm', 'layer0_vision', 'vision_hidden', 'projector_out', 'inputs_embeds', 'layer0_text', 'text_final_norm', 'logits'];

for (const name of ['llava-awq-tiny', 'llava-gptq-tiny']) {
  describe(`${name}: the packed checkpoint as published`, () => {
    let model: VisionLanguageModel;
    let ref: Reference;
    before(async () => {
      model = await loadModelDir(await testGpu(), join(FIXTURES, name));
      ref = await openReference(join(FIXTURES, name, 'reference.safetensors'));
    });
    after(async () => {
      model?.dispose();
      await ref?.close();
    });

    it('stores its decoder linears as q4 with the published groups', () => {
      const q = model.store.ckpt.config as { quantization_config: { group_size: number } };
      const qkv = (model as unknown as { text: { layers: { self_attn: { qkv: { weight: { dtype: string; quant?: { group: number } } } } }[] } }).text.layers[0].self_attn.qkv.weight;
      assert.equal(qkv.dtype, 'q4');
      assert.equal(qkv.quant?.group, q.quantization_config.group_size);
    });

    it('matches every intermediate and the logits within 1e-4 (the README: exact f32 dequant, f32 compute)', async () => {
      await checkTaps(model, ref, TAPS, 1e-4, name);
    });

    it('decodes the reference greedy tokens with the KV cache', async () => {
      const ids = await ref.i32('input_ids');
      const want = [...(await ref.i32('greedy_ids'))];
      assert.deepEqual(await tokens(model, ids, await referenceImages(model, ref), want.length), want);
    });
  });
}

/** Greedy tokens of `dir` stored as `dtype`. */
async function greedyOf(dir: string, dtype: WeightDType, n: number): Promise<number[]> {
  const model = await loadModelDir(await testGpu(), dir, { dtype });
  const ref = await openReference(join(dir, 'reference.safetensors'));
  try {
    return await tokens(model, await ref.i32('input_ids'), await referenceImages(model, ref), n);
  } finally {
    model.dispose();
    await ref.close();
  }
}

describe('16-bit storage: the same greedy tokens as f32 storage', () => {
  // Checkpoints stored in 16 bits keep their bytes (dtype auto); F32 checkpoints are narrowed at load.
  const cases: [string, WeightDType][] = [
    ['smolvlm-tiny-f16', 'auto'],
    ['smolvlm-tiny-bf16', 'auto'],
    ['llava-awq-tiny', 'auto'],
    ['smolvlm-tiny', 'f16'],
    ['smolvlm-tiny', 'bf16'],
    ['llava-tiny', 'f16'],
    ['llava-tiny', 'bf16'],
    ['llava-next-tiny', 'f16'],
    ['llava-next-tiny', 'bf16'],
  ];
  for (const [name, dtype] of cases) {
    it(`${name}, dtype ${dtype}`, async () => {
      const dir = join(FIXTURES, name);
      assert.deepEqual(await greedyOf(dir, dtype, 12), await greedyOf(dir, 'f32', 12));
    });
  }
});

/** Softmax of a row, in float64. */
function softmax(row: ArrayLike<number>): Float64Array {
  let m = -Infinity;
  for (let i = 0; i < row.length; i++) m = Math.max(m, row[i]);
  const p = Float64Array.from(row, (v) => Math.exp(v - m));
  const s = p.reduce((a, b) => a + b, 0);
  return p.map((v) => v / s);
}

function argmax(row: ArrayLike<number>): number {
  let best = 0;
  for (let i = 1; i < row.length; i++) if (row[i] > row[best]) best = i;
  return best;
}

/**
 * Teacher-forced agreement of `dir` stored as `dtype` with the reference: the model runs on the prompt and
 * the reference's greedy continuation; its logits at each position are compared with the reference's.
 */
async function agreement(dir: string, dtype: WeightDType): Promise<{ top1: number; kl: number; positions: number }> {
  const model = await loadModelDir(await testGpu(), dir, { dtype });
  const ref = await openReference(join(dir, 'reference.safetensors'));
  try {
    const prompt = await ref.i32('input_ids');
    const cont = await ref.i32('greedy_ids');
    const ids = Int32Array.from([...prompt, ...cont.subarray(0, cont.length - 1)]);
    const logits = (await (await model.forward(ids, await referenceImages(model, ref), { logits: 'all' })).logits()) as Float32Array;
    const promptRef = (await ref.f32('logits')).data;
    const contRef = (await ref.f32('greedy_logits')).data;
    const V = promptRef.length / prompt.length;
    // Row t of the reference: the prompt's logits, then greedy_logits[i] at position prompt.length − 1 + i.
    const refRow = (t: number) => (t < prompt.length ? promptRef.subarray(t * V, (t + 1) * V) : contRef.subarray((t - prompt.length + 1) * V, (t - prompt.length + 2) * V));
    let same = 0;
    let kl = 0;
    for (let t = 0; t < ids.length; t++) {
      const want = refRow(t);
      const got = logits.subarray(t * V, (t + 1) * V);
      if (argmax(got) === argmax(want)) same++;
      const p = softmax(want);
      const q = softmax(got);
      for (let i = 0; i < V; i++) if (p[i] > 0) kl += p[i] * Math.log(p[i] / Math.max(q[i], 1e-300));
    }
    return { top1: same / ids.length, kl: kl / ids.length, positions: ids.length };
  } finally {
    model.dispose();
    await ref.close();
  }
}

describe('q8 and q4 at load: teacher-forced agreement with the f32 reference', () => {
  for (const name of ['smolvlm-tiny', 'llava-tiny', 'llava-next-tiny']) {
    for (const dtype of ['q8', 'q4'] as const) {
      it(`${name} ${dtype}${dtype === 'q8' ? ': top-1 ≥ 95%' : ' (reported, no gate)'}`, async (t) => {
        const a = await agreement(join(FIXTURES, name), dtype);
        t.diagnostic(`${name} ${dtype}: top-1 ${(a.top1 * 100).toFixed(1)}% over ${a.positions} positions, mean KL ${a.kl.toExponential(2)} nats`);
        assert.ok(Number.isFinite(a.kl) && a.kl >= 0, `KL ${a.kl}`);
        if (dtype === 'q8') assert.ok(a.top1 >= 0.95, `${name} q8: top-1 agreement ${(a.top1 * 100).toFixed(1)}% < 95%`);
      });
    }
  }
});
