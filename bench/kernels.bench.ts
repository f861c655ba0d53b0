// Kernel microbenchmarks at the shapes of SmolVLM-256M-Instruct (read from its config.json), or of the
// tiny fixture with --quick. Every kernel's output is first validated against the float64 CPU reference
// (test/ops/reference.ts); then tinybench times it, with the device time of each run taken from GPU
// timestamp queries where the adapter offers them (wall time otherwise). Rows report the median, GFLOP/s
// or GB/s from napkin math, and the share of this device's roofline (bandwidth from a large buffer copy,
// compute from our best matmul, both measured in the same run).
//
//   npm run bench [-- --quick] [--json FILE] [--filter REGEX] [--iterations N] [--time MS]
// With --json FILE.json, the roofline plot goes to FILE.roofline.svg and FILE.roofline.png.
import { parseArgs } from 'node:util';
import { readFileSync, writeFileSync } from 'node:fs';
import { execSync } from 'node:child_process';
import { fileURLToPath } from 'node:url';
import { Bench } from 'tinybench';
import { Gpu } from '../src/gpu/device.ts';
import { GpuTimer } from '../src/gpu/timing.ts';
import { Graph } from '../src/graph/graph.ts';
import { Executable } from '../src/graph/execute.ts';
import type { Tensor } from '../src/graph/tensor.ts';
import { parseIdefics3Config } from '../src/models/config.ts';
import { linear } from '../src/ops/matmul.ts';
import { rmsNorm, layerNorm } from '../src/ops/norm.ts';
import { softmax } from '../src/ops/softmax.ts';
import { activation, add, siluMul, sliceRows, ACT } from '../src/ops/elementwise.ts';
import { rope, ropeInvFreq } from '../src/ops/rope.ts';
import { attention } from '../src/ops/attention.ts';
import { patchEmbed } from '../src/ops/patch-embed.ts';
import { pixelShuffleProject } from '../src/ops/projector.ts';
import { embed } from '../src/ops/embedding.ts';
import { argmax } from '../src/ops/sample.ts';
import type { SourceDType } from '../src/io/upload.ts';
import { Rng, assertClose, weight } from '../test/data.ts';
import { rooflineSvg, writeRoofline } from './roofline.ts';
import {
  linear64,
  rmsNorm64,
  layerNorm64,
  softmax64,
  act64,
  rope64,
  attention64,
  embed64,
  argmax64,
} from '../test/ops/reference.ts';

const { values: args } = parseArgs({
  options: {
    quick: { type: 'boolean' },
    json: { type: 'string' },
    filter: { type: 'string' },
    iterations: { type: 'string' },
    time: { type: 'string' },
    help: { type: 'boolean', short: 'h' },
  },
  strict: true,
});
if (args.help) {
  console.log('npm run bench -- [--quick] [--json FILE] [--filter REGEX] [--iterations N] [--time MS]');
  process.exit(0);
}

const here = (p: string) => fileURLToPath(new URL(p, import.meta.url));
const configFile = args.quick ? here('../test/fixtures/smolvlm-tiny/config.json') : here('../test/fixtures/hf/SmolVLM-256M-Instruct/config.json');
const cfg = parseIdefics3Config(JSON.parse(readFileSync(configFile, 'utf8')), configFile);
const vc = cfg.vision_config;
const tc = cfg.text_config;
const patches = (vc.image_size / vc.patch_size) ** 2;
const prefillT = args.quick ? 55 : 1100;
const kvLen = args.quick ? 64 : 1024;

interface Built {
  outputs: Tensor[];
  inputs: [Tensor, ArrayBufferView][];
  /** Checks the outputs against the float64 reference; throws with the max error on failure. */
  check: (out: (Float32Array | Uint32Array)[]) => void;
  pos?: number;
}

interface Case {
  name: string;
  kernel: string;
  /** Floating-point operations and bytes moved (napkin math: every operand read once, output written once). */
  flops: number;
  bytes: number;
  build: (gpu: Gpu, g: Graph, rng: Rng) => Promise<Built>;
}

const TOL = { atol: 5e-5, rtol: 1e-4 };

