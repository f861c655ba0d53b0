/**
 * Pillow-exact resampling. Every resize reimplements Pillow's `Image.resize` arithmetic (separable convolution,
 * horizontal pass then vertical, 22-bit fixed-point coefficients, uint8 rounding between passes and between
 * successive resizes, premultiplied alpha for RGBA, nearest via the affine scale path), so the pixels match what
 * transformers produces with PIL bit for bit. sharp only decodes.
 */
import type { Pixels } from './decode.ts';

/** An image's size and channels: all the processors' geometry reads, wherever the pixels are. */
export interface Raster {
  width: number;
  height: number;
  channels: 3 | 4;
}

/**
 * The image operations the processors are written in, over images of type I: {@link PIXEL_OPS} on host
 * pixels, or frames on the device (gpu-preprocess.ts), so that both paths follow one geometry.
 */
export interface ImageOps<I extends Raster> {
  /** PIL `Image.resize((outW, outH), resample)`; the image itself when the size is unchanged. */
  resize(img: I, outW: number, outH: number, resample: number): I;
  /** The w×h window at (x0, y0), `fill` (zeros when absent) where it reaches past the image: see {@link extract}. */
  extract(img: I, x0: number, y0: number, w: number, h: number, fill?: readonly number[]): I;
  /** PIL `convert("RGB")`: alpha dropped, not composited. */
  dropAlpha(img: I): I;
}

// ---------------------------------------------------------------------------------------------------------------
// Pillow-compatible resampling

/** (a·b)/255 rounded, PIL's MULDIV255. */
export function mulDiv255(a: number, b: number): number {
  const t = a * b + 128;
  return ((t >> 8) + t) >> 8;
}

interface Filter {
  support: number;
  weight: (x: number) => number;
}

function sinc(x: number): number {
  if (x === 0) return 1;
  const px = x * Math.PI;
  return Math.sin(px) / px;
}

/** PIL's filters, by resampling code (0, nearest, is not a convolution). */
export const FILTERS: Record<number, Filter> = {
  1: { support: 3, weight: (x) => (x >= -3 && x < 3 ? sinc(x) * sinc(x / 3) : 0) }, // LANCZOS (a = 3)
  2: { support: 1, weight: (x) => { const a = Math.abs(x); return a < 1 ? 1 - a : 0; } }, // BILINEAR (triangle)
  3: {
    // BICUBIC, Keys cubic with a = -0.5
    support: 2,
    weight: (x) => {
      const a = -0.5;
      const t = Math.abs(x);
      if (t < 1) return ((a + 2) * t - (a + 3)) * t * t + 1;
      if (t < 2) return (((t - 5) * t + 8) * t - 4) * a;
      return 0;
    },
  },
  4: { support: 0.5, weight: (x) => (x > -0.5 && x <= 0.5 ? 1 : 0) }, // BOX
  5: {
    // HAMMING-windowed sinc
    support: 1,
    weight: (x) => {
      if (x === 0) return 1;
      if (x <= -1 || x >= 1) return 0;
      const px = x * Math.PI;
      return (Math.sin(px) / px) * (0.54 + 0.46 * Math.cos(px));
    },
  },
};

const PRECISION_BITS = 22; // 32 - 8 - 2, as PIL's 8-bit resampler
const ROUND_HALF = 1 << (PRECISION_BITS - 1);
const ONE = 1 << PRECISION_BITS;

/** One axis of a resize: for each output index, the input indices it reads and their fixed-point weights. */
export interface Taps {
  /** First input index per output index. */
  start: Int32Array;
  /** Number of taps per output index. */
  count: Int32Array;
  /** Fixed-point weights, `stride` per output index. */
  weights: Int32Array;
  stride: number;
}

/** Per-output taps for resizing one axis from `inSize` to `outSize`, with PIL's support, centring and rounding. */
function computeTaps(inSize: number, outSize: number, filter: Filter): Taps {
  const scale = inSize / outSize;
  const filterScale = Math.max(scale, 1);
  const support = filter.support * filterScale;
  const stride = Math.ceil(support) * 2 + 1;
  const inv = 1 / filterScale;
  const start = new Int32Array(outSize);
  const count = new Int32Array(outSize);
  const weights = new Int32Array(outSize * stride);
  const w = new Float64Array(stride);
  for (let i = 0; i < outSize; i++) {
    const centre = (i + 0.5) * scale;
    const lo = Math.max(0, Math.trunc(centre - support + 0.5));
    const hi = Math.min(inSize, Math.trunc(centre + support + 0.5));
    const n = hi - lo;
    let sum = 0;
    for (let j = 0; j < n; j++) {
      w[j] = filter.weight((j + lo - centre + 0.5) * inv);
      sum += w[j];
    }
    for (let j = 0; j < n; j++) {
      const v = sum !== 0 ? w[j] / sum : w[j];
      // C's (int) cast of ±0.5-biased values: round half away from zero.
      weights[i * stride + j] = v < 0 ? Math.trunc(-0.5 + v * ONE) : Math.trunc(0.5 + v * ONE);
    }
    start[i] = lo;
    count[i] = n;
  }
  return { start, count, weights, stride };
}

