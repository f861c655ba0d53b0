// Any valid Idefics3-layout config must work: random checkpoints with other widths, head counts, GQA
// ratios, patch/image sizes, scale factors, derived head_dim and tied embeddings, checked against a
// float64 CPU forward pass composed from the kernel references (test/ops/reference.ts). The third-party
// fixtures anchor the semantics; this checks that no dimension is assumed.
import { describe, it, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { assertClose, testGpu, Rng } from '../helpers.ts';
import { SmolVLM } from '../../src/models/smolvlm.ts';
import { parseIdefics3Config, type Idefics3Config } from '../../src/models/config.ts';
import { writeSafetensors } from '../../src/io/safetensors-write.ts';
import { idefics3Tensors } from '../../bench/make-checkpoint.ts';
import { ropeInvFreq } from '../../src/ops/rope.ts';
import { ACT } from '../../src/ops/elementwise.ts';
import { linear64, layerNorm64, rmsNorm64, attention64, rope64, act64 } from '../ops/reference.ts';

const f32 = (a: ArrayLike<number>) => Float32Array.from(a);

/** The Idefics3 forward pass in float64 (rounded to f32 between ops, as the inputs of the references). */
function forward64(c: Idefics3Config, W: Map<string, Float64Array>, pixels: Float32Array, ids: number[]): Float64Array {
  const w = (n: string) => {
    const v = W.get(n);
    if (!v) throw new Error(`reference: no weight ${n}`);
    return v;
  };
  const v = c.vision_config;
  const t = c.text_config;
  const [D, P, S, C] = [v.hidden_size, v.patch_size, v.image_size, v.num_channels];
  const gw = S / P;
  const N = gw * gw;
  const K = C * P * P;
  const cols = new Float32Array(N * K);
  for (let p = 0; p < N; p++)
    for (let ch = 0; ch < C; ch++)
      for (let ky = 0; ky < P; ky++)
        for (let kx = 0; kx < P; kx++)
          cols[p * K + (ch * P + ky) * P + kx] = pixels[(ch * S + Math.floor(p / gw) * P + ky) * S + (p % gw) * P + kx];
  const vm = 'model.vision_model';
  let x = linear64(cols, w(`${vm}.embeddings.patch_embedding.weight`), N, D, K, w(`${vm}.embeddings.patch_embedding.bias`));
  const pos = w(`${vm}.embeddings.position_embedding.weight`);
  x = x.map((a, i) => a + pos[i]);
  const vh = v.num_attention_heads;
  for (let l = 0; l < v.num_hidden_layers; l++) {
    const p = `${vm}.encoder.layers.${l}`;
    const h = f32(layerNorm64(f32(x), w(`${p}.layer_norm1.weight`), w(`${p}.layer_norm1.bias`), N, D, v.layer_norm_eps));
    const proj = (n: string, inp: Float32Array) => f32(linear64(inp, w(`${p}.self_attn.${n}.weight`), N, D, D, w(`${p}.self_attn.${n}.bias`)));
    const o = attention64(proj('q_proj', h), proj('k_proj', h), proj('v_proj', h), N, vh, vh, D / vh, () => N - 1);
    x = linear64(f32(o), w(`${p}.self_attn.out_proj.weight`), N, D, D, w(`${p}.self_attn.out_proj.bias`), 0, f32(x));
    const h2 = f32(layerNorm64(f32(x), w(`${p}.layer_norm2.weight`), w(`${p}.layer_norm2.bias`), N, D, v.layer_norm_eps));
    const I = v.intermediate_size;
    const m = linear64(h2, w(`${p}.mlp.fc1.weight`), N, I, D, w(`${p}.mlp.fc1.bias`), ACT.gelu_tanh);
    x = linear64(f32(m), w(`${p}.mlp.fc2.weight`), N, D, I, w(`${p}.mlp.fc2.bias`), 0, f32(x));
  }
  const vis = layerNorm64(f32(x), w(`${vm}.post_layernorm.weight`), w(`${vm}.post_layernorm.bias`), N, D, v.layer_norm_eps);
  // Pixel shuffle (Idefics3 ordering: row offset, column offset, channel) then the projection.
  const s = c.scale_factor;
  const M = N / (s * s);
  const Ks = D * s * s;
  const shuf = new Float32Array(M * Ks);
  const bw = gw / s;
  for (let r = 0; r < M; r++)
    for (let i = 0; i < s; i++)
      for (let j = 0; j < s; j++)
        for (let ch = 0; ch < D; ch++) shuf[r * Ks + (i * s + j) * D + ch] = vis[((Math.floor(r / bw) * s + i) * gw + (r % bw) * s + j) * D + ch];
  const H = t.hidden_size;
  const feats = linear64(shuf, w('model.connector.modality_projection.proj.weight'), M, H, Ks);
  // Text model.
  const tm = 'model.text_model';
  const T = ids.length;
  const emb = w(`${tm}.embed_tokens.weight`);
  let k = 0;
  let hs: Float64Array = new Float64Array(T * H);
  for (let i = 0; i < T; i++) {
    const src = ids[i] === c.image_token_id ? feats.subarray(k++ * H, k * H) : emb.subarray(ids[i] * H, (ids[i] + 1) * H);
    hs.set(src, i * H);
  }
  const [nh, nkv, hd, I] = [t.num_attention_heads, t.num_key_value_heads, t.head_dim, t.intermediate_size];
  const inv = ropeInvFreq(t.rope_theta, hd);
  for (let l = 0; l < t.num_hidden_layers; l++) {
    const p = `${tm}.layers.${l}`;
    const h = f32(rmsNorm64(f32(hs), w(`${p}.input_layernorm.weight`), T, H, t.rms_norm_eps));
    const q = rope64(f32(linear64(h, w(`${p}.self_attn.q_proj.weight`), T, nh * hd, H)), inv, T, nh, hd, 0).y;
    const kk = rope64(f32(linear64(h, w(`${p}.self_attn.k_proj.weight`), T, nkv * hd, H)), inv, T, nkv, hd, 0).y;
    const vv = linear64(h, w(`${p}.self_attn.v_proj.weight`), T, nkv * hd, H);
    const o = attention64(f32(q), f32(kk), f32(vv), T, nh, nkv, hd, (i) => i);
    hs = linear64(f32(o), w(`${p}.self_attn.o_proj.weight`), T, H, nh * hd, undefined, 0, f32(hs));
    const h2 = f32(rmsNorm64(f32(hs), w(`${p}.post_attention_layernorm.weight`), T, H, t.rms_norm_eps));
    const g = linear64(h2, w(`${p}.mlp.gate_proj.weight`), T, I, H);
    const u = linear64(h2, w(`${p}.mlp.up_proj.weight`), T, I, H);
    const gu = f32(g.map((a, i) => act64(a, ACT.silu) * u[i]));
    hs = linear64(gu, w(`${p}.mlp.down_proj.weight`), T, H, I, undefined, 0, f32(hs));
  }
  const fin = f32(rmsNorm64(f32(hs), w(`${tm}.norm.weight`), T, H, t.rms_norm_eps));
  const head = c.tie_word_embeddings ? emb : w('lm_head.weight');
  return linear64(fin, head, T, t.vocab_size, H);
}

const CONFIGS: Record<string, unknown>[] = [
  {
    // Odd widths, GQA 5:1, head_dim 8, scale 3, tied embeddings, a different rope_theta.
    model_type: 'idefics3',
    image_token_id: 90,
    scale_factor: 3,
    tie_word_embeddings: true,
    vision_config: { hidden_size: 48, intermediate_size: 72, num_hidden_layers: 1, num_attention_heads: 3, patch_size: 4, image_size: 24 },
    text_config: { hidden_size: 40, intermediate_size: 56, num_hidden_layers: 2, num_attention_heads: 5, num_key_value_heads: 1, head_dim: 8, vocab_size: 97, rope_theta: 500, rms_norm_eps: 1e-6, max_position_embeddings: 256 },
  },
  {
    // Multi-head attention (no GQA), head_dim derived from hidden/heads, scale 1, untied LM head, 3 text layers.
    model_type: 'idefics3',
    image_token_id: 5,
    scale_factor: 1,
    vision_config: { hidden_size: 40, intermediate_size: 50, num_hidden_layers: 2, num_attention_heads: 2, patch_size: 6, image_size: 18, layer_norm_eps: 1e-5 },
    text_config: { hidden_size: 36, intermediate_size: 44, num_hidden_layers: 3, num_attention_heads: 3, vocab_size: 61, max_position_embeddings: 64 },
  },
];

describe('other Idefics3 configs', () => {
  let dir: string;
  before(() => {
    dir = mkdtempSync(join(tmpdir(), 'idefics3-configs-'));
  });
  after(() => rmSync(dir, { recursive: true, force: true }));

  CONFIGS.forEach((json, n) => {
    it(`config ${n}: logits at every position match the float64 forward pass`, async () => {
      const cfg = parseIdefics3Config(json, `config ${n}`);
      const rng = new Rng(100 + n);
      const W = new Map<string, Float64Array>();
      const tensors = idefics3Tensors(cfg).map((s) => {
        const size = s.shape.reduce((a, b) => a * b, 1);
        const std = s.init === 'norm' || s.init === 'bias' ? 0.1 : s.init;
        const data = rng.array(size, std);
        if (s.init === 'norm') for (let i = 0; i < size; i++) data[i] += 1;
        W.set(s.name, Float64Array.from(data));
        return { name: s.name, dtype: 'F32' as const, shape: s.shape, data: new Uint8Array(data.buffer) };
      });
      const mdir = join(dir, `m${n}`);
      mkdirSync(mdir);
      writeFileSync(join(mdir, 'config.json'), JSON.stringify(json));
      writeSafetensors(join(mdir, 'model.safetensors'), tensors, { format: 'pt' });

      const model = await SmolVLM.load(await testGpu(), mdir);
      try {
        const v = cfg.vision_config;
        const pixels = rng.array(v.num_channels * v.image_size * v.image_size);
        const nImg = model.featuresPerTile;
        const vocab = cfg.text_config.vocab_size;
        const text = (k: number) => Array.from({ length: k }, () => {
          let id = Math.floor(rng.next() * vocab);
          if (id === cfg.image_token_id) id = (id + 1) % vocab;
          return id;
        });
        const ids = [...text(3), ...Array(nImg).fill(cfg.image_token_id), ...text(4)];
        const got = await (await model.forward(ids, pixels, { logits: 'all', taps: ['logits'] })).logits();
        assert.equal(got.length, ids.length * vocab);
        assertClose(got, forward64(cfg, W, pixels, ids), { atol: 1e-4, rtol: 1e-4 }, `config ${n} logits`);
      } finally {
        model.dispose();
      }
    });
  });
});
