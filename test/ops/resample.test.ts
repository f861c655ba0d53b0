// Image kernels (shaders/resample.wgsl: resample_h, resample_v, pixel_values) against float64 CPU references on
// random planes, windows, taps and level tables, at sizes that are not multiples of the workgroup (64). The
// references follow the definitions (a rounded sum, round(v·a/255), PIL's alpha blend), not the host resampler's code.
import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { Rng, assertClose, testGpu } from '../helpers.ts';
import { ImageEncoder, PREMULTIPLY, UNPREMULTIPLY, sizeClass, type Plane, type PlaneWindow } from '../../src/ops/resample.ts';
import type { Taps } from '../../src/image/resample.ts';
import type { Gpu } from '../../src/gpu/device.ts';

const ONE = 2 ** 22;

/** Random RGBA pixels, 4 bytes each; alpha drawn from the cases the blend treats apart (0, 255) and the rest. */
function randomPixels(rng: Rng, n: number): Uint8Array {
  const d = new Uint8Array(n * 4);
  for (let i = 0; i < d.length; i++) d[i] = Math.floor(rng.next() * 256);
  for (let i = 0; i < n; i++) {
    const r = rng.next();
    if (r < 0.15) d[i * 4 + 3] = 0;
    else if (r < 0.4) d[i * 4 + 3] = 255;
  }
  return d;
}

/** Random taps over an axis of `inSize`: 0 to 9 of them per output, start within the axis, Σ|w| ≤ 1.5 (no int32 overflow). */
function randomTaps(rng: Rng, inSize: number, outSize: number): Taps {
  const stride = 9;
  const start = new Int32Array(outSize);
  const count = new Int32Array(outSize);
  const weights = new Int32Array(outSize * stride);
  for (let i = 0; i < outSize; i++) {
    const n = Math.min(inSize, Math.floor(rng.next() * (stride + 1)));
    count[i] = n;
    start[i] = Math.floor(rng.next() * (inSize - n + 1));
    for (let j = 0; j < n; j++) weights[i * stride + j] = Math.round(((rng.next() * 2.5 - 1) * ONE * 1.5) / Math.max(n, 1) / 1.5);
  }
  return { start, count, weights, stride };
}

/** Channel c of pixel (x, y) of a window over host pixels (4 bytes a pixel). */
function at(w: { data: Uint8Array; pw: number; ph: number; x0: number; y0: number; fill: number[] }, x: number, y: number, c: number): number {
  const sx = x + w.x0;
  const sy = y + w.y0;
  if (sx < 0 || sy < 0 || sx >= w.pw || sy >= w.ph) return w.fill[c];
  return w.data[(sy * w.pw + sx) * 4 + c];
}

const round255 = (x: number) => Math.floor(x / 255 + 0.5);

/** One resize pass in float64: out[x|y] = clip(floor((2^21 + Σ q·w) / 2^22)), premultiplied reads, straight writes. */
function resample64(src: Parameters<typeof at>[0], axis: 'h' | 'v', w: number, h: number, taps: Taps, flags: number): Uint8Array {
  const out = new Uint8Array(w * h * 4);
  for (let y = 0; y < h; y++) {
    for (let x = 0; x < w; x++) {
      const i = axis === 'h' ? x : y;
      const acc = [ONE / 2, ONE / 2, ONE / 2, ONE / 2];
      for (let j = 0; j < taps.count[i]; j++) {
        const [sx, sy] = axis === 'h' ? [taps.start[i] + j, y] : [x, taps.start[i] + j];
        const a = at(src, sx, sy, 3);
        for (let c = 0; c < 4; c++) {
          let q = at(src, sx, sy, c);
          if (flags & PREMULTIPLY && c < 3) q = round255(q * a);
          acc[c] += q * taps.weights[i * taps.stride + j];
        }
      }
      const s = acc.map((v) => Math.min(255, Math.max(0, Math.floor(v / ONE))));
      if (flags & UNPREMULTIPLY && s[3] !== 0 && s[3] !== 255) for (let c = 0; c < 3; c++) s[c] = Math.min(255, Math.floor((255 * s[c]) / s[3]));
      out.set(s, (y * w + x) * 4);
    }
  }
  return out;
}

