// src/io/quant.ts against the AWQ and GPTQ fixtures' dequantized weights (made by AutoAWQ's and AutoGPTQ's
// own unpack code, compared bitwise), our own quantization against float64 recomputations, and bad input.
import { test, describe, before, after } from 'node:test';
import assert from 'node:assert/strict';
import * as path from 'node:path';
import { fileURLToPath } from 'node:url';
import { getFloat16, setFloat16 } from '@petamoriken/float16';
import { Checkpoint } from '../../src/io/checkpoint.ts';
import { LoadError, SafetensorsFile } from '../../src/io/safetensors.ts';
import { ConfigError } from '../../src/models/config.ts';
import {
  awqToRows,
  concatRows,
  dequantizeRows,
  f16BitsOf,
  f16Value,
  gptqToRows,
  isNotConverted,
  packedLinearNames,
  packedToRows,
  quantConfigOf,
  quantizeRows,
  readPackedLinear,
  sliceRows,
  type AwqMethod,
  type GptqMethod,
  type PackedLinear,
  type PackedTensor,
  type QuantMethod,
  type QuantRows,
} from '../../src/io/quant.ts';

const fixture = (name: string) => fileURLToPath(new URL(`../fixtures/${name}/`, import.meta.url));
const AWQ_DIR = fixture('llava-awq-tiny');
const GPTQ_DIR = fixture('llava-gptq-tiny');
const AWQ_CONFIG = { bits: 4, group_size: 128, modules_to_not_convert: ['vision_tower', 'multi_modal_projector'], quant_method: 'awq', version: 'gemm', zero_point: true };
const Q_PROJ = 'model.language_model.layers.0.self_attn.q_proj';

/** The f32 bit patterns of a tensor, so that a comparison is bitwise (NaN and −0 included). */
const bitsOf = (a: Float32Array) => new Uint32Array(a.buffer, a.byteOffset, a.length);

/** Asserts equal bit patterns, reporting the mismatch count and the first mismatching index. */
function assertBitwise(got: Float32Array, want: Float32Array, what: string): void {
  assert.equal(got.length, want.length, `${what}: length`);
  const g = bitsOf(got);
  const w = bitsOf(want);
  let bad = 0;
  let first = -1;
  for (let i = 0; i < g.length; i++) {
    if (g[i] !== w[i]) {
      bad++;
      if (first < 0) first = i;
    }
  }
  assert.equal(bad, 0, `${what}: ${bad} of ${g.length} differ, first at ${first}: got ${got[first]}, expected ${want[first]}`);
}

/** A small seeded generator (mulberry32), so that failures reproduce. */
function rng(seed: number): () => number {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 2 ** 32;
  };
}

/** Code of element (n, k), read through BigInt bit arithmetic: independent of the module's word loops. */
function codeAt(q: QuantRows, n: number, k: number): number {
  const bit = BigInt(n) * BigInt(q.K) * BigInt(q.spec.bits) + BigInt(k * q.spec.bits);
  const word = q.values[Number(bit / 32n)];
  return Number((BigInt(word) >> (bit % 32n)) & ((1n << BigInt(q.spec.bits)) - 1n));
}

/** Library decode of an f16 bit pattern (@petamoriken/float16), as a second opinion on f16Value. */
function libF16(h: number): number {
  const dv = new DataView(new ArrayBuffer(2));
  dv.setUint16(0, h, true);
  return getFloat16(dv, 0, true);
}

/** W[n, k] recomputed in float64 from the codes, zeros and scales. */
function dequantF64(q: QuantRows): Float64Array {
  const groups = q.K / q.spec.group;
  const out = new Float64Array(q.rows * q.K);
  for (let n = 0; n < q.rows; n++) {
    for (let k = 0; k < q.K; k++) {
      const g = n * groups + Math.floor(k / q.spec.group);
      const z = q.zeros ? q.zeros[g] : 2 ** (q.spec.bits - 1);
      out[n * q.K + k] = (codeAt(q, n, k) - z) * libF16(q.scales[g]);
    }
  }
  return out;
}

