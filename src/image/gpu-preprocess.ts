/**
 * Image preprocessing on the GPU, equal to the host path (preprocess.ts) bit for bit: the decoded 8-bit image is
 * uploaded once, the processor's own geometry (processorFrames, the same code as on the host) runs over frames on
 * the device, every resize is Pillow's two fixed-point passes with the host's taps (shaders/resample.wgsl), and the
 * tiles are written as pixel values straight into the vision encoder's input buffer when a step needs them.
 *
 * A frame is a window of a plane: crops, pads and alpha drops cost nothing until a resize or the final conversion
 * reads them. Decoding stays on the host (sharp, decode.ts).
 */
import { createHash } from 'node:crypto';
import type { Gpu } from '../gpu/device.ts';
import { ImageEncoder, PREMULTIPLY, UNPREMULTIPLY, type Plane, type PlaneWindow } from '../ops/resample.ts';
import type { DeviceTiles } from '../models/vlm.ts';
import type { AnyImageProcessorConfig } from './config.ts';
import { decode, maxPixelsOf, type ImageInput, type Pixels } from './decode.ts';
import { levelTable } from './pixel-values.ts';
import { processorFrames, sizeCheck, type ImageGeometry } from './preprocess.ts';
import { resizeTaps, type ImageOps, type Raster, type Taps } from './resample.ts';

/** What the processors see of an image on the device: a window of a plane, with its channels (3 of 4: alpha dropped). */
export class DeviceFrame implements Raster, PlaneWindow {
  constructor(
    readonly plane: Plane,
    readonly x0: number,
    readonly y0: number,
    readonly width: number,
    readonly height: number,
    readonly channels: 3 | 4,
    readonly fill: readonly number[],
  ) {}

  /** The whole plane, as an image of `channels`. */
  static of(plane: Plane, channels: 3 | 4): DeviceFrame {
    return new DeviceFrame(plane, 0, 0, plane.width, plane.height, channels, [0, 0, 0, 0]);
  }

  /** The window is its plane: no offset, nothing outside. */
  get whole(): boolean {
    return this.x0 === 0 && this.y0 === 0 && this.width === this.plane.width && this.height === this.plane.height;
  }
}

/** Taps by geometry: an image's resizes, and the next image of the same size, compute them once. */
const tapsCache = new Map<string, Taps>();
const TAPS_KEPT = 64;

function tapsFor(inSize: number, outSize: number, resample: number): Taps {
  const key = `${inSize}|${outSize}|${resample}`;
  let t = tapsCache.get(key);
  if (!t) {
    t = resizeTaps(inSize, outSize, resample);
    if (tapsCache.size >= TAPS_KEPT) tapsCache.delete(tapsCache.keys().next().value!);
    tapsCache.set(key, t);
  }
  return t;
}

/** The processors' operations as kernels recorded on `enc`; `planes` collects every plane they create. */
function deviceOps(enc: ImageEncoder, planes: Plane[]): ImageOps<DeviceFrame> {
  const plane = (w: number, h: number) => {
    const p = enc.plane(w, h);
    planes.push(p);
    return p;
  };
  /** A frame's pixels in a plane of their own (a one-tap pass), for a window of a padded window. */
  const materialise = (img: DeviceFrame) => {
    const p = plane(img.width, img.height);
    enc.resample('h', img, p, tapsFor(img.width, img.width, 0), 0);
    return DeviceFrame.of(p, img.channels);
  };
  const ops: ImageOps<DeviceFrame> = {
    resize(img, outW, outH, resample) {
      if (outW === img.width && outH === img.height) return img;
      // As resample.ts: RGBA is premultiplied for the filters (not for nearest) and straight again after the last pass.
      const alpha = img.channels === 4 && resample !== 0;
      const h = outW !== img.width;
      const v = outH !== img.height;
      let cur = img;
      if (h) {
        const p = plane(outW, img.height);
        enc.resample('h', cur, p, tapsFor(img.width, outW, resample), alpha ? PREMULTIPLY | (v ? 0 : UNPREMULTIPLY) : 0);
        cur = DeviceFrame.of(p, img.channels);
      }
      if (v) {
        const p = plane(outW, outH);
        enc.resample('v', cur, p, tapsFor(img.height, outH, resample), alpha ? (h ? 0 : PREMULTIPLY) | UNPREMULTIPLY : 0);
        cur = DeviceFrame.of(p, img.channels);
      }
      return cur;
    },
    extract(img, x0, y0, w, h, fill) {
      // Within the frame: a window of the same plane, the frame's own padding included.
      if (x0 >= 0 && y0 >= 0 && x0 + w <= img.width && y0 + h <= img.height) {
        return new DeviceFrame(img.plane, img.x0 + x0, img.y0 + y0, w, h, img.channels, img.fill);
      }
      // Reaching past it: `fill` there (zeros when absent, as extract()); a padded frame is made a plane first.
      if (!img.whole) return ops.extract(materialise(img), x0, y0, w, h, fill);
      return new DeviceFrame(img.plane, x0, y0, w, h, img.channels, [0, 1, 2, 3].map((c) => fill?.[c] ?? 0));
    },
    dropAlpha(img) {
      return img.channels === 3 ? img : new DeviceFrame(img.plane, img.x0, img.y0, img.width, img.height, 3, img.fill);
    },
  };
  return ops;
}