function linearCase(name: string, M: number, K: number, N: number, dtype: SourceDType, act: keyof typeof ACT = 'none', variant?: 'tiled' | 'gemv'): Case {
  const wBytes = dtype === 'F32' ? 4 : dtype === 'F16' ? 2 : 4;
  return {
    name: `${name} ${M}×${K}·${N}×${K}ᵀ ${dtype}${act !== 'none' ? ` +${act}` : ''}`,
    kernel: variant ?? (M <= 4 ? 'gemv' : 'matmul'),
    flops: 2 * M * N * K,
    bytes: 4 * M * K + wBytes * N * K + 4 * M * N,
    async build(gpu, g, rng) {
      const xv = rng.array(M * K);
      const w = await weight(gpu, g, 'w', [N, K], rng.array(N * K, 1 / Math.sqrt(K)), dtype);
      const x = g.input('x', [M, K], 'f32');
      return {
        outputs: [linear(g, x, w.t, { act, variant })],
        inputs: [[x, xv]],
        check: ([y]) => assertClose(y, linear64(xv, w.v, M, N, K, undefined, ACT[act]), TOL, this.name),
      };
    },
  };
}

const cases: Case[] = [
  // Vision encoder (SigLIP) at one 512×512 tile: 1024 patches.
  {
    name: `patch embedding ${vc.num_channels}×${vc.image_size}² /${vc.patch_size} → ${vc.hidden_size} (+bias +pos)`,
    kernel: 'matmul (im2col)',
    flops: 2 * patches * vc.hidden_size * vc.num_channels * vc.patch_size ** 2,
    bytes: 4 * (vc.num_channels * vc.image_size ** 2 + vc.hidden_size * vc.num_channels * vc.patch_size ** 2 + 2 * patches * vc.hidden_size),
    async build(gpu, g, rng) {
      const [C, S, P, D] = [vc.num_channels, vc.image_size, vc.patch_size, vc.hidden_size];
      const pix = rng.array(C * S * S);
      const w = await weight(gpu, g, 'conv', [D, C, P, P], rng.array(D * C * P * P, 0.05));
      const b = await weight(gpu, g, 'bias', [D], rng.array(D, 0.02));
      const pos = await weight(gpu, g, 'pos', [patches, D], rng.array(patches * D, 0.1));
      const x = g.input('pixels', [1, C, S, S], 'f32');
      // Reference: the conv as a matmul over gathered patches.
      const K = C * P * P;
      const cols = new Float32Array(patches * K);
      const gw = S / P;
      for (let p = 0; p < patches; p++)
        for (let c = 0; c < C; c++)
          for (let ky = 0; ky < P; ky++)
            for (let kx = 0; kx < P; kx++)
              cols[p * K + (c * P + ky) * P + kx] = pix[(c * S + Math.floor(p / gw) * P + ky) * S + (p % gw) * P + kx];
      return {
        outputs: [patchEmbed(g, x, w.t, b.t, pos.t)],
        inputs: [[x, pix]],
        check: ([y]) => {
          const ref = linear64(cols, w.v, patches, D, K, b.v);
          for (let i = 0; i < ref.length; i++) ref[i] += pos.v[i];
          assertClose(y, ref, TOL, 'patch embedding');
        },
      };
    },
  },
  linearCase('vit q_proj', patches, vc.hidden_size, vc.hidden_size, 'F32'),
  linearCase('vit q_proj', patches, vc.hidden_size, vc.hidden_size, 'F16'),
  linearCase('vit fc1', patches, vc.hidden_size, vc.intermediate_size, 'F32', 'gelu_tanh'),
  {
    name: `vit attention T=${patches} ${vc.num_attention_heads}×${vc.hidden_size / vc.num_attention_heads} bidirectional`,
    kernel: 'attention',
    flops: 4 * patches * patches * vc.hidden_size,
    bytes: 4 * 4 * patches * vc.hidden_size,
    async build(_gpu, g, rng) {
      const [T, D, H] = [patches, vc.hidden_size, vc.num_attention_heads];
      const [qv, kv, vv] = [rng.array(T * D), rng.array(T * D), rng.array(T * D)];
      const q = g.input('q', [T, D], 'f32');
      const k = g.input('k', [T, D], 'f32');
      const v = g.input('v', [T, D], 'f32');
      return {
        outputs: [attention(g, q, k, v, { heads: H, kvHeads: H, causal: false })],
        inputs: [[q, qv], [k, kv], [v, vv]],
        check: ([y]) => assertClose(y, attention64(qv, kv, vv, T, H, H, D / H, () => T - 1), TOL, 'vit attention'),
      };
    },
  },
  {
    name: `layernorm ${patches}×${vc.hidden_size}`,
    kernel: 'norm',
    flops: 8 * patches * vc.hidden_size,
    bytes: 4 * (3 * patches * vc.hidden_size + 2 * vc.hidden_size),
    async build(gpu, g, rng) {
      const [R, D] = [patches, vc.hidden_size];
      const xv = rng.array(R * D);
      const w = await weight(gpu, g, 'w', [D], rng.array(D, 0.1));
      const b = await weight(gpu, g, 'b', [D], rng.array(D, 0.1));
      const x = g.input('x', [R, D], 'f32');
      return {
        outputs: [layerNorm(g, x, w.t, b.t, vc.layer_norm_eps)],
        inputs: [[x, xv]],
        check: ([y]) => assertClose(y, layerNorm64(xv, w.v, b.v, R, D, vc.layer_norm_eps), TOL, 'layernorm'),
      };
    },
  },
  {
    name: `gelu_tanh ${patches}×${vc.intermediate_size}`,
    kernel: 'elementwise',
    flops: 10 * patches * vc.intermediate_size,
    bytes: 8 * patches * vc.intermediate_size,
    async build(_gpu, g, rng) {
      const n = patches * vc.intermediate_size;
      const xv = rng.array(n, 3);
      const x = g.input('x', [patches, vc.intermediate_size], 'f32');
      return {
        outputs: [activation(g, x, 'gelu_tanh')],
        inputs: [[x, xv]],
        check: ([y]) => assertClose(y, Float64Array.from(xv, (v) => act64(v, ACT.gelu_tanh)), TOL, 'gelu'),
      };
    },
  },
  // Connector: pixel shuffle folded into the projection; split-K (auto) and the plain tiles as reference.
  ...(['auto', 'tiled'] as const).map((variant): Case => ({
    name: `projector ${patches}×${vc.hidden_size} shuffle ×${cfg.scale_factor} → ${patches / cfg.scale_factor ** 2}×${tc.hidden_size}${variant === 'tiled' ? ' (tiled, reference variant)' : ''}`,
    kernel: 'matmul (pixel shuffle)',
    flops: 2 * patches * vc.hidden_size * tc.hidden_size,
    bytes: 4 * (patches * vc.hidden_size + tc.hidden_size * vc.hidden_size * cfg.scale_factor ** 2 + (patches / cfg.scale_factor ** 2) * tc.hidden_size),
    async build(gpu, g, rng) {
      const [E, s, N] = [vc.hidden_size, cfg.scale_factor, tc.hidden_size];
      const K = E * s * s;
      const M = patches / (s * s);
      const gw = Math.sqrt(patches);
      const xv = rng.array(patches * E);
      const w = await weight(gpu, g, 'proj', [N, K], rng.array(N * K, 1 / Math.sqrt(K)));
      const x = g.input('x', [patches, E], 'f32');
      const shuffled = new Float32Array(M * K);
      const bw = gw / s;
      for (let r = 0; r < M; r++)
        for (let i = 0; i < s; i++)
          for (let j = 0; j < s; j++)
            for (let c = 0; c < E; c++)
              shuffled[r * K + (i * s + j) * E + c] = xv[((Math.floor(r / bw) * s + i) * gw + (r % bw) * s + j) * E + c];
      return {
        outputs: [pixelShuffleProject(g, x, w.t, s, 1, variant)],
        inputs: [[x, xv]],
        check: ([y]) => assertClose(y, linear64(shuffled, w.v, M, N, K), TOL, 'projector'),
      };
    },
  })),
  // Decoder prefill.
  linearCase('prefill gate_proj', prefillT, tc.hidden_size, tc.intermediate_size, 'F32'),
  linearCase('prefill gate_proj', prefillT, tc.hidden_size, tc.intermediate_size, 'F16'),
  {
    name: `prefill attention T=${prefillT} ${tc.num_attention_heads}/${tc.num_key_value_heads} heads ×${tc.head_dim} causal`,
    kernel: 'attention',
    flops: 2 * prefillT * prefillT * tc.num_attention_heads * tc.head_dim, // causal: half of 4·T²·H·d
    bytes: 4 * prefillT * (2 * tc.num_attention_heads + 2 * tc.num_key_value_heads) * tc.head_dim,
    async build(_gpu, g, rng) {
      const [T, H, KV, d] = [prefillT, tc.num_attention_heads, tc.num_key_value_heads, tc.head_dim];
      const [qv, kv, vv] = [rng.array(T * H * d), rng.array(T * KV * d), rng.array(T * KV * d)];
      const q = g.input('q', [T, H * d], 'f32');
      const k = g.input('k', [T, KV * d], 'f32');
      const v = g.input('v', [T, KV * d], 'f32');
      return {
        outputs: [attention(g, q, k, v, { heads: H, kvHeads: KV, causal: true })],
        inputs: [[q, qv], [k, kv], [v, vv]],
        check: ([y]) => assertClose(y, attention64(qv, kv, vv, T, H, KV, d, (t) => t), TOL, 'prefill attention'),
      };
    },
  },
  {
    name: `rmsnorm ${prefillT}×${tc.hidden_size}`,
    kernel: 'norm',
    flops: 4 * prefillT * tc.hidden_size,
    bytes: 4 * (2 * prefillT * tc.hidden_size + tc.hidden_size),
    async build(gpu, g, rng) {
      const [R, D] = [prefillT, tc.hidden_size];
      const xv = rng.array(R * D);
      const w = await weight(gpu, g, 'w', [D], rng.array(D, 0.1));
      const x = g.input('x', [R, D], 'f32');
      return {
        outputs: [rmsNorm(g, x, w.t, tc.rms_norm_eps)],
        inputs: [[x, xv]],
        check: ([y]) => assertClose(y, rmsNorm64(xv, w.v, R, D, tc.rms_norm_eps), TOL, 'rmsnorm'),
      };
    },
  },
  {
    name: `rope ${prefillT}×${tc.num_attention_heads}×${tc.head_dim}`,
    kernel: 'rope',
    flops: 6 * prefillT * tc.num_attention_heads * tc.head_dim,
    bytes: 8 * prefillT * tc.num_attention_heads * tc.head_dim,
    async build(gpu, g, rng) {
      const [T, H, d] = [prefillT, tc.num_attention_heads, tc.head_dim];
      const xv = rng.array(T * H * d);
      const inv = ropeInvFreq(tc.rope_theta, d);
      const freq = g.input('inv_freq', [d / 2], 'f32');
      const x = g.input('x', [T, H * d], 'f32');
      return {
        outputs: [rope(g, x, freq, H)],
        inputs: [[x, xv], [freq, inv]],
        check: ([y]) => {
          const { y: want, tol } = rope64(xv, inv, T, H, d, 0);
          // Per-element bound from the f32 angle (see test/ops/rope.test.ts).
          for (let i = 0; i < want.length; i++) {
            if (!(Math.abs(y[i] - want[i]) <= tol[i] + 1e-6)) throw new Error(`rope: index ${i}: got ${y[i]}, expected ${want[i]}`);
          }
        },
      };
    },
  },
  {
    name: `silu(gate)·up ${prefillT}×${tc.intermediate_size}`,
    kernel: 'elementwise',
    flops: 6 * prefillT * tc.intermediate_size,
    bytes: 12 * prefillT * tc.intermediate_size,
    async build(_gpu, g, rng) {
      const n = prefillT * tc.intermediate_size;
      const [av, bv] = [rng.array(n, 3), rng.array(n)];
      const a = g.input('gate', [prefillT, tc.intermediate_size], 'f32');
      const b = g.input('up', [prefillT, tc.intermediate_size], 'f32');
      return {
        outputs: [siluMul(g, a, b)],
        inputs: [[a, av], [b, bv]],
        check: ([y]) => assertClose(y, Float64Array.from(av, (v, i) => act64(v, ACT.silu) * bv[i]), TOL, 'silu_mul'),
      };
    },
  },
  {
    name: `add ${prefillT}×${tc.hidden_size}`,
    kernel: 'elementwise',
    flops: prefillT * tc.hidden_size,
    bytes: 12 * prefillT * tc.hidden_size,
    async build(_gpu, g, rng) {
      const n = prefillT * tc.hidden_size;
      const [av, bv] = [rng.array(n), rng.array(n)];
      const a = g.input('a', [prefillT, tc.hidden_size], 'f32');
      const b = g.input('b', [prefillT, tc.hidden_size], 'f32');
      return {
        outputs: [add(g, a, b)],
        inputs: [[a, av], [b, bv]],
        check: ([y]) => assertClose(y, Float64Array.from(av, (v, i) => v + bv[i]), TOL, 'add'),
      };
    },
  },
  {
    name: `softmax ${4 * kvLen}×${kvLen}`,
    kernel: 'softmax',
    flops: 5 * 4 * kvLen * kvLen,
    bytes: 8 * 4 * kvLen * kvLen,
    async build(_gpu, g, rng) {
      const [R, D] = [4 * kvLen, kvLen];
      const xv = rng.array(R * D, 4);
      const x = g.input('x', [R, D], 'f32');
      return {
        outputs: [softmax(g, x)],
        inputs: [[x, xv]],
        check: ([y]) => assertClose(y, softmax64(xv, R, D), { atol: 1e-6, rtol: 1e-4 }, 'softmax'),
      };
    },
  },
  {
    name: `embedding gather ${prefillT} ids from ${tc.vocab_size}×${tc.hidden_size}`,
    kernel: 'embedding',
    flops: 0,
    bytes: 8 * prefillT * tc.hidden_size + 4 * prefillT,
    async build(gpu, g, rng) {
      const [V, D] = [tc.vocab_size, tc.hidden_size];
      const table = await weight(gpu, g, 'table', [V, D], rng.array(V * D, 0.25));
      const ids = Uint32Array.from({ length: prefillT }, () => Math.floor(rng.next() * V));
      const x = g.input('ids', [prefillT], 'u32');
      return {
        outputs: [embed(g, x, table.t)],
        inputs: [[x, ids]],
        check: ([y]) => assertClose(y, embed64(ids, table.v, D), { atol: 0 }, 'embedding'),
      };
    },
  },
  // Decode (M = 1).
  linearCase('decode gate_proj', 1, tc.hidden_size, tc.intermediate_size, 'F32'),
  linearCase('decode gate_proj', 1, tc.hidden_size, tc.intermediate_size, 'F16'),
  linearCase('decode lm_head', 1, tc.hidden_size, tc.vocab_size, 'F32'),
  linearCase('decode lm_head', 1, tc.hidden_size, tc.vocab_size, 'F16'),
  linearCase('decode lm_head (tiled, reference variant)', 1, tc.hidden_size, tc.vocab_size, 'F32', 'none', 'tiled'),
  ...(['split', 'single'] as const).map(
    (variant): Case => ({
      name: `decode attention kv=${kvLen} ${tc.num_attention_heads}/${tc.num_key_value_heads} heads ×${tc.head_dim}${variant === 'single' ? ' (single pass, reference variant)' : ' (split-KV)'}`,
      kernel: 'attention',
      flops: 4 * kvLen * tc.num_attention_heads * tc.head_dim,
      bytes: 4 * 2 * kvLen * tc.num_key_value_heads * tc.head_dim,
      async build(_gpu, g, rng) {
        const [H, KV, d] = [tc.num_attention_heads, tc.num_key_value_heads, tc.head_dim];
        const [qv, kv, vv] = [rng.array(H * d), rng.array(kvLen * KV * d), rng.array(kvLen * KV * d)];
        const q = g.input('q', [1, H * d], 'f32');
        const k = g.input('k', [kvLen, KV * d], 'f32');
        const v = g.input('v', [kvLen, KV * d], 'f32');
        return {
          outputs: [attention(g, q, k, v, { heads: H, kvHeads: KV, causal: true, variant })],
          inputs: [[q, qv], [k, kv], [v, vv]],
          pos: kvLen - 1,
          check: ([y]) => assertClose(y, attention64(qv, kv, vv, 1, H, KV, d, () => kvLen - 1), TOL, `decode attention ${variant}`),
        };
      },
    }),
  ),
  {
    name: `argmax over ${tc.vocab_size}`,
    kernel: 'argmax',
    flops: tc.vocab_size,
    bytes: 4 * tc.vocab_size,
    async build(_gpu, g, rng) {
      const xv = rng.array(tc.vocab_size);
      const x = g.input('logits', [1, tc.vocab_size], 'f32');
      return {
        outputs: [argmax(g, x)],
        inputs: [[x, xv]],
        check: ([y]) => {
          if (y[0] !== argmax64(xv, 1, tc.vocab_size)) throw new Error(`argmax: got ${y[0]}, expected ${argmax64(xv, 1, tc.vocab_size)}`);
        },
      };
    },
  },
];

