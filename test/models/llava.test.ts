// LLaVA-1.5 against the llava-tiny reference (openai/CLIP vision tower + llama2.c decoder): every
// intermediate, logits at every position and the 12 greedy tokens, with the current and the legacy
// llava-hf checkpoint layouts.
import { describe, it, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { copyFileSync, mkdtempSync, readdirSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { assertClose, testGpu } from '../helpers.ts';
import { FIXTURES, checkTaps, openReference, type Reference } from '../reference.ts';
import { Llava } from '../../src/models/llava.ts';
import { greedy } from '../../src/generate.ts';

// The fixture README's tolerance for f32 weights and f32 compute.
const TOL = 1e-4;
const TAPS = ['vision_embeddings', 'vision_pre_layrnorm', 'layer0_vision', 'vision_hidden', 'projector_out', 'inputs_embeds', 'layer0_text', 'text_final_norm', 'logits'];
const SRC = join(FIXTURES, 'llava-tiny');

let legacyDir: string;
before(() => {
  // The legacy file as a model directory of its own: same config and tokenizer, legacy tensor names.
  legacyDir = mkdtempSync(join(tmpdir(), 'llava-legacy-'));
  for (const f of readdirSync(SRC)) if (!f.startsWith('model')) copyFileSync(join(SRC, f), join(legacyDir, f));
  copyFileSync(join(SRC, 'model-legacy.safetensors'), join(legacyDir, 'model.safetensors'));
});
after(() => rmSync(legacyDir, { recursive: true, force: true }));

// The legacy layout also runs with the other kernel set than this adapter's (see smolvlm.test.ts).
for (const [layout, other] of [['current', false], ['legacy', false], ['legacy', true]] as const) {
  describe(`llava-tiny, ${layout} layout${other ? ', the other kernel set' : ''}`, () => {
    let model: Llava;
    let ref: Reference;
    before(async () => {
      const gpu = await testGpu();
      const kernels = other ? (gpu.tuning.target === 'cpu' ? 'gpu' : 'cpu') : undefined;
      model = await Llava.load(gpu, layout === 'current' ? SRC : legacyDir, { kernels });
      ref = await openReference(join(SRC, 'reference.safetensors'));
    });
    after(async () => {
      model?.dispose();
      await ref?.close();
    });

    it('detects the layout from the tensor names', () => {
      assert.equal(model.layout, layout);
    });

    it('matches every intermediate and the logits at every position', async () => {
      console.log(await checkTaps(model, ref, TAPS, TOL, `llava-tiny (${layout})`));
    });

    it('generates the 12 greedy tokens with the KV cache', async () => {
      const ids = await ref.i32('input_ids');
      const pixels = (await ref.f32('pixel_values')).data;
      const want = await ref.i32('greedy_ids');
      const wantLogits = (await ref.f32('greedy_logits')).data;
      const V = model.textConfig.vocab_size;
      const got: number[] = [];
      for await (const s of greedy(model, ids, pixels, { maxNewTokens: want.length, stopAtEos: false, withLogits: true })) {
        assertClose(s.logits!, wantLogits.subarray(got.length * V, (got.length + 1) * V), { atol: TOL }, `greedy_logits row ${got.length}`);
        got.push(s.token);
      }
      assert.deepEqual(got, [...want]);
    });
  });
}