function clip8(acc: number): number {
  const v = Math.floor(acc / ONE);
  return v < 0 ? 0 : v > 255 ? 255 : v;
}

function resampleHorizontal(src: Uint8Array, width: number, height: number, ch: number, outW: number, taps: Taps): Uint8Array {
  const out = new Uint8Array(outW * height * ch);
  const { start, count, weights, stride } = taps;
  for (let y = 0; y < height; y++) {
    const rowIn = y * width * ch;
    let o = y * outW * ch;
    for (let x = 0; x < outW; x++) {
      const n = count[x];
      const k0 = x * stride;
      let p = rowIn + start[x] * ch;
      // All channels of a pixel in one sweep over the taps (ch is 3 or 4).
      let a0 = ROUND_HALF;
      let a1 = ROUND_HALF;
      let a2 = ROUND_HALF;
      let a3 = ROUND_HALF;
      if (ch === 4) {
        for (let j = 0; j < n; j++, p += 4) {
          const k = weights[k0 + j];
          a0 += src[p] * k;
          a1 += src[p + 1] * k;
          a2 += src[p + 2] * k;
          a3 += src[p + 3] * k;
        }
      } else {
        for (let j = 0; j < n; j++, p += 3) {
          const k = weights[k0 + j];
          a0 += src[p] * k;
          a1 += src[p + 1] * k;
          a2 += src[p + 2] * k;
        }
      }
      out[o++] = clip8(a0);
      out[o++] = clip8(a1);
      out[o++] = clip8(a2);
      if (ch === 4) out[o++] = clip8(a3);
    }
  }
  return out;
}

function resampleVertical(src: Uint8Array, width: number, ch: number, outH: number, taps: Taps): Uint8Array {
  const rowLen = width * ch;
  const out = new Uint8Array(rowLen * outH);
  // int32 accumulators as in PIL: |sum| <= 255 * sum|k| + 2^21 stays below 2^31 for every PIL filter.
  const acc = new Int32Array(rowLen);
  const { start, count, weights, stride } = taps;
  for (let y = 0; y < outH; y++) {
    acc.fill(ROUND_HALF);
    const n = count[y];
    for (let j = 0; j < n; j++) {
      const k = weights[y * stride + j];
      if (k === 0) continue;
      const r = (start[y] + j) * rowLen;
      for (let i = 0; i < rowLen; i++) acc[i] += src[r + i] * k;
    }
    const o = y * rowLen;
    for (let i = 0; i < rowLen; i++) {
      const v = acc[i] >> PRECISION_BITS;
      out[o + i] = v < 0 ? 0 : v > 255 ? 255 : v;
    }
  }
  return out;
}

/** PIL's nearest source index per output index along one axis (affine scale path: the source coordinate accumulated in steps of in/out). */
export function nearestIndex(inSize: number, outSize: number): Int32Array {
  const idx = new Int32Array(outSize);
  const step = inSize / outSize;
  let o = step * 0.5;
  for (let i = 0; i < outSize; i++, o += step) idx[i] = Math.min(inSize - 1, Math.trunc(o));
  return idx;
}

/**
 * The taps of one axis of `resize(…, resample)`: the filter's, or for nearest (0) one tap of weight 1.0 at
 * {@link nearestIndex}, which the fixed-point passes turn into a plain copy (the GPU resizes nearest that way).
 */
export function resizeTaps(inSize: number, outSize: number, resample: number): Taps {
  if (resample !== 0) return computeTaps(inSize, outSize, FILTERS[resample]);
  const start = nearestIndex(inSize, outSize);
  return { start, count: new Int32Array(outSize).fill(1), weights: new Int32Array(outSize).fill(ONE), stride: 1 };
}

