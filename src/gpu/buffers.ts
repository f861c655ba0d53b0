// GPU buffer helpers: creation with a live count (leak checks), upload, readback, and a pool of
// storage buffers reused by size so that repeated forward passes allocate nothing.
import './webgpu.ts';
import type { Gpu } from './device.ts';

export const STORAGE = GPUBufferUsage.STORAGE | GPUBufferUsage.COPY_SRC | GPUBufferUsage.COPY_DST;

/** Storage bindings must be 4-byte multiples; 16 keeps vec4 views of any buffer legal. */
export function alignSize(bytes: number): number {
  return Math.max(16, Math.ceil(bytes / 16) * 16);
}

export class BufferPool {
  private readonly gpu: Gpu;
  private readonly live = new Set<GPUBuffer>();
  /** Released buffers by usage and size (`usage:size`). */
  private readonly free = new Map<string, GPUBuffer[]>();
  /** Reuse can be turned off for debugging (WEBGPU_VLM_NO_REUSE=1): every acquire then allocates. */
  readonly reuse = process.env.WEBGPU_VLM_NO_REUSE !== '1';

  constructor(gpu: Gpu) {
    this.gpu = gpu;
  }

  /** Number of GPU buffers currently alive (created and not destroyed). */
  get liveCount(): number {
    return this.live.size;
  }

  get liveBytes(): number {
    let n = 0;
    for (const b of this.live) n += b.size;
    return n;
  }

  create(bytes: number, usage: number = STORAGE, label?: string, mappedAtCreation = false): GPUBuffer {
    this.gpu.checkAlive();
    const buf = this.gpu.device.createBuffer({ size: alignSize(bytes), usage, label, mappedAtCreation });
    this.live.add(buf);
    return buf;
  }

  destroy(buf: GPUBuffer): void {
    if (this.live.delete(buf)) buf.destroy();
  }

  /**
   * A buffer of at least `bytes` (a storage buffer unless `usage` says otherwise), reused from earlier releases when
   * one of that size and usage exists.
   */
  acquire(bytes: number, label?: string, usage: number = STORAGE): GPUBuffer {
    const size = alignSize(bytes);
    const list = this.free.get(`${usage}:${size}`);
    if (this.reuse && list && list.length > 0) return list.pop()!;
    return this.create(size, usage, label);
  }

  release(buf: GPUBuffer): void {
    if (!this.live.has(buf)) return;
    if (!this.reuse) return this.destroy(buf);
    const key = `${buf.usage}:${buf.size}`;
    const list = this.free.get(key) ?? [];
    list.push(buf);
    this.free.set(key, list);
  }

  /** Creates a buffer holding `data` (written through the queue: it works on every backend, null included). */
  upload(data: ArrayBufferView, label?: string, usage: number = STORAGE): GPUBuffer {
    const buf = this.create(data.byteLength, usage | GPUBufferUsage.COPY_DST, label);
    let bytes = new Uint8Array(data.buffer, data.byteOffset, data.byteLength);
    if (bytes.byteLength % 4 !== 0) {
      // writeBuffer takes 4-byte multiples: pad a copy (odd counts of 16-bit values).
      const padded = new Uint8Array(Math.ceil(bytes.byteLength / 4) * 4);
      padded.set(bytes);
      bytes = padded;
    }
    this.gpu.device.queue.writeBuffer(buf, 0, bytes.buffer, bytes.byteOffset, bytes.byteLength);
    return buf;
  }

  /** Mappable buffers kept for the next read of the same size (a decode step reads 4 bytes every token). */
  private readonly staging = new Map<number, GPUBuffer[]>();

  /** Copies `bytes` from `src` at `offset` back to the host. Waits for all work submitted before it. */
  async read(src: GPUBuffer, bytes: number = src.size, offset = 0): Promise<ArrayBuffer> {
    this.gpu.checkAlive();
    const size = alignSize(bytes);
    const idle = this.staging.get(size);
    const staging = idle?.pop() ?? this.create(size, GPUBufferUsage.MAP_READ | GPUBufferUsage.COPY_DST, 'readback');
    let reusable = false;
    try {
      const enc = this.gpu.device.createCommandEncoder();
      enc.copyBufferToBuffer(src, offset, staging, 0, Math.min(size, src.size - offset));
      this.gpu.device.queue.submit([enc.finish()]);
      await staging.mapAsync(GPUMapMode.READ).catch((e: Error) => {
        this.gpu.checkAlive();
        throw e;
      });
      const out = staging.getMappedRange(0, size).slice(0, bytes);
      staging.unmap();
      reusable = true;
      return out;
    } finally {
      if (reusable && this.reuse) {
        const list = this.staging.get(size) ?? [];
        list.push(staging);
        this.staging.set(size, list);
      } else {
        this.destroy(staging);
      }
    }
  }

  async readF32(src: GPUBuffer, count: number, offsetElems = 0): Promise<Float32Array> {
    return new Float32Array(await this.read(src, count * 4, offsetElems * 4));
  }

  /** Destroys the buffers waiting for reuse (after a model is disposed, say). */
  trim(): void {
    for (const list of [...this.free.values(), ...this.staging.values()]) for (const b of list) this.destroy(b);
    this.free.clear();
    this.staging.clear();
  }

  destroyAll(): void {
    for (const b of this.live) b.destroy();
    this.live.clear();
    this.free.clear();
    this.staging.clear();
  }
}