/**
 * One image preprocessed on the device: its geometry, and its tiles, written on demand into the encoder's input
 * ({@link DeviceTiles}). Holds the planes its tiles are read from until dispose().
 */
export class DeviceImage implements ImageGeometry, DeviceTiles {
  readonly tiles: number;
  readonly height: number;
  readonly width: number;
  readonly rows: number;
  readonly cols: number;
  readonly originalHeight: number;
  readonly originalWidth: number;
  private disposed = false;

  private constructor(
    private readonly enc: ImageEncoder,
    geometry: ImageGeometry,
    private readonly frames: DeviceFrame[],
    private readonly composite: boolean,
    private readonly levels: GPUBuffer,
    private readonly planes: Plane[],
    readonly key: string,
  ) {
    ({ tiles: this.tiles, height: this.height, width: this.width, rows: this.rows, cols: this.cols } = geometry);
    ({ originalHeight: this.originalHeight, originalWidth: this.originalWidth } = geometry);
  }

  /**
   * Decodes `input` on the host, uploads it, and queues the processor's resizes as one submission (see the module
   * comment). Errors as preprocessImage()'s.
   */
  static async create(gpu: Gpu, input: ImageInput, cfg: AnyImageProcessorConfig, opts: { maxPixels?: number } = {}): Promise<DeviceImage> {
    const maxPixels = maxPixelsOf(opts, 'preprocessImage');
    const img = await decode(input, maxPixels);
    return DeviceImage.fromPixels(gpu, img, cfg, sizeCheck(input, maxPixels));
  }

  /** As create(), from decoded pixels. */
  static async fromPixels(gpu: Gpu, img: Pixels, cfg: AnyImageProcessorConfig, check: (w: number, h: number, what: string) => void = () => {}): Promise<DeviceImage> {
    const enc = await ImageEncoder.create(gpu);
    const planes: Plane[] = [];
    try {
      const source = await enc.upload(img);
      planes.push(source);
      const { frames, overWhite, geometry } = processorFrames(DeviceFrame.of(source, img.channels), cfg, check, deviceOps(enc, planes));
      enc.submit();
      // Planes no tile reads from are done with once the resizes are queued.
      const kept = new Set(frames.map((f) => f.plane));
      for (const p of planes) if (!kept.has(p)) enc.release(p);
      const levels = gpu.pool.upload(levelTable(cfg), 'pixel value levels');
      return new DeviceImage(enc, geometry, frames, overWhite, levels, [...kept], pixelsKey(img, cfg));
    } catch (e) {
      for (const p of planes) enc.release(p);
      throw e;
    }
  }

  /** Queues tiles first .. first + count − 1 as float32 [count, 3, height, width] at byte `offset` of `dst`. */
  write(dst: GPUBuffer, offset: number, first: number, count: number): void {
    if (this.disposed) throw new Error('DeviceImage.write: the image was disposed');
    if (!(first >= 0 && count >= 0 && first + count <= this.tiles)) throw new RangeError(`DeviceImage.write: tiles ${first}..${first + count - 1} of ${this.tiles}`);
    if (offset % 4 !== 0) throw new RangeError(`DeviceImage.write: offset ${offset} is not a multiple of 4`);
    const values = 3 * this.height * this.width;
    for (let t = 0; t < count; t++) {
      const frame = this.frames[first + t];
      this.enc.pixelValues(frame, this.composite && frame.channels === 4, this.levels, dst, offset / 4 + t * values);
    }
    this.enc.submit();
  }

  /** All the tiles read back, [tiles, 3, height, width] (tests and benchmarks; the model reads them on the device). */
  async read(): Promise<Float32Array> {
    const gpu = this.enc.gpu;
    const buf = gpu.pool.create(this.tiles * 3 * this.height * this.width * 4, undefined, 'pixel values readback');
    try {
      this.write(buf, 0, 0, this.tiles);
      return await gpu.pool.readF32(buf, this.tiles * 3 * this.height * this.width);
    } finally {
      gpu.pool.destroy(buf);
    }
  }

  dispose(): void {
    if (this.disposed) return;
    this.disposed = true;
    for (const p of this.planes) this.enc.release(p);
    this.enc.gpu.pool.destroy(this.levels);
  }
}

/** A key for the tiles an image gives under a config: SHA-256 of its decoded pixels, their shape and the config. */
function pixelsKey(img: Pixels, cfg: AnyImageProcessorConfig): string {
  return createHash('sha256').update(JSON.stringify([img.width, img.height, img.channels, cfg])).update(img.data).digest('base64');
}