interface Row {
  name: string;
  kernel: string;
  medianMs: number;
  wallMedianMs: number;
  gflops: number;
  gbps: number;
  intensity: number;
  roofline: number;
  samples: number;
  timing: 'gpu-timestamp' | 'wall';
}

async function measure(gpu: Gpu, timer: GpuTimer | null, exe: Executable, pos: number, iterations: number, time: number) {
  const wall: number[] = [];
  const bench = new Bench({ iterations, time, warmupIterations: 2, warmupTime: 0, retainSamples: true });
  bench.add('run', async () => {
    const t0 = performance.now();
    let gpuMs: number | undefined;
    if (timer) gpuMs = (await timer.time((w) => exe.run({ pos }, w))) / 1e6;
    else {
      exe.run({ pos });
      await gpu.device.queue.onSubmittedWorkDone();
    }
    wall.push(performance.now() - t0);
    return gpuMs !== undefined ? { overriddenDuration: gpuMs } : undefined;
  });
  await bench.run();
  const r = bench.tasks[0].result as { state: string; latency?: { p50: number; samplesCount: number }; error?: Error };
  if (r.state !== 'completed' || !r.latency) throw new Error(`tinybench: ${r.state} ${r.error?.message ?? ''}`);
  wall.sort((a, b) => a - b);
  return { median: r.latency.p50, samples: r.latency.samplesCount, wallMedian: wall[Math.floor(wall.length / 2)] };
}