/** A plane's pixels, 4 bytes each, without the padding of its rows. */
async function readBytes(gpu: Gpu, p: Plane): Promise<Uint8Array> {
  const all = new Uint8Array(await gpu.pool.read(p.buffer, p.pitch * p.height * 4));
  const out = new Uint8Array(p.width * p.height * 4);
  for (let y = 0; y < p.height; y++) out.set(all.subarray(y * p.pitch * 4, (y * p.pitch + p.width) * 4), y * p.width * 4);
  return out;
}

function firstDiff(a: Uint8Array, b: Uint8Array): string {
  const i = a.findIndex((v, k) => v !== b[k]);
  return i < 0 ? 'equal' : `first difference at pixel ${Math.floor(i / 4)} channel ${i % 4}: got ${a[i]}, expected ${b[i]}`;
}

// Output sizes around the workgroup: 1, below, just past, several groups plus a remainder. Margins of 0 and 4 put
// the window at a multiple of 4 (the by-four entries), the others not.
const SIZES: [number, number, number, number][] = [
  // in w, in h, out along the resized axis, plane margin (the window's offset inside a larger plane)
  [1, 300, 7, 0],
  [37, 23, 101, 3],
  [130, 5, 65, 0],
  [64, 64, 1, 2],
  [997, 13, 129, 1],
  [37, 22, 70, 4],
  [66, 41, 3, 0],
];

describe('resample_h and resample_v against float64', () => {
  for (const [iw, ih, out, margin] of SIZES) {
    for (const [axis, byFour] of [['h', true], ['v', true], ['h', false], ['v', false]] as const) {
      if (!byFour && margin % 4 !== 0) continue; // per pixel anyway
      const entry = `resample_${axis}${byFour && margin % 4 === 0 ? '4' : ''}`;
      it(`${entry}: ${iw}×${ih} → ${axis === 'h' ? `${out}×${ih}` : `${iw}×${out}`} (window at ${margin}, ${margin} of a larger plane), every flag`, async () => {
        const gpu = await testGpu();
        const rng = new Rng(iw * 1000 + ih + out + (axis === 'v' ? 7 : 0));
        const pw = iw + 2 * margin;
        const ph = ih + 2 * margin;
        const data = randomPixels(rng, pw * ph);
        const enc = await ImageEncoder.create(gpu);
        enc.byFour = byFour;
        const plane = await enc.upload({ data, width: pw, height: ph, channels: 4 });
        const win: PlaneWindow = { plane, x0: margin, y0: margin, width: iw, height: ih, fill: [0, 0, 0, 0] };
        const taps = randomTaps(rng, axis === 'h' ? iw : ih, out);
        const [w, h] = axis === 'h' ? [out, ih] : [iw, out];
        for (const flags of [0, PREMULTIPLY, UNPREMULTIPLY, PREMULTIPLY | UNPREMULTIPLY]) {
          const dst = enc.plane(w, h);
          enc.resample(axis, win, dst, taps, flags);
          enc.submit();
          const got = await readBytes(gpu, dst);
          const want = resample64({ data, pw, ph, x0: margin, y0: margin, fill: [0, 0, 0, 0] }, axis, w, h, taps, flags);
          assert.ok(got.every((v, i) => v === want[i]), `flags ${flags}: ${firstDiff(got, want)}`);
          enc.release(dst);
        }
        enc.release(plane);
      });
    }
  }

  it('a window reaching past the plane reads its fill there (both passes, premultiplied fill)', async () => {
    const gpu = await testGpu();
    const rng = new Rng(42);
    const [pw, ph] = [29, 17];
    const data = randomPixels(rng, pw * ph);
    const enc = await ImageEncoder.create(gpu);
    const plane = await enc.upload({ data, width: pw, height: ph, channels: 4 });
    const fill = [200, 17, 99, 130];
    // 41×33 at (−5, −9): the plane sits inside with fill on every side.
    const win: PlaneWindow = { plane, x0: -5, y0: -9, width: 41, height: 33, fill };
    const ref = { data, pw, ph, x0: -5, y0: -9, fill };
    for (const axis of ['h', 'v'] as const) {
      const taps = randomTaps(rng, axis === 'h' ? 41 : 33, 70);
      const [w, h] = axis === 'h' ? [70, 33] : [41, 70];
      const dst = enc.plane(w, h);
      enc.resample(axis, win, dst, taps, PREMULTIPLY | UNPREMULTIPLY);
      enc.submit();
      const got = await readBytes(gpu, dst);
      const want = resample64(ref, axis, w, h, taps, PREMULTIPLY | UNPREMULTIPLY);
      assert.ok(got.every((v, i) => v === want[i]), `${axis}: ${firstDiff(got, want)}`);
      enc.release(dst);
    }
    enc.release(plane);
  });

  it('refuses an output plane of the wrong size', async () => {
    const gpu = await testGpu();
    const enc = await ImageEncoder.create(gpu);
    const plane = enc.plane(4, 4);
    const win: PlaneWindow = { plane, x0: 0, y0: 0, width: 4, height: 4, fill: [0, 0, 0, 0] };
    assert.throws(() => enc.resample('h', win, enc.plane(3, 3), randomTaps(new Rng(1), 4, 5), 0), /output plane is 3×3, expected 5×4/);
  });
});

