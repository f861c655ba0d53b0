// Image preprocessing kernels (shaders/resample.wgsl): Pillow's two resize passes and the conversion of 8-bit
// pixels to the vision encoder's float values, on images packed four samples to a u32. They are not graph ops: the
// work depends on each image's size, so an ImageEncoder records one image's dispatches and submits them at once.
import type { Gpu } from '../gpu/device.ts';
import { GpuError } from '../gpu/device.ts';
import type { Taps } from '../image/resample.ts';
import { uniforms } from './common.ts';

/** Invocations per workgroup of every entry (the shader's `override WG`). */
export const WG = 64;

/**
 * An 8-bit image on the device: width×height pixels, row-major, one u32 a pixel (channel c in bits 8c; an RGB image
 * leaves the fourth unused), rows `pitch` pixels apart: the width rounded up to a multiple of 4, so that the
 * kernels can read and write four pixels as a vec4.
 */
export interface Plane {
  buffer: GPUBuffer;
  width: number;
  height: number;
  pitch: number;
}

/** The width×height window of a plane whose top-left corner is at (x0, y0); outside the plane, `fill` (a level per channel). */
export interface PlaneWindow {
  plane: Plane;
  x0: number;
  y0: number;
  width: number;
  height: number;
  fill: readonly number[];
}

/** An image the kernels would hold as a plane larger than one storage binding: preprocess it on the host. */
export class PlaneSizeError extends GpuError {
  constructor(width: number, height: number, maxBinding: number) {
    super(`image plane: ${width}×${height} pixels take ${width * height * 4} bytes, over this device's maxStorageBufferBindingSize (${maxBinding}); preprocess such images on the host`);
    this.name = 'PlaneSizeError';
  }
}

/** Resample flags: premultiply the straight-alpha samples read; unpremultiply the samples written (4 channels). */
export const PREMULTIPLY = 1;
export const UNPREMULTIPLY = 2;

type Entry = 'resample_h' | 'resample_h4' | 'resample_v' | 'resample_v4' | 'pixel_values';
const ENTRIES: Entry[] = ['resample_h', 'resample_h4', 'resample_v', 'resample_v4', 'pixel_values'];

/** The pipelines this file uses, with the bindings each reads (for PipelineCache.prepare). */
export const IMAGE_PIPELINES = ENTRIES.map((entry) => ({ pipeline: { shader: 'resample', entry, constants: { WG } }, bindings: [1, 2, 3] }));

interface Recorded {
  entry: Entry;
  words: Uint32Array;
  src: GPUBuffer;
  /** Binding 2: the taps (uploaded at submit) or the level table. */
  table: Int32Array | GPUBuffer;
  dst: GPUBuffer;
  /** Workgroups along x and y (y folded into z past the limit). */
  grid: [number, number];
}

const UNIFORM_SLOT = 256;
const MAX_GROUPS = 65535;

/** A 2-D grid of workgroups with y folded into z past the limit (the shaders' group_y). */
function foldGrid([x, y]: [number, number]): [number, number, number] {
  if (x === 0 || y === 0) return [0, 1, 1];
  if (x > MAX_GROUPS) throw new GpuError(`image kernels: ${x} workgroups along x exceed ${MAX_GROUPS}`);
  const z = Math.ceil(y / MAX_GROUPS);
  return [x, Math.ceil(y / z), z];
}

/** Bytes rounded up to 2^k · {1, 1.25, 1.5, 1.75}: planes of similar sizes share pooled buffers, at most 25% larger. */
export function sizeClass(bytes: number): number {
  const step = 2 ** Math.max(4, Math.floor(Math.log2(Math.max(bytes, 1))) - 2);
  return Math.ceil(bytes / step) * step;
}

/** Whether a window lies within its plane (nothing to fill). */
function inside(w: PlaneWindow): boolean {
  return w.x0 >= 0 && w.y0 >= 0 && w.x0 + w.width <= w.plane.width && w.y0 + w.height <= w.plane.height;
}

/** The Window struct's twelve words. */
function windowWords(w: PlaneWindow): number[] {
  const fill = [0, 1, 2, 3].reduce((a, c) => a | ((w.fill[c] ?? 0) << (8 * c)), 0) >>> 0;
  // x0 and y0 are i32s in the shader: their two's complement bits.
  return [w.plane.width, w.plane.height, w.plane.pitch, fill, w.x0 >>> 0, w.y0 >>> 0, w.width, w.height, inside(w) ? 1 : 0, 0, 0, 0];
}

/** The taps' rows for resample_h: start, count, then `stride` weights. */
function tapRows(taps: Taps): { table: Int32Array; row: number } {
  const row = taps.stride + 2;
  const table = new Int32Array(taps.start.length * row);
  for (let i = 0; i < taps.start.length; i++) {
    table[i * row] = taps.start[i];
    table[i * row + 1] = taps.count[i];
    table.set(taps.weights.subarray(i * taps.stride, (i + 1) * taps.stride), i * row + 2);
  }
  return { table, row };
}

