// Writes a random-weight checkpoint with the exact tensor names, shapes and dtype (BF16) of
// HuggingFaceTB/SmolVLM-256M-Instruct, next to its published config, processor and tokenizer files
// (test/fixtures/hf/SmolVLM-256M-Instruct). Both layouts: one model.safetensors (~513 MB, like the
// published file) and a sharded copy with model.safetensors.index.json. Not committed; for load,
// memory and speed checks (bench/model.bench.ts).
//
//   npx tsx bench/make-checkpoint.ts [--out DIR] [--shards N]
// The tensor list is written from the Idefics3 checkpoint layout (transformers' state-dict names), with
// every size taken from config.json.
import { parseArgs } from 'node:util';
import { copyFileSync, mkdirSync, readdirSync, writeFileSync } from 'node:fs';
import { open } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { encodeSafetensorsHeader, type TensorSpec } from '../src/io/safetensors-write.ts';
import { parseIdefics3Config, type Idefics3Config, type LlavaConfig, type TextConfig } from '../src/models/config.ts';
import { readJsonObject } from '../src/io/model-dir.ts';

export const HF_DIR = fileURLToPath(new URL('../test/fixtures/hf/SmolVLM-256M-Instruct/', import.meta.url));

export interface Spec {
  name: string;
  shape: number[];
  /** Standard deviation of the random values, or 'norm' for 1 + small noise, 'bias' for small noise. */
  init: number | 'norm' | 'bias';
  /** The stored dtype where it is not the checkpoint's (packed AWQ tensors: I32 codes, F16 scales). */
  dtype?: 'I32' | 'F16';
}

/**
 * The decoder linears of `specs` (`…layers.N.{self_attn,mlp}.*_proj.weight`) packed as AutoAWQ's GEMM layout
 * stores them: qweight I32 [K, N/8], qzeros I32 [K/G, N/8], scales F16 [K/G, N]; the rest as they are.
 */
export function awqSpecs(specs: Spec[], group: number): Spec[] {
  return specs.flatMap((s): Spec[] => {
    if (!/\.layers\.\d+\.(self_attn|mlp)\.\w+_proj\.weight$/.test(s.name)) return [s];
    const m = s.name.slice(0, -'.weight'.length);
    const [N, K] = s.shape;
    return [
      { name: `${m}.qweight`, shape: [K, N / 8], init: 0, dtype: 'I32' },
      { name: `${m}.qzeros`, shape: [K / group, N / 8], init: 0, dtype: 'I32' },
      { name: `${m}.scales`, shape: [K / group, N], init: 0, dtype: 'F16' },
    ];
  });
}

/** An nn.Linear's weight [o, i] (init 1/sqrt(i)) and optional bias. */
function linearSpecs(name: string, o: number, i: number, bias: boolean): Spec[] {
  const w: Spec = { name: `${name}.weight`, shape: [o, i], init: 1 / Math.sqrt(i) };
  return bias ? [w, { name: `${name}.bias`, shape: [o], init: 'bias' }] : [w];
}

export function idefics3Tensors(c: Idefics3Config): Spec[] {
  const v = c.vision_config;
  const t = c.text_config;
  const out: Spec[] = [];
  const lin = (name: string, o: number, i: number, bias: boolean) => out.push(...linearSpecs(name, o, i, bias));
  const ln = (name: string, d: number, bias: boolean) => {
    out.push({ name: `${name}.weight`, shape: [d], init: 'norm' });
    if (bias) out.push({ name: `${name}.bias`, shape: [d], init: 'bias' });
  };
  const vm = 'model.vision_model';
  const D = v.hidden_size;
  out.push({ name: `${vm}.embeddings.patch_embedding.weight`, shape: [D, v.num_channels, v.patch_size, v.patch_size], init: 1 / Math.sqrt(v.num_channels * v.patch_size ** 2) });
  out.push({ name: `${vm}.embeddings.patch_embedding.bias`, shape: [D], init: 'bias' });
  out.push({ name: `${vm}.embeddings.position_embedding.weight`, shape: [(v.image_size / v.patch_size) ** 2, D], init: 0.02 });
  for (let i = 0; i < v.num_hidden_layers; i++) {
    const p = `${vm}.encoder.layers.${i}`;
    ln(`${p}.layer_norm1`, D, true);
    for (const n of ['q_proj', 'k_proj', 'v_proj', 'out_proj']) lin(`${p}.self_attn.${n}`, D, D, true);
    ln(`${p}.layer_norm2`, D, true);
    lin(`${p}.mlp.fc1`, v.intermediate_size, D, true);
    lin(`${p}.mlp.fc2`, D, v.intermediate_size, true);
  }
  ln(`${vm}.post_layernorm`, D, true);
  lin('model.connector.modality_projection.proj', t.hidden_size, D * c.scale_factor ** 2, false);
  out.push(...llamaTensors(t, 'model.text_model', c.tie_word_embeddings ? null : 'lm_head.weight'));
  return out.sort((a, b) => (a.name < b.name ? -1 : 1));
}