/** PIL's nearest-neighbour scaling (affine scale path, {@link nearestIndex}). */
function resizeNearest(img: Pixels, outW: number, outH: number): Pixels {
  const { data, width, height, channels: ch } = img;
  const xs = nearestIndex(width, outW);
  const ys = nearestIndex(height, outH);
  const out = new Uint8Array(outW * outH * ch);
  for (let y = 0; y < outH; y++) {
    const r = ys[y] * width * ch;
    const o = y * outW * ch;
    for (let x = 0; x < outW; x++) for (let c = 0; c < ch; c++) out[o + x * ch + c] = data[r + xs[x] * ch + c];
  }
  return { data: out, width: outW, height: outH, channels: ch };
}

function premultiply(img: Pixels): Pixels {
  const d = new Uint8Array(img.data.length);
  const s = img.data;
  for (let i = 0; i < s.length; i += 4) {
    const a = s[i + 3];
    d[i] = mulDiv255(s[i], a);
    d[i + 1] = mulDiv255(s[i + 1], a);
    d[i + 2] = mulDiv255(s[i + 2], a);
    d[i + 3] = a;
  }
  return { ...img, data: d };
}

/** In place: PIL's RGBa → RGBA (truncating division, clipped; alpha 0 or 255 left unchanged). */
function unpremultiply(img: Pixels): Pixels {
  const d = img.data;
  for (let i = 0; i < d.length; i += 4) {
    const a = d[i + 3];
    if (a === 0 || a === 255) continue;
    for (let c = 0; c < 3; c++) d[i + c] = Math.min(255, Math.floor((255 * d[i + c]) / a));
  }
  return img;
}

/** PIL `Image.resize((outW, outH), resample)` on an RGB or RGBA image. */
export function resize(img: Pixels, outW: number, outH: number, resample: number): Pixels {
  if (outW === img.width && outH === img.height) return img; // PIL returns a copy
  if (resample === 0) return resizeNearest(img, outW, outH);
  const filter = FILTERS[resample];
  const rgba = img.channels === 4;
  let cur = rgba ? premultiply(img) : img;
  const ch = cur.channels;
  if (outW !== cur.width) {
    const taps = computeTaps(cur.width, outW, filter);
    cur = { data: resampleHorizontal(cur.data, cur.width, cur.height, ch, outW, taps), width: outW, height: cur.height, channels: ch };
  }
  if (outH !== cur.height) {
    const taps = computeTaps(cur.height, outH, filter);
    cur = { data: resampleVertical(cur.data, cur.width, ch, outH, taps), width: cur.width, height: outH, channels: ch };
  }
  return rgba ? unpremultiply(cur) : cur;
}

/**
 * The w×h window of `img` whose top-left corner is at (x0, y0): a crop, or, where the window reaches past the
 * image (negative offsets included), a paste of the image onto a canvas of `fill` (one level per channel; zeros
 * when absent).
 */
export function extract(img: Pixels, x0: number, y0: number, w: number, h: number, fill?: readonly number[]): Pixels {
  const ch = img.channels;
  const out = new Uint8Array(w * h * ch);
  const xa = Math.max(0, x0);
  const xb = Math.min(img.width, x0 + w);
  const ya = Math.max(0, y0);
  const yb = Math.min(img.height, y0 + h);
  if (fill?.some((v) => v !== 0) && (xa > x0 || ya > y0 || xb < x0 + w || yb < y0 + h)) {
    for (let i = 0; i < w * h; i++) for (let c = 0; c < ch; c++) out[i * ch + c] = fill[c];
  }
  if (xb > xa) {
    for (let y = ya; y < yb; y++) {
      const s = (y * img.width + xa) * ch;
      out.set(img.data.subarray(s, s + (xb - xa) * ch), ((y - y0) * w + (xa - x0)) * ch);
    }
  }
  return { data: out, width: w, height: h, channels: ch };
}

/** PIL `convert("RGB")` of an RGB(A) image: the alpha channel is dropped, not composited. */
export function dropAlpha(img: Pixels): Pixels {
  if (img.channels === 3) return img;
  const n = img.width * img.height;
  const out = new Uint8Array(n * 3);
  for (let i = 0; i < n; i++) {
    out[i * 3] = img.data[i * 4];
    out[i * 3 + 1] = img.data[i * 4 + 1];
    out[i * 3 + 2] = img.data[i * 4 + 2];
  }
  return { data: out, width: img.width, height: img.height, channels: 3 };
}

/** The processors' operations on host pixels: the reference path. */
export const PIXEL_OPS: ImageOps<Pixels> = { resize, extract, dropAlpha };