/**
 * The taps' rows for resample_h4: (start rounded down to a multiple of 4, groups of four, 0, 0), then the weights of
 * pixels start .. start + 4·groups − 1, zero outside the filter's own taps; rows a multiple of 4 long.
 */
function tapRowsByFour(taps: Taps): { table: Int32Array; row: number } {
  const row = 4 + 4 * Math.ceil((taps.stride + 3) / 4);
  const table = new Int32Array(taps.start.length * row);
  for (let i = 0; i < taps.start.length; i++) {
    const start = taps.start[i];
    const n = taps.count[i];
    const first = start & ~3;
    table[i * row] = first;
    table[i * row + 1] = n === 0 ? 0 : Math.ceil((start + n - first) / 4);
    for (let j = 0; j < n; j++) table[i * row + 4 + start - first + j] = taps.weights[i * taps.stride + j];
  }
  return { table, row };
}

/**
 * Records image kernels and submits them as one compute pass: one uniform buffer (a 256-byte slot per dispatch) and
 * one buffer of taps for the whole submission, both freed once it is queued.
 */
export class ImageEncoder {
  private readonly items: Recorded[] = [];
  /** Whether resizes take the by-four entries where they can (tests turn it off to check the per-pixel ones). */
  byFour = true;
  /** Uploads to copy ahead of the pass. */
  private readonly copies: { staging: GPUBuffer; plane: Plane; bytes: number }[] = [];

  private constructor(
    readonly gpu: Gpu,
    private readonly pipelines: Map<Entry, GPUComputePipeline>,
  ) {}

  static async create(gpu: Gpu): Promise<ImageEncoder> {
    const made = await Promise.all(IMAGE_PIPELINES.map((p) => gpu.pipelines.get(p.pipeline)));
    return new ImageEncoder(gpu, new Map(ENTRIES.map((e, i) => [e, made[i]])));
  }

  /**
   * A plane of width×height pixels. Its buffer comes from the GPU's pool, in a size class (see sizeClass), and goes
   * back with release(): on lavapipe the first use of a new 16 MiB buffer costs more than all the kernels of a 512²
   * image.
   */
  plane(width: number, height: number): Plane {
    const pitch = Math.ceil(width / 4) * 4;
    const bytes = pitch * height * 4;
    if (bytes > this.gpu.maxBinding) throw new PlaneSizeError(width, height, this.gpu.maxBinding);
    return { buffer: this.gpu.pool.acquire(Math.min(sizeClass(bytes), this.gpu.maxBinding), 'image plane'), width, height, pitch };
  }

  /**
   * A plane holding 8-bit interleaved RGB or RGBA pixels (RGB gets an unused fourth byte): written by the host
   * straight into a pooled mappable buffer, then copied ahead of the pass at submit(). Reused memory, one pass over
   * the bytes: a fresh host array and writeBuffer's own staging cost several times that on lavapipe.
   */
  async upload(img: { data: Uint8Array; width: number; height: number; channels: 3 | 4 }): Promise<Plane> {
    const { data, width, height, channels } = img;
    if (data.length !== width * height * channels) throw new GpuError(`image upload: ${data.length} bytes for ${width}×${height}×${channels}`);
    const plane = this.plane(width, height);
    const bytes = plane.pitch * height * 4;
    const staging = this.gpu.pool.acquire(sizeClass(bytes), 'image upload', GPUBufferUsage.MAP_WRITE | GPUBufferUsage.COPY_SRC);
    try {
      await staging.mapAsync(GPUMapMode.WRITE, 0, bytes);
    } catch (e) {
      this.gpu.pool.release(staging);
      this.release(plane);
      this.gpu.checkAlive();
      throw e;
    }
    const range = staging.getMappedRange(0, bytes);
    const pitch = plane.pitch;
    if (channels === 4) {
      const out = new Uint8Array(range);
      for (let y = 0; y < height; y++) out.set(data.subarray(y * width * 4, (y + 1) * width * 4), y * pitch * 4);
    } else {
      // Little-endian words, as WebGPU buffers are: R in the low byte.
      const out = new Uint32Array(range);
      for (let y = 0, p = 0; y < height; y++) {
        for (let i = y * pitch, end = i + width; i < end; i++, p += 3) out[i] = data[p] | (data[p + 1] << 8) | (data[p + 2] << 16);
      }
    }
    staging.unmap();
    this.copies.push({ staging, plane, bytes });
    return plane;
  }

  /** Gives a plane's buffer back to the pool (after the work queued on it). */
  release(p: Plane): void {
    this.gpu.pool.release(p.buffer);
  }

