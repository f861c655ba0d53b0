// Seeded test and benchmark data: random arrays, checkpoint-dtype encodings, and weights uploaded
// through the same path as checkpoints. Free of node:test so benchmarks can use it too.
import { getFloat16, setFloat16 } from '@petamoriken/float16';
import type { Gpu } from '../src/gpu/device.ts';
import type { Graph } from '../src/graph/graph.ts';
import { uploadTensor, type SourceDType, type UploadOptions } from '../src/io/upload.ts';

/** The tests' and benches' seeded data come from the one generator (normal(), array()); bench/cases.ts and the tests know it as Rng. */
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
  // Narrowed to f16 on the GPU: the stored values rounded once more.
  const held = up.dtype === 'f16' && dtype !== 'F16' ? encode(Float32Array.from(rounded), 'F16').rounded : rounded;
  return { t: g.weight(name, shape, up.dtype, up.chunks), v: held };
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