function expectLoadError(fn: () => unknown, file: string, tensor: string, ...parts: (string | RegExp)[]): void {
  assert.throws(fn, (e: unknown) => {
    assert.ok(e instanceof LoadError, `expected LoadError, got ${(e as Error)?.name}: ${(e as Error)?.message}`);
    assert.ok(e.message.includes(file), `message should name the file ${file}: ${e.message}`);
    assert.ok(e.message.includes(JSON.stringify(tensor)), `message should name the tensor ${tensor}: ${e.message}`);
    for (const p of parts) {
      if (typeof p === 'string') assert.ok(e.message.includes(p), `message should say ${JSON.stringify(p)}: ${e.message}`);
      else assert.match(e.message, p);
    }
    return true;
  });
}

function expectConfigError(fn: () => unknown, ...parts: string[]): void {
  assert.throws(fn, (e: unknown) => {
    assert.ok(e instanceof ConfigError, `expected ConfigError, got ${(e as Error)?.name}: ${(e as Error)?.message}`);
    for (const p of parts) assert.ok(e.message.includes(p), `message should say ${JSON.stringify(p)}: ${e.message}`);
    return true;
  });
}

describe('the fixtures', () => {
  const opened: { ck: Checkpoint; ref: SafetensorsFile; method: QuantMethod }[] = [];
  const open = async (dir: string) => {
    const ck = await Checkpoint.open(dir);
    const ref = await SafetensorsFile.open(path.join(dir, 'reference.safetensors'));
    const method = quantConfigOf(ck.config, undefined, dir);
    assert.ok(method);
    opened.push({ ck, ref, method });
    return { ck, ref, method };
  };
  after(async () => {
    for (const o of opened) await Promise.all([o.ck.close(), o.ref.close()]);
  });

  for (const dir of [AWQ_DIR, GPTQ_DIR]) {
    const label = path.basename(dir);

    test(`${label}: every deq.* reference reproduced bitwise`, async () => {
      const { ck, ref, method } = await open(dir);
      const names = [...ref.tensors.keys()].filter((n) => n.startsWith('deq.'));
      assert.equal(names.length, 3);
      for (const name of names) {
        const module = name.slice('deq.'.length, -'.weight'.length);
        const info = ref.tensors.get(name)!;
        assert.equal(info.dtype, 'F32');
        const q = packedToRows(await readPackedLinear(ck, module), method);
        assert.deepEqual([q.rows, q.K], info.shape, `${name}: [rows, K]`);
        const bytes = await ref.read(name);
        const want = new Float32Array(bytes.slice().buffer);
        assertBitwise(dequantizeRows(q), want, name);
      }
    });

    test(`${label}: every quantized linear converts, with the shape the config implies`, async () => {
      const { ck, method } = await open(dir);
      const text = ck.config.text_config as Record<string, number>;
      const [H, I] = [text.hidden_size, text.intermediate_size];
      const want: Record<string, [number, number]> = {
        q_proj: [H, H], k_proj: [H, H], v_proj: [H, H], o_proj: [H, H],
        gate_proj: [I, H], up_proj: [I, H], down_proj: [H, I],
      };
      const modules = packedLinearNames(ck.tensors.keys());
      assert.equal(modules.length, 7 * text.num_hidden_layers);
      for (const module of modules) {
        assert.equal(isNotConverted(method, module), false, module);
        const [rows, K] = want[module.split('.').at(-1)!];
        const q = packedToRows({ ...(await readPackedLinear(ck, module)), rows, K }, method);
        assert.deepEqual([q.rows, q.K], [rows, K], module);
        assert.equal(q.values.length, (rows * K * q.spec.bits) / 32);
        assert.equal(q.scales.length, (rows * K) / q.spec.group);
        // GPTQ with sym true: every zero is 8, so the implicit zero point serves.
        assert.equal(q.spec.zeros, method.method === 'awq', module);
        assert.equal(q.zeros !== undefined, q.spec.zeros);
      }
      for (const float of ['model.vision_tower.vision_model.encoder.layers.0.self_attn.q_proj', 'model.multi_modal_projector.linear_1']) {
        assert.equal(isNotConverted(method, float), method.method === 'awq', float);
      }
    });
  }

  test('the legacy file holds the same packed tensors under the older names', async () => {
    const { ck, method } = await open(AWQ_DIR);
    const legacy = await SafetensorsFile.open(path.join(AWQ_DIR, 'model-legacy.safetensors'));
    try {
      const module = 'language_model.model.layers.0.self_attn.q_proj';
      const part = async (suffix: string): Promise<PackedTensor> => {
        const info = legacy.tensors.get(`${module}.${suffix}`)!;
        return { ...info, bytes: await legacy.read(info.name) };
      };
      const a = awqToRows({ name: module, qweight: await part('qweight'), qzeros: await part('qzeros'), scales: await part('scales') }, method as AwqMethod);
      const b = packedToRows(await readPackedLinear(ck, Q_PROJ), method);
      assert.deepEqual(a, b);
    } finally {
      await legacy.close();
    }
  });
});