  /**
   * One resize pass over `src` into `dst`: along x ('h': dst is taps.start.length × src.height) or y ('v': dst is
   * src.width × taps.start.length), with `flags` (PREMULTIPLY, UNPREMULTIPLY).
   */
  resample(axis: 'h' | 'v', src: PlaneWindow, dst: Plane, taps: Taps, flags: number): void {
    const [w, h] = axis === 'h' ? [taps.start.length, src.height] : [src.width, taps.start.length];
    if (dst.width !== w || dst.height !== h) throw new GpuError(`resample_${axis}: output plane is ${dst.width}×${dst.height}, expected ${w}×${h}`);
    // By fours where the window lies in its plane from a multiple of 4 (rows are, by their pitch).
    const fours = this.byFour && inside(src) && src.x0 % 4 === 0;
    const { table, row } = fours && axis === 'h' ? tapRowsByFour(taps) : tapRows(taps);
    const entry: Entry = axis === 'h' ? (fours ? 'resample_h4' : 'resample_h') : fours ? 'resample_v4' : 'resample_v';
    this.items.push({
      entry,
      words: uniforms(...windowWords(src), w, h, dst.pitch, flags, row),
      src: src.plane.buffer,
      table,
      dst: dst.buffer,
      grid: axis === 'h' ? [w, Math.ceil(h / WG)] : [Math.ceil(w / (fours ? 4 * WG : WG)), h],
    });
  }

  /**
   * `src` as float32 channel-first planes [3, height, width] at `offset` (in f32s) of `dst`, each level through
   * `levels` ([3 × 256] f32, see levelTable); `composite`: RGBA over white.
   */
  pixelValues(src: PlaneWindow, composite: boolean, levels: GPUBuffer, dst: GPUBuffer, offset: number): void {
    const n = src.width * src.height;
    if ((offset + 3 * n) * 4 > dst.size) throw new GpuError(`pixel_values: ${3 * n} values at offset ${offset} overrun the ${dst.size}-byte destination`);
    this.items.push({
      entry: 'pixel_values',
      words: uniforms(...windowWords(src), composite ? 1 : 0, offset),
      src: src.plane.buffer,
      table: levels,
      dst,
      grid: [Math.ceil(src.width / WG), src.height],
    });
  }

  /** Dispatches recorded so far. */
  get size(): number {
    return this.items.length;
  }

  /**
   * Encodes what was recorded, the uploads' copies then one compute pass (timed when `timestampWrites` is given), and
   * submits it.
   */
  submit(timestampWrites?: GPUComputePassTimestampWrites): void {
    const items = this.items.splice(0);
    const copies = this.copies.splice(0);
    const gpu = this.gpu;
    gpu.checkAlive();
    if (!items.length) {
      if (copies.length) {
        const enc = gpu.device.createCommandEncoder();
        for (const c of copies) enc.copyBufferToBuffer(c.staging, 0, c.plane.buffer, 0, c.bytes);
        gpu.device.queue.submit([enc.finish()]);
        for (const c of copies) gpu.pool.release(c.staging);
      }
      return;
    }
    const data = new Uint32Array((items.length * UNIFORM_SLOT) / 4);
    items.forEach((it, i) => data.set(it.words, (i * UNIFORM_SLOT) / 4));
    const u = gpu.pool.upload(data, 'image kernel uniforms', GPUBufferUsage.UNIFORM);
    // Every taps table in one buffer, each at an offset storage bindings may start at.
    const align = gpu.limits.minStorageBufferOffsetAlignment / 4;
    const offsets: number[] = [];
    let end = 0;
    for (const it of items) {
      offsets.push(end);
      if (it.table instanceof Int32Array) end = Math.ceil((end + it.table.length) / align) * align;
    }
    const all = new Int32Array(Math.max(end, 4));
    items.forEach((it, i) => it.table instanceof Int32Array && all.set(it.table, offsets[i]));
    const t = gpu.pool.upload(all, 'resample taps');
    try {
      const enc = gpu.device.createCommandEncoder();
      for (const c of copies) enc.copyBufferToBuffer(c.staging, 0, c.plane.buffer, 0, c.bytes);
      const pass = enc.beginComputePass(timestampWrites ? { timestampWrites } : undefined);
      items.forEach((it, i) => {
        const pipeline = this.pipelines.get(it.entry)!;
        const table: GPUBufferBinding =
          it.table instanceof Int32Array ? { buffer: t, offset: offsets[i] * 4, size: Math.max(16, it.table.length * 4) } : { buffer: it.table };
        const bind = gpu.device.createBindGroup({
          layout: pipeline.getBindGroupLayout(0),
          entries: [
            { binding: 0, resource: { buffer: u, offset: i * UNIFORM_SLOT, size: UNIFORM_SLOT } },
            { binding: 1, resource: { buffer: it.src } },
            { binding: 2, resource: table },
            { binding: 3, resource: { buffer: it.dst } },
          ],
        });
        pass.setPipeline(pipeline);
        pass.setBindGroup(0, bind);
        pass.dispatchWorkgroups(...foldGrid(it.grid));
      });
      pass.end();
      gpu.device.queue.submit([enc.finish()]);
    } finally {
      // Freed once the queued work no longer needs them; staging buffers back to the pool (mapAsync waits for the copy).
      gpu.pool.destroy(u);
      gpu.pool.destroy(t);
      for (const c of copies) gpu.pool.release(c.staging);
    }
  }
}