/**
 * Device bandwidth: the better of a large copyBufferToBuffer timed by the wall clock (submission
 * included, so it underestimates a fast GPU) and a 64 MiB copy through our copy kernel timed by GPU
 * timestamps.
 */
async function copyBandwidth(gpu: Gpu, timer: GpuTimer | null): Promise<number> {
  let kernel = 0;
  if (timer) {
    const g = new Graph();
    const rows = Math.floor(Math.min(64 * 2 ** 20, gpu.maxBinding) / 4096);
    const x = g.input('x', [rows, 1024], 'f32');
    const y = sliceRows(g, x, 0, rows);
    const exe = await Executable.compile(gpu, g, [y]);
    const ns: number[] = [];
    for (let i = 0; i < 7; i++) ns.push(await timer.time((w) => exe.run({ pos: 0 }, w)));
    exe.dispose();
    ns.sort((a, b) => a - b);
    kernel = (2 * rows * 4096) / (ns[1] / 1e9) / 1e9;
  }
  const bytes = Math.min(256 * 2 ** 20, gpu.limits.maxBufferSize / 2);
  const a = gpu.pool.create(bytes, undefined, 'copy src');
  const b = gpu.pool.create(bytes, undefined, 'copy dst');
  const times: number[] = [];
  for (let i = 0; i < 7; i++) {
    const t0 = performance.now();
    const enc = gpu.device.createCommandEncoder();
    enc.copyBufferToBuffer(a, 0, b, 0, bytes);
    gpu.device.queue.submit([enc.finish()]);
    await gpu.device.queue.onSubmittedWorkDone();
    times.push(performance.now() - t0);
  }
  gpu.pool.destroy(a);
  gpu.pool.destroy(b);
  times.sort((x, y) => x - y);
  return Math.max(kernel, (2 * bytes) / (times[1] / 1000) / 1e9); // read + write, second-best of 7
}