describe('quantConfigOf', () => {
  test('AWQ config.json', async () => {
    const ck = await Checkpoint.open(AWQ_DIR);
    await ck.close();
    assert.deepEqual(quantConfigOf(ck.config, undefined, AWQ_DIR), {
      method: 'awq',
      bits: 4,
      group: 128,
      zeroPoint: true,
      notConverted: ['vision_tower', 'multi_modal_projector'],
      where: `${path.join(AWQ_DIR, 'config.json')} quantization_config`,
    });
    // AutoAWQ writes "GEMM"; transformers' defaults fill what is left out.
    assert.deepEqual(quantConfigOf({ quantization_config: { quant_method: 'awq', version: 'GEMM' } }, undefined, 'm'), {
      method: 'awq', bits: 4, group: 128, zeroPoint: true, notConverted: [], where: `${path.join('m', 'config.json')} quantization_config`,
    });
  });

  test('GPTQ config.json, and quantize_config.json alone', async () => {
    const ck = await Checkpoint.open(GPTQ_DIR);
    await ck.close();
    const want = { method: 'gptq', bits: 4, group: 64, descAct: false, sym: true, format: 'gptq', notConverted: [] };
    assert.deepEqual(quantConfigOf(ck.config, undefined, GPTQ_DIR), { ...want, where: `${path.join(GPTQ_DIR, 'config.json')} quantization_config` });

    const file = path.join(GPTQ_DIR, 'quantize_config.json');
    const separate = JSON.parse((await import('node:fs')).readFileSync(file, 'utf8')) as Record<string, unknown>;
    const { quantization_config: _, ...plain } = ck.config;
    assert.deepEqual(quantConfigOf(plain, separate, GPTQ_DIR), { ...want, where: file });
    // Older AutoGPTQ files name neither quant_method nor checkpoint_format: GPTQ v1.
    const { quant_method: _m, checkpoint_format: _f, ...older } = separate;
    assert.deepEqual(quantConfigOf(plain, older, GPTQ_DIR), { ...want, where: file });
    // config.json wins over the separate file, as in transformers.
    assert.equal(quantConfigOf(ck.config, { ...separate, bits: 8 }, GPTQ_DIR)?.bits, 4);
    assert.equal(quantConfigOf(plain, undefined, GPTQ_DIR), undefined);
    assert.equal(quantConfigOf({ quantization_config: null }, undefined, GPTQ_DIR), undefined);

    const v2 = quantConfigOf({ quantization_config: { quant_method: 'gptq', bits: 8, group_size: -1, checkpoint_format: 'gptq_v2' } }, undefined, 'm');
    assert.deepEqual(v2 && [v2.bits, v2.group, (v2 as GptqMethod).format], [8, -1, 'gptq_v2']);
  });

  test('unsupported settings are refused, naming the file, the key, the value and what is supported', () => {
    const cfg = (q: Record<string, unknown>) => () => quantConfigOf({ quantization_config: q }, undefined, '/models/m');
    const at = '/models/m/config.json quantization_config';
    expectConfigError(cfg({ quant_method: 'bitsandbytes' }), at, '"bitsandbytes"', 'supported: awq, gptq');
    expectConfigError(cfg({ bits: 4 }), at, '"quant_method" is missing', 'awq, gptq');
    expectConfigError(cfg({ quant_method: 'gptq', bits: 3, group_size: 128 }), at, '"bits" 3', '4 or 8');
    expectConfigError(cfg({ quant_method: 'gptq', group_size: 128 }), at, '"bits" is missing');
    expectConfigError(cfg({ ...AWQ_CONFIG, bits: 8 }), at, '"bits" 8', '4-bit weights only');
    expectConfigError(cfg({ ...AWQ_CONFIG, version: 'gemv' }), at, 'AWQ version "gemv"', '"gemm"');
    expectConfigError(cfg({ ...AWQ_CONFIG, version: 'gemv_fast' }), at, '"gemv_fast"');
    expectConfigError(cfg({ ...AWQ_CONFIG, backend: 'llm-awq' }), at, 'backend "llm-awq"');
    expectConfigError(cfg({ ...AWQ_CONFIG, group_size: 12 }), at, '"group_size"', 'positive multiple of 8', 'got 12');
    expectConfigError(cfg({ ...AWQ_CONFIG, group_size: 0 }), at, '"group_size"', 'got 0');
    expectConfigError(cfg({ ...AWQ_CONFIG, group_size: '128' }), at, '"group_size" must be an integer', 'got "128"');
    expectConfigError(cfg({ ...AWQ_CONFIG, zero_point: 'yes' }), at, '"zero_point" must be true or false');
    expectConfigError(cfg({ ...AWQ_CONFIG, modules_to_not_convert: 'vision_tower' }), at, '"modules_to_not_convert"');
    expectConfigError(cfg({ quant_method: 'gptq', bits: 4, checkpoint_format: 'marlin' }), at, '"checkpoint_format" "marlin"', '"gptq" or "gptq_v2"');
    expectConfigError(cfg({ quant_method: 'gptq', bits: 4, is_marlin_format: true }), at, 'is_marlin_format');
    expectConfigError(() => quantConfigOf({}, { bits: 2 }, '/models/m'), '/models/m/quantize_config.json', '"bits" 2');
    expectConfigError(() => quantConfigOf({ quantization_config: [] }, undefined, '/models/m'), at, 'must be an object');
  });

  test('isNotConverted matches module names by substring, as transformers does', () => {
    const m = quantConfigOf({ quantization_config: AWQ_CONFIG }, undefined, 'm')!;
    assert.equal(isNotConverted(m, 'vision_tower.vision_model.encoder.layers.0.mlp.fc1'), true);
    assert.equal(isNotConverted(m, 'model.multi_modal_projector.linear_2'), true);
    assert.equal(isNotConverted(m, 'model.language_model.layers.0.mlp.up_proj'), false);
  });
});

