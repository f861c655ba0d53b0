// Decode speed of a Llama decoder at a published model's shapes — by default the language model of
// LLaVA-1.5-7B (bench/configs/llava-1.5-7b.json: 32 layers, 4096 wide, 11008 MLP, 32064 vocab, f16) —
// against this device's copy bandwidth measured in the same run. A decode step reads every weight once
// (the embedding table excepted: one row) and the KV cache up to its position, so its bytes over its
// GPU time is the bandwidth it reaches; the target on an H100 is 70% of the roof.
// The checkpoint is sparse (the real header, zeros for data): the kernels read every byte whatever the
// values, and nothing 13 GB large is written to disk. Load, plan and steps are the library's own
// (WeightStore, LlamaModel, KVCache, one graph and one submission per step).
//
// Each storage is a column: --dtype takes a list (default bf16,q8,q4,awq): the F16 checkpoint re-rounded to
// bf16, quantized at load to q8 or q4 (groups of 32), or written as an AutoAWQ GEMM checkpoint (4 bits,
// groups of 128, zeros) and loaded as published. Each column reports the bytes a step reads, the weights'
// GPU bytes, and the share of the roof.
//
//   npm run bench:decode [-- --config FILE] [--layers N] [--context N] [--steps N] [--dtype LIST] [--json FILE]
// --layers keeps the first N layers (to try the bench on a small device); --context is the KV length the
// timed steps start from.
import { parseArgs } from 'node:util';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { Gpu, fmtBytes } from '../src/gpu/device.ts';
import { GpuTimer } from '../src/gpu/timing.ts';
import { Graph } from '../src/graph/graph.ts';
import { Executable } from '../src/graph/execute.ts';
import { Checkpoint } from '../src/io/checkpoint.ts';
import { parseLlavaConfig } from '../src/models/config.ts';
import { WeightStore, VarBuilder } from '../src/models/weights.ts';
import { LlamaModel, KVCache } from '../src/models/llama.ts';
import { embed } from '../src/ops/embedding.ts';
import { linear } from '../src/ops/matmul.ts';
import { argmax } from '../src/ops/sample.ts';
import type { WeightDType } from '../src/models/storage.ts';
import { awqSpecs, llamaTensors, writeSparseCheckpoint } from './make-checkpoint.ts';
import { quantConfigOf } from '../src/io/quant.ts';
import { copyBandwidth } from './roofline.ts';
import { readJsonObject } from '../src/io/model-dir.ts';
import { repoPath } from './paths.ts';

const { values: args } = parseArgs({
  options: {
    config: { type: 'string' },
    layers: { type: 'string' },
    context: { type: 'string' },
    steps: { type: 'string' },
    dtype: { type: 'string' },
    json: { type: 'string' },
    help: { type: 'boolean', short: 'h' },
  },
  strict: true,
});
if (args.help) {
  console.log('npm run bench:decode -- [--config FILE] [--layers N] [--context N] [--steps N] [--dtype bf16,q8,q4,awq (any of auto, f32, f16, bf16, q8, q4, awq)] [--json FILE]');
  process.exit(0);
}
const positive = (name: string, v: string | undefined, dflt: number): number => {
  const n = v === undefined ? dflt : Number(v);
  if (!Number.isInteger(n) || n < 1) throw new Error(`--${name} must be a positive integer, not ${JSON.stringify(v)}`);
  return n;
};
const configFile = args.config ?? fileURLToPath(new URL('./configs/llava-1.5-7b.json', import.meta.url));
const json = await readJsonObject(configFile);
const full = parseLlavaConfig(json, configFile).text_config;
const layers = positive('layers', args.layers, full.num_hidden_layers);
if (layers > full.num_hidden_layers) throw new Error(`--layers ${layers}: ${configFile} has ${full.num_hidden_layers}`);
const text = { ...full, num_hidden_layers: layers };
const context = positive('context', args.context, 512);
const steps = positive('steps', args.steps, 32);
type Column = WeightDType | 'awq';
const COLUMNS: Column[] = ['auto', 'f32', 'f16', 'bf16', 'q8', 'q4', 'awq'];
const columns = (args.dtype ?? 'bf16,q8,q4,awq').split(',') as Column[];
for (const c of columns) if (!COLUMNS.includes(c)) throw new Error(`--dtype: ${c} is not one of ${COLUMNS.join(', ')}`);
// AutoAWQ's default group of 128 where it divides every linear's K (it does at 7B shapes), else the largest of 64 and 32 that does.
const AWQ_GROUP = [128, 64, 32].find((g) => text.hidden_size % g === 0 && text.intermediate_size % g === 0 && (text.num_attention_heads * text.head_dim) % g === 0);
if (columns.includes('awq') && !AWQ_GROUP) throw new Error(`--dtype awq: no AWQ group of 128, 64 or 32 divides hidden_size ${text.hidden_size} and intermediate_size ${text.intermediate_size} of ${configFile}`);