describe('pixel_values against float64', () => {
  // [window w, h, x0, y0] over a 45×31 plane: inside, reaching past each edge, and larger than the plane.
  const WINDOWS: [number, number, number, number][] = [
    [45, 31, 0, 0],
    [13, 7, 30, 22],
    [65, 3, -3, 29],
    [1, 300, 44, -100],
    [70, 50, -10, -9],
  ];
  for (const [w, h, x0, y0] of WINDOWS) {
    for (const composite of [false, true]) {
      it(`${w}×${h} window at (${x0}, ${y0})${composite ? ', RGBA over white' : ''}, written at an offset`, async () => {
        const gpu = await testGpu();
        const rng = new Rng(w * 31 + h + (composite ? 1 : 0));
        const [pw, ph] = [45, 31];
        const data = randomPixels(rng, pw * ph);
        const fill = [3, 250, 77, composite ? 90 : 0];
        const levels = new Float32Array(768).map(() => rng.normal());
        const enc = await ImageEncoder.create(gpu);
        const plane = await enc.upload({ data, width: pw, height: ph, channels: 4 });
        const lut = gpu.pool.upload(levels);
        // The values land at `offset` of a larger buffer whose other contents must stay as they were.
        const offset = 5;
        const total = offset + 3 * w * h + 11;
        const sentinel = new Float32Array(total).fill(-1234.5);
        const out = gpu.pool.upload(sentinel);
        enc.pixelValues({ plane, x0, y0, width: w, height: h, fill }, composite, lut, out, offset);
        enc.submit();
        const got = await gpu.pool.readF32(out, total);
        const want = Float64Array.from(sentinel);
        const ref = { data, pw, ph, x0, y0, fill };
        for (let y = 0; y < h; y++) {
          for (let x = 0; x < w; x++) {
            const a = at(ref, x, y, 3);
            for (let c = 0; c < 3; c++) {
              let v = at(ref, x, y, c);
              if (composite) v = a === 255 ? v : a === 0 ? 255 : round255(v * a + 255 * (255 - a));
              want[offset + (c * h + y) * w + x] = levels[c * 256 + v];
            }
          }
        }
        assertClose(got, want, { atol: 0 }, `pixel_values ${w}×${h}`);
        enc.release(plane);
        gpu.pool.destroy(lut);
        gpu.pool.destroy(out);
      });
    }
  }
});

describe('ImageEncoder', () => {
  it('plane buffers come in size classes at most 25% larger (past 64 bytes), and go back to the pool', async () => {
    for (const n of [1, 15, 16, 17, 100, 1000, 4096 * 4096 * 4 + 1]) {
      const c = sizeClass(n);
      assert.ok(c >= n && c <= Math.max(64, n * 1.25), `${n} → ${c}`);
    }
    assert.equal(sizeClass(2048 * 2048 * 4), 2048 * 2048 * 4);
    const gpu = await testGpu();
    const enc = await ImageEncoder.create(gpu);
    const a = enc.plane(100, 100);
    enc.release(a);
    const b = enc.plane(99, 101); // the same class: the same buffer
    assert.equal(b.buffer, a.buffer);
    enc.release(b);
  });
});