function gitRevision(): string {
  try {
    return execSync('git rev-parse --short HEAD', { encoding: 'utf8', stdio: ['ignore', 'pipe', 'ignore'] }).trim();
  } catch {
    return 'unknown';
  }
}

// Dawn rounds timestamps to ~65 µs unless told otherwise; kernel timing needs the raw counter.
const gpu = await Gpu.create({ dawnFlags: ['disable-dawn-features=timestamp_quantization'] });
try {
  console.log(gpu.describe());
  console.log(`shapes from ${configFile}${args.quick ? ' (--quick)' : ''}`);
  const timer = gpu.has('timestamp-query') ? new GpuTimer(gpu) : null;
  const iterations = Number(args.iterations ?? (args.quick ? 3 : 10));
  const time = Number(args.time ?? (args.quick ? 0 : 300));
  const filter = args.filter ? new RegExp(args.filter) : null;
  const bandwidth = await copyBandwidth(gpu, timer);
  const rows: Row[] = [];
  const rng = new Rng(1234);
  for (const c of cases) {
    if (filter && !filter.test(c.name)) continue;
    const g = new Graph();
    const built = await c.build(gpu, g, rng);
    const exe = await Executable.compile(gpu, g, built.outputs);
    try {
      for (const [t, d] of built.inputs) exe.write(t, d);
      exe.run({ pos: built.pos ?? 0 });
      built.check(await Promise.all(built.outputs.map((o) => exe.read(o))));
      const m = await measure(gpu, timer, exe, built.pos ?? 0, iterations, time);
      rows.push({
        name: c.name,
        kernel: c.kernel,
        medianMs: m.median,
        wallMedianMs: m.wallMedian,
        gflops: c.flops / (m.median / 1000) / 1e9,
        gbps: c.bytes / (m.median / 1000) / 1e9,
        intensity: c.flops / c.bytes,
        roofline: 0,
        samples: m.samples,
        timing: timer ? 'gpu-timestamp' : 'wall',
      });
      const r = rows[rows.length - 1];
      process.stderr.write(`validated and timed: ${c.name}: ${r.medianMs.toFixed(3)} ms, ${r.gflops.toFixed(2)} GFLOP/s, ${r.gbps.toFixed(2)} GB/s\n`);
    } finally {
      exe.dispose();
      for (const n of g.nodes) for (const t of n.inputs) if (t.kind === 'weight') for (const ch of t.chunks ?? []) gpu.pool.destroy(ch.buffer);
    }
  }
  // Compute roof: the best matmul rate measured in this run.
  // (Without a matmul row in this run — a --filter — there is no compute roof: NaN, printed as "-".)
  const matmuls = rows.filter((r) => r.kernel.startsWith('matmul')).map((r) => r.gflops);
  const compute = matmuls.length ? Math.max(...matmuls) : Number.NaN;
  for (const r of rows) {
    const roof = Number.isNaN(compute) ? r.intensity * bandwidth : Math.min(compute, r.intensity * bandwidth);
    r.roofline = r.intensity > 0 && !Number.isNaN(compute) ? r.gflops / roof : r.gbps / bandwidth;
  }
  const w = Math.max(...rows.map((r) => r.name.length));
  console.log(`\nroofline: copy bandwidth ${bandwidth.toFixed(1)} GB/s, best matmul ${compute.toFixed(1)} GFLOP/s; times are ${timer ? 'GPU timestamps' : 'wall clock'} (median)`);
  console.log(`${'kernel'.padEnd(w)}  ${'median ms'.padStart(10)}  ${'wall ms'.padStart(9)}  ${'GFLOP/s'.padStart(8)}  ${'GB/s'.padStart(7)}  ${'roofline'.padStart(8)}`);
  for (const r of rows) {
    console.log(
      `${r.name.padEnd(w)}  ${r.medianMs.toFixed(3).padStart(10)}  ${r.wallMedianMs.toFixed(2).padStart(9)}  ${r.gflops.toFixed(2).padStart(8)}  ${r.gbps.toFixed(2).padStart(7)}  ${(100 * r.roofline).toFixed(0).padStart(7)}%`,
    );
  }
  if (args.json) {
    const out = {
      date: new Date().toISOString(),
      revision: gitRevision(),
      adapter: { vendor: gpu.info.vendor, architecture: gpu.info.architecture, device: gpu.info.device, description: gpu.info.description },
      features: [...gpu.features].sort(),
      config: configFile,
      quick: !!args.quick,
      roofline: { bandwidthGBps: bandwidth, computeGFLOPs: compute },
      rows,
    };
    writeFileSync(args.json, JSON.stringify(out, null, 2));
    const base = args.json.replace(/\.json$/, '') + '.roofline';
    const svg = rooflineSvg(rows, bandwidth, compute, `${gpu.info.description || gpu.info.vendor}: ${rows.length} kernels (${timer ? 'GPU timestamps' : 'wall clock'})`);
    const files = Number.isNaN(compute) ? [] : await writeRoofline(base, svg);
    console.log(`wrote ${[args.json, ...files].join(', ')}`);
  }
  timer?.destroy();
} finally {
  gpu.destroy();
}