const dir = mkdtempSync(join(tmpdir(), 'decode-bench-'));
const gpu = await Gpu.create();
try {
  console.log(gpu.describe());
  const timer = gpu.has('timestamp-query') ? new GpuTimer(gpu) : null;
  const bandwidth = await copyBandwidth(gpu, timer);
  const results = [];
  for (const column of columns) results.push(await measure(column, timer, bandwidth));
  console.log(`\n${'storage'.padEnd(8)} ${'GPU weights'.padStart(12)} ${'read/step'.padStart(12)} ${'ms/step'.padStart(9)} ${'tok/s'.padStart(7)} ${'GB/s'.padStart(6)} ${'% roof'.padStart(7)}`);
  for (const r of results) {
    console.log(
      `${r.storage.padEnd(8)} ${fmtBytes(r.weightGpuBytes).padStart(12)} ${fmtBytes(r.bytesPerStep).padStart(12)} ${(r.gpuMsPerStep ?? r.wallMsPerStep).toFixed(2).padStart(9)} ` +
        `${(r.tokensPerSecondGpu ?? r.tokensPerSecondWall).toFixed(1).padStart(7)} ${r.achievedGBps.toFixed(1).padStart(6)} ${(100 * r.roofline).toFixed(0).padStart(6)}%`,
    );
  }
  if (args.json) writeFileSync(args.json, JSON.stringify({ date: new Date().toISOString(), adapter: gpu.info.description || gpu.info.device, config: repoPath(configFile), layers, columns: results }, null, 2));
  timer?.destroy();
} finally {
  gpu.destroy();
  rmSync(dir, { recursive: true, force: true });
}

