// Seeded test and benchmark data: random arrays, checkpoint-dtype encodings, and weights uploaded
// through the same path as checkpoints. Free of node:test so benchmarks can use it too.
import { getFloat16, setFloat16 } from '@petamoriken/float16';
import type { Gpu } from '../src/gpu/device.ts';
import type { Graph } from '../src/graph/graph.ts';
import { uploadQuant, uploadTensor, type SourceDType, type UploadOptions } from '../src/models/storage.ts';
import type { QuantRows, QuantSpec } from '../src/io/quant.ts';
import type { SeededRandom } from '../src/random.ts';

const f16View = new DataView(new ArrayBuffer(2));
/** The f16 bit pattern nearest to x, and the value of a pattern (through @petamoriken/float16, not our code). */
function f16Bits(x: number): number {
  setFloat16(f16View, 0, x, true);
  return f16View.getUint16(0, true);
}
function f16Of(h: number): number {
  f16View.setUint16(0, h, true);
  return getFloat16(f16View, 0, true);
}

/** The tests' and benches' seeded data come from the one generator (normal(), array()); bench/cases/ and the tests know it as Rng. */
export { SeededRandom as Rng } from '../src/random.ts';

/** Stored bytes of `values` in a checkpoint dtype, and the values as that dtype rounds them. */
export function encode(values: Float32Array, dtype: SourceDType): { bytes: Uint8Array; rounded: Float64Array } {
  const n = values.length;
  const rounded = new Float64Array(n);
  if (dtype === 'F32') {
    for (let i = 0; i < n; i++) rounded[i] = values[i];
    return { bytes: new Uint8Array(values.buffer.slice(values.byteOffset, values.byteOffset + values.byteLength)), rounded };
  }
  const bytes = new Uint8Array(n * 2);
  const view = new DataView(bytes.buffer);
  const f = new Float32Array(1);
  const u = new Uint32Array(f.buffer);
  for (let i = 0; i < n; i++) {
    if (dtype === 'F16') {
      setFloat16(view, i * 2, values[i], true);
      rounded[i] = getFloat16(view, i * 2, true);
    } else {
      f[0] = values[i];
      const bits = u[0];
      const r = (bits + 0x7fff + ((bits >>> 16) & 1)) >>> 16; // round to nearest even
      view.setUint16(i * 2, r, true);
      u[0] = r << 16;
      rounded[i] = f[0];
    }
  }
  return { bytes, rounded };
}

/**
 * Uploads `values` stored as `dtype` (with an optional storage preference) and returns the tensor and
 * the exact values it holds on the GPU.
 */
export async function weight(
  gpu: Gpu,
  g: Graph,
  name: string,
  shape: number[],
  values: Float32Array,
  dtype: SourceDType = 'F32',
  opts: UploadOptions = {},
) {
  const { bytes, rounded } = encode(values, dtype);
  const up = await uploadTensor(gpu, name, bytes, dtype, shape, opts);
  // Narrowed or re-rounded on the GPU: the stored values rounded once more.
  const to: SourceDType = up.dtype === 'f16' || up.dtype === 'f16x2' ? 'F16' : up.dtype === 'bf16x2' ? 'BF16' : dtype;
  const held = to !== dtype && up.dtype !== 'f32' ? encode(Float32Array.from(rounded), to).rounded : rounded;
  return { t: g.weight(name, shape, up.dtype, up.chunks, up.quant), v: held };
}

/**
 * Asserts |actual − expected| <= atol + rtol·|expected| everywhere; the message gives the max error and
 * the first index beyond tolerance.
 */
export function assertClose(
  actual: ArrayLike<number>,
  expected: ArrayLike<number>,
  tol: { atol: number; rtol?: number },
  label: string,
): { maxAbs: number } {
  if (actual.length !== expected.length) throw new Error(`${label}: length ${actual.length}, expected ${expected.length}`);
  let maxAbs = 0;
  let maxAt = -1;
  let firstBad = -1;
  for (let i = 0; i < actual.length; i++) {
    const e = Math.abs(actual[i] - expected[i]);
    if (!(e <= maxAbs) || Number.isNaN(e)) {
      maxAbs = Number.isNaN(e) ? Infinity : e;
      maxAt = i;
    }
    if (firstBad < 0 && !(e <= tol.atol + (tol.rtol ?? 0) * Math.abs(expected[i]))) firstBad = i;
  }
  if (firstBad >= 0) {
    throw new Error(
      `${label}: max |Δ| ${maxAbs.toExponential(3)} at ${maxAt}; first beyond tolerance (atol ${tol.atol}, rtol ${tol.rtol ?? 0}) ` +
        `at index ${firstBad}: got ${actual[firstBad]}, expected ${expected[firstBad]}`,
    );
  }
  return { maxAbs };
}

/**
 * A random q4 / q8 weight [N, K] in the kernels' layout (codes, f16 scales in ±`scale`, zeros or the
 * implicit midpoint), uploaded; `v` is its dequantized value (q − z)·s computed here in float64.
 */
export function quantWeight(gpu: Gpu, g: Graph, name: string, N: number, K: number, rng: SeededRandom, spec: QuantSpec, scale = 0.05) {
  const { bits, group } = spec;
  const groups = K / group;
  if (!Number.isInteger(groups)) throw new Error(`quantWeight: group ${group} does not divide K ${K}`);
  const levels = 1 << bits;
  const codes = new Uint8Array(N * K).map(() => Math.floor(rng.next() * levels));
  const values = new Uint32Array((N * K * bits) / 32);
  codes.forEach((q, e) => (values[Math.floor((e * bits) / 32)] |= q << ((e * bits) % 32)));
  const scales = new Uint16Array(N * groups).map(() => f16Bits((rng.next() * 2 - 1) * scale));
  const zeros = spec.zeros ? new Uint8Array(N * groups).map(() => Math.floor(rng.next() * levels)) : undefined;
  const q: QuantRows = { spec, rows: N, K, values, scales, zeros };
  const v = new Float64Array(N * K);
  for (let n = 0; n < N; n++) {
    for (let k = 0; k < K; k++) {
      const i = n * groups + Math.floor(k / group);
      const z = zeros ? zeros[i] : levels / 2;
      v[n * K + k] = (codes[n * K + k] - z) * f16Of(scales[i]);
    }
  }
  const up = uploadQuant(gpu, name, q);
  return { t: g.weight(name, [N, K], up.dtype, up.chunks, up.quant), v, q };
}