describe('f16 bit patterns', () => {
  test('f16Value decodes all 65536 patterns as @petamoriken/float16 does', () => {
    for (let h = 0; h < 65536; h++) {
      const a = f16Value(h);
      const b = libF16(h);
      assert.ok(Object.is(a, b) || (Number.isNaN(a) && Number.isNaN(b)), `0x${h.toString(16)}: ${a} vs ${b}`);
    }
  });

  test('f16BitsOf rounds to nearest even as @petamoriken/float16 does (f32 inputs), saturating at 65504', () => {
    const dv = new DataView(new ArrayBuffer(2));
    const lib = (x: number) => (setFloat16(dv, 0, x, true), dv.getUint16(0, true));
    const next = rng(7);
    const xs: number[] = [0, 2 ** -24, 2 ** -25, 3 * 2 ** -26, 2 ** -14, 2 ** -14 - 2 ** -25, 1, 1 + 2 ** -11, 1 + 3 * 2 ** -11, 2048 + 1, 65504, 65519.99];
    // 2^-28 to 2^15: subnormals to the top binade (beyond 65504 the library gives Infinity, we saturate).
    for (let i = 0; i < 20000; i++) xs.push(Math.fround(2 ** (next() * 43 - 28) * (1 + next())));
    for (const x of xs) assert.equal(f16BitsOf(x), lib(x), `x = ${x}`);
    // Every pattern is its own nearest.
    for (let h = 0; h < 0x7c00; h++) assert.equal(f16BitsOf(f16Value(h)), h);
    assert.equal(f16BitsOf(65520), 0x7bff);
    assert.equal(f16BitsOf(1e30), 0x7bff);
  });
});