/** One column: the checkpoint written for it, loaded, and `steps` decode steps timed. */
async function measure(column: Column, timer: GpuTimer | null, bandwidth: number) {
  // The published weights are f16 (torch_dtype); as in LlamaForCausalLM: model.* and lm_head.
  const dense = llamaTensors(text, 'model', text.tie_word_embeddings ? null : 'lm_head.weight');
  const specs = column === 'awq' ? awqSpecs(dense, AWQ_GROUP!) : dense;
  rmSync(join(dir, 'model.safetensors'), { force: true });
  const fileBytes = await writeSparseCheckpoint(join(dir, 'model.safetensors'), specs, 'F16');
  const quantization_config = { quant_method: 'awq', version: 'gemm', bits: 4, group_size: AWQ_GROUP, zero_point: true };
  const config = column === 'awq' ? { model_type: 'llama', quantization_config } : { model_type: 'llama' };
  writeFileSync(join(dir, 'config.json'), JSON.stringify(config));
  const ckpt = await Checkpoint.open(dir);
  const dtype: WeightDType = column === 'awq' ? 'auto' : column;
  const store = new WeightStore(gpu, ckpt, dtype, quantConfigOf(config, undefined, dir));
  const vb = new VarBuilder(store);
  const llama = new LlamaModel(vb.pp('model'), text);
  const lmHead = text.tie_word_embeddings ? llama.embed_tokens : vb.get('lm_head.weight', [text.vocab_size, text.hidden_size], { role: 'table' });
  const t0 = performance.now();
  let shown = -1;
  await store.load((p) => {
    const pct = Math.floor((10 * p.bytes) / p.totalBytes);
    if (pct !== shown) {
      shown = pct;
      process.stderr.write(`loading ${(pct * 10).toString().padStart(3)}% ${fmtBytes(p.bytes)} / ${fmtBytes(p.totalBytes)}\n`);
    }
  });
  await ckpt.close();
  const loadMs = performance.now() - t0;

  const cache = new KVCache(gpu, text, context + steps);
  const g = new Graph(gpu.tuning);
  const ids = g.input('input_ids', [1], 'u32');
  const h = llama.forward(g, embed(g, ids, llama.embed_tokens), cache);
  const token = argmax(g, linear(g, h, lmHead));
  const exe = await Executable.compile(gpu, g, [token]);

  // Bytes a step reads: each weight it binds as stored (the embedding table: one row) and the KV cache rows.
  const stored = (t: typeof lmHead) => (t.chunks ?? []).reduce((n, c) => n + c.buffer.size, 0);
  const weights = new Set(g.nodes.flatMap((n) => n.inputs.filter((t) => t.kind === 'weight')));
  let weightBytes = 0;
  for (const t of weights) weightBytes += t === llama.embed_tokens ? stored(t) / t.dim(0) : stored(t);
  if (lmHead === llama.embed_tokens) weightBytes += stored(lmHead);
  const kvRow = text.num_key_value_heads * text.head_dim * 4;
  const kvBytes = (pos: number) => 2 * layers * (pos + 1) * kvRow;

  const input = new Uint32Array(1);
  const gpuMs: number[] = [];
  const wallMs: number[] = [];
  const bytes: number[] = [];
  for (let i = -2; i < steps; i++) {
    const pos = context + Math.max(i, 0);
    input[0] = (pos * 7919) % text.vocab_size;
    exe.write(ids, input);
    const w0 = performance.now();
    const ns = timer ? await timer.time((w) => exe.run({ pos }, w)) : NaN;
    if (!timer) exe.run({ pos });
    await exe.read(token);
    const wall = performance.now() - w0;
    if (i < 0) continue; // warm-up
    gpuMs.push(ns / 1e6);
    wallMs.push(wall);
    bytes.push(weightBytes + kvBytes(pos));
  }
  exe.dispose();
  cache.dispose();
  const med = (a: number[]) => [...a].sort((x, y) => x - y)[Math.floor(a.length / 2)];
  const stepMs = timer ? med(gpuMs) : med(wallMs);
  const gbps = med(bytes) / (stepMs / 1000) / 1e9;
  const out = {
    storage: column,
    checkpointBytes: fileBytes,
    weightGpuBytes: store.gpuBytes,
    kvCacheBytes: 2 * layers * (context + steps) * kvRow,
    weightDType: lmHead.dtype,
    decoderDType: llama.layers[0].mlp.gate_proj.weight.dtype,
    loadMs,
    context,
    steps,
    dispatchesPerStep: exe.dispatchCount,
    bytesPerStep: med(bytes),
    gpuMsPerStep: timer ? med(gpuMs) : null,
    wallMsPerStep: med(wallMs),
    tokensPerSecondGpu: timer ? 1000 / med(gpuMs) : null,
    tokensPerSecondWall: 1000 / med(wallMs),
    achievedGBps: gbps,
    bandwidthRoofGBps: bandwidth,
    roofline: gbps / bandwidth,
  };
  console.log(
    `${column}: ${layers}-layer decoder (${configFile.split('/').pop()}), ${out.decoderDType} decoder, ${lmHead.dtype} LM head (${fmtBytes(weightBytes)} read per step, ` +
      `${fmtBytes(store.gpuBytes)} of weights on the GPU), load ${(loadMs / 1000).toFixed(1)} s\n` +
      `  decode at ${context}..${context + steps} tokens of context: ${stepMs.toFixed(2)} ms per step (${timer ? 'GPU timestamps' : 'wall'}), ` +
      `${(1000 / stepMs).toFixed(1)} tok/s (${out.tokensPerSecondWall.toFixed(1)} tok/s wall, token read back), ${exe.dispatchCount} dispatches\n` +
      `  ${gbps.toFixed(1)} GB/s against a measured copy roof of ${bandwidth.toFixed(1)} GB/s: ${(100 * out.roofline).toFixed(0)}% of the bandwidth roofline`,
  );
  store.dispose();
  llama.dispose(gpu);
  return out;
}