/**
 * A LLaVA or LLaVA-NeXT checkpoint's tensors in llava-hf's current layout: the CLIP tower up to the layer
 * the features are taken from, the projector, image_newline (LLaVA-NeXT), the decoder and the LM head.
 */
export function llavaTensors(c: LlavaConfig): Spec[] {
  const v = c.vision_config;
  const D = v.hidden_size;
  const out: Spec[] = [];
  const lin = (name: string, o: number, i: number, bias: boolean) => out.push(...linearSpecs(name, o, i, bias));
  const ln = (name: string, d: number) => out.push({ name: `${name}.weight`, shape: [d], init: 'norm' }, { name: `${name}.bias`, shape: [d], init: 'bias' });
  const vm = 'model.vision_tower.vision_model';
  out.push({ name: `${vm}.embeddings.patch_embedding.weight`, shape: [D, v.num_channels, v.patch_size, v.patch_size], init: 1 / Math.sqrt(v.num_channels * v.patch_size ** 2) });
  out.push({ name: `${vm}.embeddings.class_embedding`, shape: [D], init: 0.02 });
  out.push({ name: `${vm}.embeddings.position_embedding.weight`, shape: [(v.image_size / v.patch_size) ** 2 + 1, D], init: 0.02 });
  ln(`${vm}.pre_layrnorm`, D);
  const L = v.num_hidden_layers;
  const used = c.vision_feature_layer >= 0 ? c.vision_feature_layer : L + 1 + c.vision_feature_layer;
  for (let i = 0; i < used; i++) {
    const p = `${vm}.encoder.layers.${i}`;
    ln(`${p}.layer_norm1`, D);
    for (const n of ['q_proj', 'k_proj', 'v_proj', 'out_proj']) lin(`${p}.self_attn.${n}`, D, D, true);
    ln(`${p}.layer_norm2`, D);
    lin(`${p}.mlp.fc1`, v.intermediate_size, D, true);
    lin(`${p}.mlp.fc2`, D, v.intermediate_size, true);
  }
  const H = c.text_config.hidden_size;
  lin('model.multi_modal_projector.linear_1', H, D, c.multimodal_projector_bias);
  lin('model.multi_modal_projector.linear_2', H, H, c.multimodal_projector_bias);
  if (c.model_type === 'llava_next') out.push({ name: 'model.image_newline', shape: [H], init: 0.02 });
  out.push(...llamaTensors(c.text_config, 'model.language_model', c.tie_word_embeddings ? null : 'lm_head.weight'));
  return out.sort((a, b) => (a.name < b.name ? -1 : 1));
}

/** A Llama decoder's tensors under `prefix` (embed_tokens, layers, norm), and the LM head when named. */
export function llamaTensors(t: TextConfig, prefix: string, lmHead: string | null): Spec[] {
  const out: Spec[] = [];
  const lin = (name: string, o: number, i: number, bias: boolean) => out.push(...linearSpecs(name, o, i, bias));
  const H = t.hidden_size;
  const kv = t.num_key_value_heads * t.head_dim;
  out.push({ name: `${prefix}.embed_tokens.weight`, shape: [t.vocab_size, H], init: 0.02 });
  for (let i = 0; i < t.num_hidden_layers; i++) {
    const p = `${prefix}.layers.${i}`;
    out.push({ name: `${p}.input_layernorm.weight`, shape: [H], init: 'norm' });
    lin(`${p}.self_attn.q_proj`, t.num_attention_heads * t.head_dim, H, t.attention_bias);
    lin(`${p}.self_attn.k_proj`, kv, H, t.attention_bias);
    lin(`${p}.self_attn.v_proj`, kv, H, t.attention_bias);
    lin(`${p}.self_attn.o_proj`, H, t.num_attention_heads * t.head_dim, t.attention_bias);
    out.push({ name: `${p}.post_attention_layernorm.weight`, shape: [H], init: 'norm' });
    lin(`${p}.mlp.gate_proj`, t.intermediate_size, H, t.mlp_bias);
    lin(`${p}.mlp.up_proj`, t.intermediate_size, H, t.mlp_bias);
    lin(`${p}.mlp.down_proj`, H, t.intermediate_size, t.mlp_bias);
  }
  out.push({ name: `${prefix}.norm.weight`, shape: [H], init: 'norm' });
  if (lmHead) out.push({ name: lmHead, shape: [t.vocab_size, H], init: 0.02 });
  return out;
}

/**
 * A safetensors file with the tensors' real header and zeros for data, written sparse (no disk traffic,
 * no host memory): for benchmarks where values do not matter (host overhead, decode bandwidth).
 */
export async function writeSparseCheckpoint(path: string, specs: Spec[], dtype: 'BF16' | 'F16' | 'F32'): Promise<number> {
  const header = encodeSafetensorsHeader(
    specs.map((s) => ({ name: s.name, dtype: s.dtype ?? dtype, shape: s.shape })),
    { format: 'pt' },
  );
  const fh = await open(path, 'w');
  try {
    await fh.write(header.bytes, 0, header.bytes.length, 0);
    await fh.truncate(header.bytes.length + header.dataLength);
  } finally {
    await fh.close();
  }
  return header.bytes.length + header.dataLength;
}