describe('quantizeRows', () => {
  const random = (n: number, seed: number, scale = 1) => {
    const next = rng(seed);
    const w = new Float32Array(n);
    for (let i = 0; i < n; i++) w[i] = (next() * 2 - 1) * scale * (1 + 30 * (next() < 0.01 ? 1 : 0)); // with outliers
    return w;
  };

  for (const bits of [4, 8] as const) {
    for (const [rows, K, group] of [[13, 32 * 7, 32], [5, 256, 128], [3, 64, 64], [1, 8, 8], [2, 48, 16]]) {
      test(`bits ${bits}, [${rows}, ${K}], group ${group}: error ≤ scale/2, codes in range, scales the nearest f16`, () => {
        const w = random(rows * K, rows * 1000 + K + bits, 0.05);
        w.fill(0, 0, group); // a zero group
        w.fill(-0, K, K + group); // and a negative-zero one (when rows > 1)
        const q = quantizeRows(w, rows, K, bits, group);
        assert.deepEqual(q.spec, { bits, group, zeros: false });
        assert.equal(q.zeros, undefined);
        assert.equal(q.values.length, (rows * K * bits) / 32);
        assert.equal(q.scales.length, (rows * K) / group);
        const mid = 2 ** (bits - 1);
        const qmax = mid - 1;
        const deq = dequantizeRows(q);
        for (let n = 0; n < rows; n++) {
          for (let g = 0; g < K / group; g++) {
            let amax = 0;
            for (let k = g * group; k < (g + 1) * group; k++) amax = Math.max(amax, Math.abs(w[n * K + k]));
            const s = libF16(q.scales[n * (K / group) + g]);
            if (amax === 0) assert.equal(s, 0, `[${n}, group ${g}]: scale of an all-zero group`);
            else {
              // The nearest f16 to amax / qmax: no neighbour pattern is closer.
              const h = q.scales[n * (K / group) + g];
              const d = Math.abs(s - amax / qmax);
              assert.ok(d <= Math.abs(libF16(h + 1) - amax / qmax) && (h === 1 || d <= Math.abs(libF16(h - 1) - amax / qmax)), `[${n}, group ${g}]: scale ${s} for amax ${amax}`);
            }
            for (let k = g * group; k < (g + 1) * group; k++) {
              const i = n * K + k;
              const code = codeAt(q, n, k);
              // Symmetric: −2^(bits−1) is never needed, since |w| / s ≤ qmax (1 + 2^-11) rounds to qmax at most.
              assert.ok(code >= 1 && code <= 2 * qmax + 1, `[${n}, ${k}]: code ${code}`);
              if (amax === 0) assert.equal(code, mid);
              assert.ok(Math.abs(w[i] - deq[i]) <= s / 2, `[${n}, ${k}]: |${w[i]} − ${deq[i]}| > ${s} / 2`);
            }
          }
        }
        // The reference dequantization equals the float64 recomputation exactly.
        assertBitwise(deq, Float32Array.from(dequantF64(q)), 'dequantizeRows vs float64');
      });
    }
  }

  test('tiny and huge groups keep a finite non-zero scale', () => {
    const w = new Float32Array([1e-9, -2e-9, 0, 0, 0, 0, 0, 0, 1e6, -3e5, 0, 0, 0, 0, 0, 0]);
    const q = quantizeRows(w, 2, 8, 4, 8);
    assert.deepEqual([...q.scales], [1, 0x7bff]); // 2^-24, the smallest subnormal; 65504, the largest finite
    const deq = dequantizeRows(q);
    assert.ok(Math.abs(w[0] - deq[0]) <= 2 ** -25);
    assert.equal(deq[8], 7 * 65504); // clamped: beyond the f16 range the error bound no longer holds
  });

  test('refuses non-finite weights and bad geometry, naming the place', () => {
    const w = new Float32Array(64);
    w[37] = NaN;
    assert.throws(() => quantizeRows(w, 2, 32, 4, 32, 'lm_head.weight'), /lm_head\.weight: weight \[1, 5\] is NaN/);
    w[37] = -Infinity;
    assert.throws(() => quantizeRows(w, 2, 32, 4, 32), /weight \[1, 5\] is -Infinity/);
    assert.throws(() => quantizeRows(new Float32Array(48), 1, 48, 4, 32), /group 32 does not divide K = 48/);
    assert.throws(() => quantizeRows(new Float32Array(48), 1, 48, 4, 12), /positive multiple of 8, got 12/);
    assert.throws(() => quantizeRows(new Float32Array(40), 2, 32, 8), /expected 2·32 = 64 weights, got 40/);
    assert.throws(() => quantizeRows(new Float32Array(64), 2, 32, 3 as 4), /bits must be 4 or 8, got 3/);
  });
});

