// Bad checkpoints, configs and prompts end in clear errors before any GPU work: every missing tensor
// listed at once, shape mismatches with both shapes, unsupported architectures named, placeholder counts
// checked, and over-long requests refused.
import { describe, it, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { cpSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { testGpu } from '../helpers.ts';
import { FIXTURES } from '../reference.ts';
import { SafetensorsFile } from '../../src/io/safetensors.ts';
import { writeSafetensors } from '../../src/io/safetensors-write.ts';
import { loadModelDir } from '../../src/models/registry.ts';
import { SmolVLM } from '../../src/models/smolvlm.ts';
import { greedy } from '../../src/generate.ts';
import { readJsonObject } from '../../src/io/model-dir.ts';

const SRC = join(FIXTURES, 'smolvlm-tiny');
let tmp: string;
before(() => {
  tmp = mkdtempSync(join(tmpdir(), 'bad-model-'));
});
after(() => rmSync(tmp, { recursive: true, force: true }));

/** A copy of the tiny fixture whose tensors pass through `edit` (return null to drop one). */
async function variant(name: string, edit: (n: string, shape: number[], data: Uint8Array) => { shape: number[]; data: Uint8Array } | null) {
  const dir = join(tmp, name);
  cpSync(SRC, dir, { recursive: true });
  const f = await SafetensorsFile.open(join(SRC, 'model.safetensors'));
  const out = [];
  for (const [n, info] of f.tensors) {
    const r = edit(n, info.shape, await f.read(n));
    if (r) out.push({ name: n, dtype: info.dtype, shape: r.shape, data: r.data });
  }
  await f.close();
  writeSafetensors(join(dir, 'model.safetensors'), out, { format: 'pt' });
  return dir;
}

describe('bad checkpoints and configs', () => {
  it('lists every missing tensor at once', async () => {
    const dir = await variant('missing', (n, shape, data) => (/layers\.1\.mlp\.fc2|lm_head|text_model\.norm/.test(n) ? null : { shape, data }));
    await assert.rejects(SmolVLM.load(await testGpu(), dir), (e: Error) => {
      assert.match(e.message, /4 problem\(s\)/);
      for (const t of [
        'model.vision_model.encoder.layers.1.mlp.fc2.weight [64, 128]',
        'model.vision_model.encoder.layers.1.mlp.fc2.bias [64]',
        'lm_head.weight [320, 64]',
        'model.text_model.norm.weight [64]',
      ]) {
        assert.ok(e.message.includes(`missing tensor ${t}`), `${t} in: ${e.message}`);
      }
      return true;
    });
  });

  it('names a tensor whose shape differs, with both shapes', async () => {
    const dir = await variant('shape', (n, shape, data) =>
      n === 'model.connector.modality_projection.proj.weight' ? { shape: [shape[1], shape[0]], data } : { shape, data },
    );
    await assert.rejects(
      SmolVLM.load(await testGpu(), dir),
      /tensor model\.connector\.modality_projection\.proj\.weight in .*model\.safetensors has shape \[256, 64\], expected \[64, 256\]/,
    );
  });

  it('names an unsupported model_type and the supported ones', async () => {
    const dir = join(tmp, 'qwen');
    cpSync(SRC, dir, { recursive: true });
    const cfg = await readJsonObject(join(SRC, 'config.json'));
    writeFileSync(join(dir, 'config.json'), JSON.stringify({ ...cfg, model_type: 'qwen2_vl' }));
    await assert.rejects(loadModelDir(await testGpu(), dir), /model_type "qwen2_vl" is not supported; supported: idefics3 .*, llava/);
  });

  it('rejects an unsupported config value with the file and key', async () => {
    const dir = join(tmp, 'rope');
    cpSync(SRC, dir, { recursive: true });
    const cfg = (await readJsonObject(join(SRC, 'config.json'))) as { text_config: Record<string, unknown> };
    cfg.text_config.rope_scaling = { type: 'linear', factor: 2 };
    writeFileSync(join(dir, 'config.json'), JSON.stringify(cfg));
    await assert.rejects(SmolVLM.load(await testGpu(), dir), /config\.json text_config: rope_scaling .* is not supported/);
  });
});

describe('bad prompts', () => {
  let model: SmolVLM;
  before(async () => {
    model = await SmolVLM.load(await testGpu(), SRC);
  });
  after(() => model?.dispose());

  const pixels = new Float32Array(3 * 64 * 64);
  it('catches a placeholder count that does not match the image features', async () => {
    const ids = [257, ...Array(15).fill(262), 10];
    await assert.rejects(model.forward(ids, pixels), /the prompt has 15 image tokens \(id 262\) but 1 image tile\(s\) give 16 features/);
  });

  it('catches image tokens without an image, and token ids outside the vocabulary', async () => {
    await assert.rejects(model.forward([257, 262, 10], null), /has 1 image tokens \(id 262\) but 0 image tile\(s\) give 0 features/);
    await assert.rejects(model.forward([257, 400], null), /token 1: id 400 is outside the vocabulary \[0, 320\)/);
  });

  it('refuses a prompt + maxNewTokens beyond max_position_embeddings before any GPU work', async () => {
    const before = model.gpu.pool.liveCount;
    const gen = greedy(model, [257, 10], null, { maxNewTokens: 8191 });
    await assert.rejects(gen.next(), /prompt \(2 tokens\) \+ maxNewTokens \(8191\) exceeds max_position_embeddings \(8192\)/);
    assert.equal(model.gpu.pool.liveCount, before);
  });
});