/** BF16 bytes of random values (a fast approximate normal: sum of 4 uniforms, centred and scaled). */
function randomBf16(n: number, init: Spec['init'], seed: number): Uint8Array {
  const out = new Uint16Array(n);
  const f = new Float32Array(1);
  const u = new Uint32Array(f.buffer);
  let s = seed >>> 0 || 1;
  const next = () => {
    s ^= s << 13;
    s ^= s >>> 17;
    s ^= s << 5;
    return (s >>> 0) / 4294967296;
  };
  const std = init === 'norm' ? 0.02 : init === 'bias' ? 0.02 : init;
  const mean = init === 'norm' ? 1 : 0;
  for (let i = 0; i < n; i++) {
    const z = (next() + next() + next() + next() - 2) * 1.7320508; // unit variance
    f[0] = mean + std * z;
    out[i] = (u[0] + 0x7fff + ((u[0] >>> 16) & 1)) >>> 16;
  }
  return new Uint8Array(out.buffer);
}

/** Writes `specs` in order; tensor values are seeded by their index in the whole checkpoint (`seedOf`), so the single and sharded layouts hold identical weights. */
async function writeFile(path: string, specs: Spec[], seedOf: (s: Spec) => number, log: (s: string) => void): Promise<number> {
  const tensors: TensorSpec[] = specs.map((s) => ({ name: s.name, dtype: 'BF16', shape: s.shape }));
  const header = encodeSafetensorsHeader(tensors, { format: 'pt' });
  const fh = await open(path, 'w');
  try {
    await fh.write(header.bytes, 0, header.bytes.length, 0);
    let pos = header.bytes.length;
    for (const [i, s] of specs.entries()) {
      const n = s.shape.reduce((a, b) => a * b, 1);
      const data = randomBf16(n, s.init, seedOf(s));
      await fh.write(data, 0, data.length, pos);
      pos += data.length;
      if (i % 50 === 0) log(`  ${path}: ${i + 1}/${specs.length} tensors, ${(pos / 2 ** 20).toFixed(0)} MiB`);
    }
    return pos;
  } finally {
    await fh.close();
  }
}

/** Writes the checkpoint folders; returns their paths. */
export async function makeCheckpoint(out: string, shards = 2, log: (s: string) => void = (s) => process.stderr.write(`${s}\n`)) {
  const configFile = join(HF_DIR, 'config.json');
  const cfg = parseIdefics3Config(await readJsonObject(configFile), configFile);
  const specs = idefics3Tensors(cfg);
  const single = join(out, 'single');
  const sharded = join(out, 'sharded');
  for (const dir of [single, sharded]) {
    mkdirSync(dir, { recursive: true });
    for (const f of readdirSync(HF_DIR)) copyFileSync(join(HF_DIR, f), join(dir, f));
  }
  log(`writing ${specs.length} BF16 tensors (${cfg.text_config.num_hidden_layers} text layers, ${cfg.vision_config.num_hidden_layers} vision layers)`);
  const index = new Map(specs.map((s, i) => [s, i]));
  const seedOf = (s: Spec) => 1 + index.get(s)! * 7919;
  const bytes = await writeFile(join(single, 'model.safetensors'), specs, seedOf, log);
  // Sharded: split the sorted tensor list into `shards` runs of similar size.
  const sizes = specs.map((s) => 2 * s.shape.reduce((a, b) => a * b, 1));
  const total = sizes.reduce((a, b) => a + b, 0);
  const weightMap: Record<string, string> = {};
  let k = 0;
  for (let i = 0; i < shards; i++) {
    const name = `model-${String(i + 1).padStart(5, '0')}-of-${String(shards).padStart(5, '0')}.safetensors`;
    const part: Spec[] = [];
    let acc = 0;
    while (k < specs.length && (i === shards - 1 || acc < total / shards)) {
      part.push(specs[k]);
      acc += sizes[k];
      weightMap[specs[k].name] = name;
      k++;
    }
    await writeFile(join(sharded, name), part, seedOf, log);
  }
  writeFileSync(join(sharded, 'model.safetensors.index.json'), JSON.stringify({ metadata: { total_size: total }, weight_map: weightMap }, null, 2));
  log(`wrote ${single} (${(bytes / 1e6).toFixed(1)} MB) and ${sharded} (${shards} shards)`);
  return { single, sharded, bytes, tensors: specs.length };
}

if (process.argv[1] && fileURLToPath(import.meta.url) === process.argv[1]) {
  const { values } = parseArgs({ options: { out: { type: 'string' }, shards: { type: 'string' } } });
  const out = values.out ?? join(tmpdir(), 'smolvlm-256m-random');
  await makeCheckpoint(out, Number(values.shards ?? 2));
}