describe('dequantizeRows', () => {
  for (const bits of [4, 8] as const) {
    test(`bits ${bits} with explicit zeros equals a float64 recomputation`, () => {
      const [rows, K, group] = [6, 64, 16];
      const next = rng(bits);
      const values = new Uint32Array((rows * K * bits) / 32).map(() => (next() * 2 ** 32) >>> 0);
      // Scales over the whole f16 range that stays finite, subnormals and negatives included.
      const scales = new Uint16Array((rows * K) / group).map(() => {
        const h = (next() * 65536) >>> 0;
        return (h & 0x7c00) === 0x7c00 ? h & ~0x4000 : h; // no infinities or NaNs
      });
      const zeros = new Uint8Array((rows * K) / group).map(() => next() * 2 ** bits);
      const q: QuantRows = { spec: { bits, group, zeros: true }, rows, K, values, scales, zeros };
      assertBitwise(dequantizeRows(q), Float32Array.from(dequantF64(q)), `bits ${bits}`);
    });
  }
});

describe('concatRows and sliceRows', () => {
  let ck: Checkpoint;
  let method: QuantMethod;
  before(async () => {
    ck = await Checkpoint.open(AWQ_DIR);
    method = quantConfigOf(ck.config, undefined, AWQ_DIR)!;
  });
  after(() => ck.close());

  test('q|k|v stacked and split again, bitwise', async () => {
    const parts = [];
    for (const p of ['q_proj', 'k_proj', 'v_proj']) {
      parts.push(packedToRows(await readPackedLinear(ck, `model.language_model.layers.1.self_attn.${p}`), method));
    }
    const qkv = concatRows(parts);
    assert.equal(qkv.rows, 3 * 128);
    const whole = dequantizeRows(qkv);
    let r = 0;
    for (const p of parts) {
      const d = dequantizeRows(p);
      assertBitwise(whole.subarray(r * p.K, (r + p.rows) * p.K), d, 'stacked');
      const back = sliceRows(qkv, r, p.rows);
      assert.deepEqual(back, p);
      r += p.rows;
    }
    // Uneven chunks, as a big tensor is split.
    const chunk = sliceRows(qkv, 5, 77);
    assertBitwise(dequantizeRows(chunk), whole.subarray(5 * 128, 82 * 128), 'chunk');
    assert.equal(sliceRows(qkv, 384, 0).values.length, 0);
    assert.throws(() => sliceRows(qkv, 300, 85), /rows \[300, 385\) are not within the tensor's 384 rows/);
  });

  test('parts with and without zeros: the implicit zero point is written out', () => {
    const w = Float32Array.from({ length: 3 * 256 }, (_, i) => Math.sin(i));
    const ours = quantizeRows(w, 3, 256, 4, 128);
    const next = rng(3);
    const withZeros: QuantRows = {
      spec: { bits: 4, group: 128, zeros: true },
      rows: 2,
      K: 256,
      values: new Uint32Array(64).map(() => (next() * 2 ** 32) >>> 0),
      scales: new Uint16Array(4).fill(0x3c00),
      zeros: new Uint8Array([1, 2, 3, 4]),
    };
    const both = concatRows([ours, withZeros]);
    assert.equal(both.spec.zeros, true);
    assert.deepEqual([...both.zeros!], [8, 8, 8, 8, 8, 8, 1, 2, 3, 4]);
    const d = dequantizeRows(both);
    assertBitwise(d.subarray(0, 3 * 256), dequantizeRows(ours), 'implicit part');
    assertBitwise(d.subarray(3 * 256), dequantizeRows(withZeros), 'explicit part');
    assert.equal(concatRows([ours, ours]).spec.zeros, false);
    assert.throws(() => concatRows([ours, quantizeRows(w, 3, 256, 4, 64)]), /part 1 has bits 4, group 64, K 256; expected those of part 0: bits 4, group 128, K 256/);
    assert.throws(() => concatRows([ours, quantizeRows(w, 3, 256, 8, 128)]), /part 1 has bits 8/);
    assert.throws(() => concatRows([]), /no parts/);
  });
});

describe('bad packed tensors', () => {
  let awqCk: Checkpoint;
  let gptqCk: Checkpoint;
  let awq: AwqMethod;
  let gptq: GptqMethod;
  let awqQ: PackedLinear;
  let gptqQ: PackedLinear;
  before(async () => {
    awqCk = await Checkpoint.open(AWQ_DIR);
    gptqCk = await Checkpoint.open(GPTQ_DIR);
    awq = quantConfigOf(awqCk.config, undefined, AWQ_DIR) as AwqMethod;
    gptq = quantConfigOf(gptqCk.config, undefined, GPTQ_DIR) as GptqMethod;
    awqQ = await readPackedLinear(awqCk, Q_PROJ);
    gptqQ = await readPackedLinear(gptqCk, Q_PROJ);
  });
  after(async () => {
    await awqCk.close();
    await gptqCk.close();
  });

  /** The tensor with another declared shape (and bytes to match, so that only the shape is wrong). */
  const reshaped = (t: PackedTensor, shape: number[], dtype = t.dtype): PackedTensor => {
    const bytes = new Uint8Array(shape.reduce((a, b) => a * b, 1) * (dtype === 'F16' ? 2 : 4));
    return { ...t, dtype, shape, bytes };
  };

  test('wrong qweight shape', () => {
    const file = awqQ.qweight.file;
    expectLoadError(() => awqToRows({ ...awqQ, qweight: reshaped(awqQ.qweight, [128, 32]), rows: 128, K: 128 }, awq),
      file, `${Q_PROJ}.qweight`, 'expected I32 [128,16]', 'got I32 [128,32]', 'from the model config');
    expectLoadError(() => awqToRows({ ...awqQ, qweight: reshaped(awqQ.qweight, [128, 16], 'F32') }, awq),
      file, `${Q_PROJ}.qweight`, 'expected I32 [128,16]', 'got F32 [128,16]');
    expectLoadError(() => awqToRows({ ...awqQ, qweight: reshaped(awqQ.qweight, [128, 16, 1]) }, awq),
      file, `${Q_PROJ}.qweight`, 'expected a 2-D tensor', 'got I32 [128,16,1]');
    // GPTQ: packed along K, so a qweight of 32 rows holds K = 256 in features.
    expectLoadError(() => gptqToRows({ ...gptqQ, qweight: reshaped(gptqQ.qweight, [32, 128]), rows: 128, K: 128 }, gptq),
      gptqQ.qweight.file, `${Q_PROJ}.qweight`, 'expected I32 [16,128]', 'got I32 [32,128]');
    // Bytes that do not match the declared shape.
    expectLoadError(() => awqToRows({ ...awqQ, qweight: { ...awqQ.qweight, bytes: awqQ.qweight.bytes.subarray(4) } }, awq),
      file, `${Q_PROJ}.qweight`, 'needs 8192 bytes, got 8188');
  });

  test('wrong scales shape and dtype', () => {
    expectLoadError(() => awqToRows({ ...awqQ, scales: reshaped(awqQ.scales, [2, 128]) }, awq),
      awqQ.scales.file, `${Q_PROJ}.scales`, 'expected F16 [1,128]', 'got F16 [2,128]');
    expectLoadError(() => gptqToRows({ ...gptqQ, scales: reshaped(gptqQ.scales, [2, 64]) }, gptq),
      gptqQ.scales.file, `${Q_PROJ}.scales`, 'expected F16 [2,128]', 'got F16 [2,64]');
    expectLoadError(() => gptqToRows({ ...gptqQ, scales: reshaped(gptqQ.scales, [2, 128], 'F32') }, gptq),
      gptqQ.scales.file, `${Q_PROJ}.scales`, 'expected F16 [2,128]', 'got F32 [2,128]');
    expectLoadError(() => awqToRows({ ...awqQ, qzeros: reshaped(awqQ.qzeros!, [2, 16]) }, awq),
      awqQ.qzeros!.file, `${Q_PROJ}.qzeros`, 'expected I32 [1,16]', 'got I32 [2,16]');
    expectLoadError(() => gptqToRows({ ...gptqQ, qzeros: reshaped(gptqQ.qzeros!, [2, 32]) }, gptq),
      gptqQ.qzeros!.file, `${Q_PROJ}.qzeros`, 'expected I32 [2,16]', 'got I32 [2,32]');
  });

  test('a group size that does not divide K', () => {
    expectLoadError(() => awqToRows(awqQ, { ...awq, group: 96 }), awqQ.qweight.file, `${Q_PROJ}.qweight`, 'group size 96 does not divide K = 128');
    expectLoadError(() => gptqToRows(gptqQ, { ...gptq, group: 48 }), gptqQ.qweight.file, `${Q_PROJ}.qweight`, 'group size 48 does not divide K = 128');
  });

  test('group size −1 is one group over the whole K', () => {
    // The GPTQ fixture's two groups of 64 read as one group of 128 need one scale row and one zero row.
    const one: PackedLinear = {
      ...gptqQ,
      scales: { ...gptqQ.scales, shape: [1, 128], bytes: gptqQ.scales.bytes.slice(0, 256) },
      qzeros: { ...gptqQ.qzeros!, shape: [1, 16], bytes: gptqQ.qzeros!.bytes.slice(0, 64) },
      g_idx: undefined,
    };
    const q = gptqToRows(one, { ...gptq, group: -1 });
    assert.equal(q.spec.group, 128);
    assert.equal(q.scales.length, 128);
    const full = gptqToRows(gptqQ, gptq);
    assertBitwise(dequantizeRows(q).subarray(0, 64), dequantizeRows(full).subarray(0, 64), 'first group');
  });

  test('missing qzeros', () => {
    const { qzeros: _, ...noZeros } = awqQ;
    expectLoadError(() => awqToRows(noZeros, awq), awqQ.qweight.file, `${Q_PROJ}.qzeros`, 'is missing', 'zero_point true', 'expected I32 [1,16]');
    expectLoadError(() => gptqToRows({ ...gptqQ, qzeros: undefined }, gptq), gptqQ.qweight.file, `${Q_PROJ}.qzeros`, 'is missing', 'expected I32 [2,16]');
    // zero_point false: the implicit zero point.
    const q = awqToRows(noZeros, { ...awq, zeroPoint: false });
    assert.deepEqual(q.spec, { bits: 4, group: 128, zeros: false });
  });

  test('act-order g_idx is refused', () => {
    const perm = new Int32Array(128).map((_, k) => Math.floor(((k * 37) % 128) / 64));
    const g_idx: PackedTensor = { ...gptqQ.g_idx!, bytes: new Uint8Array(perm.buffer) };
    expectLoadError(() => gptqToRows({ ...gptqQ, g_idx }, gptq), g_idx.file, `${Q_PROJ}.g_idx`,
      'act-order (desc_act) checkpoints are not supported', 'g_idx[2] is 1, expected floor(2/64) = 0', '"desc_act": true');
    expectLoadError(() => gptqToRows({ ...gptqQ, g_idx: undefined }, { ...gptq, descAct: true }), gptqQ.qweight.file, `${Q_PROJ}.g_idx`, 'desc_act true');
    expectLoadError(() => gptqToRows({ ...gptqQ, g_idx: reshaped(gptqQ.g_idx!, [64]) }, gptq), gptqQ.g_idx!.file, `${Q_PROJ}.g_idx`, 'expected I32 [128]', 'got I32 [64]');
  });

  test('GPTQ v2 stores the zero as is; 8-bit words hold 4 codes', () => {
    // The v1 fixture read as v2 has every zero 7 instead of 8, so the zeros are kept.
    const v2 = gptqToRows(gptqQ, { ...gptq, format: 'gptq_v2' });
    assert.equal(v2.spec.zeros, true);
    assert.ok(v2.zeros!.every((z) => z === 7));
    // A hand-packed 8-bit linear: K 8, N 4, one group; q[k, n] = 16k + n, stored zero of column n = 100 + n.
    const [K, N] = [8, 4];
    const qweight = new Uint32Array(2 * N);
    for (let k = 0; k < K; k++) for (let n = 0; n < N; n++) qweight[(k >> 2) * N + n] |= (16 * k + n) << (8 * (k & 3));
    const qzeros = new Uint32Array([100 | (101 << 8) | (102 << 16) | (103 << 24)]);
    const scales = new Uint16Array(N).fill(0x3c00); // 1.0
    const t = (name: string, dtype: 'I32' | 'F16', shape: number[], a: Uint32Array | Uint16Array): PackedTensor =>
      ({ name: `x.${name}`, file: 'hand.safetensors', dtype, shape, bytes: new Uint8Array(a.buffer) });
    const packed: PackedLinear = { name: 'x', qweight: t('qweight', 'I32', [2, N], qweight), qzeros: t('qzeros', 'I32', [1, 1], qzeros), scales: t('scales', 'F16', [1, N], scales) };
    const m8: GptqMethod = { ...gptq, bits: 8, group: -1 };
    for (const [format, plus] of [['gptq', 1], ['gptq_v2', 0]] as const) {
      const d = dequantizeRows(gptqToRows(packed, { ...m8, format }));
      for (let n = 0; n < N; n++) for (let k = 0; k < K; k++) assert.equal(d[n * K + k], 16 * k + n - (100 + n + plus), `${format} [${n}, ${k}]`);
    }
  });
});
