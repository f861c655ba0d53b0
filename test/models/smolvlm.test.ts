// SmolVLM end to end against the nanoVLM reference fixtures (f32, f16, bf16 weights): every
// intermediate the reference file holds, logits at every position, and the 16 greedy tokens.
import { describe, it, after, before } from 'node:test';
import assert from 'node:assert/strict';
import { join } from 'node:path';
import { assertClose, testGpu } from '../helpers.ts';
import { FIXTURES, checkTaps, openReference, type Reference } from '../reference.ts';
import { SmolVLM } from '../../src/models/smolvlm.ts';

// Fixture README §9: the runtime computes in f32 with weights upcast exactly, so every tensor must be
// within 1e-4 of the reference (about 50× the float64 noise floor) whatever the weight dtype.
const TOL = 1e-4;
const TAPS = [
  'vision_embeddings',
  'layer0_vision_attn',
  'layer0_vision',
  'layer1_vision',
  'vision_hidden',
  'projector_out',
  'inputs_embeds',
  'layer0_text_attn',
  'layer0_text',
  'layer1_text',
  'text_final_norm',
  'logits',
];

// Each fixture with the kernel set this adapter gets; the f32 one also with the other set (the GPU
// kernels on lavapipe, or the SIMD-on-CPU ones on a GPU), so that both model paths are checked anywhere.
const RUNS = [
  { name: 'smolvlm-tiny', kernels: undefined },
  { name: 'smolvlm-tiny-f16', kernels: undefined },
  { name: 'smolvlm-tiny-bf16', kernels: undefined },
  { name: 'smolvlm-tiny', kernels: 'other' },
] as const;

for (const run of RUNS) {
  const name = run.name;
  describe(`${name}${run.kernels ? ', the other kernel set' : ''}`, () => {
    let model: SmolVLM;
    let ref: Reference;
    before(async () => {
      const gpu = await testGpu();
      const kernels = run.kernels ? (gpu.tuning.target === 'cpu' ? 'gpu' : 'cpu') : undefined;
      model = await SmolVLM.load(gpu, join(FIXTURES, name), { kernels });
      if (kernels && model.tuning.target !== kernels) throw new Error(`expected the ${kernels} kernels`);
      ref = await openReference(join(FIXTURES, name, 'reference.safetensors'));
    });
    after(async () => {
      model?.dispose();
      await ref?.close();
    });

    it('matches every intermediate and the logits at every position', async () => {
      console.log(await checkTaps(model, ref, TAPS, TOL, name));
    });

    it('generates the 16 greedy tokens with the KV cache, with matching logits', async () => {
      const ids = await ref.i32('input_ids');
      const pixels = (await ref.f32('pixel_values')).data;
      const want = await ref.i32('greedy_ids');
      const wantLogits = await ref.f32('greedy_logits');
      const V = model.textConfig.vocab_size;
      const { greedy } = await import('../../src/generate.ts');
      const got: number[] = [];
      let maxAbs = 0;
      for await (const step of greedy(model, ids, pixels, { maxNewTokens: want.length, stopAtEos: false, withLogits: true })) {
        const j = got.length;
        got.push(step.token);
        const r = assertClose(step.logits!, wantLogits.data.subarray(j * V, (j + 1) * V), { atol: TOL }, `${name} greedy_logits row ${j}`);
        maxAbs = Math.max(maxAbs, r.maxAbs);
      }
      assert.deepEqual(got, [...want]);
      console.log(`${name} greedy_ids equal; greedy_logits max |Δ| ${maxAbs.toExponential(2)}`);
    });
  });
}
