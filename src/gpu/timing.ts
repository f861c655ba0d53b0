// GPU timing from timestamp queries: each measured compute pass writes a timestamp at its start and
// end; the difference is the device time of every dispatch in it, without host or queue overhead. The
// one timer of the runtime (Executable.runProfiled, a section per pass) and of the benches (one pass).
import type { Gpu } from './device.ts';

export class GpuTimer {
  private readonly querySet: GPUQuerySet;
  private readonly resolveBuffer: GPUBuffer;
  private readonly staging: GPUBuffer;
  private readonly bytes: number;

  /** A timer for `passes` compute passes of one submission. */
  constructor(
    private readonly gpu: Gpu,
    readonly passes = 1,
  ) {
    if (!gpu.has('timestamp-query')) throw new Error('GpuTimer: this adapter does not offer timestamp-query');
    this.bytes = passes * 16;
    this.querySet = gpu.device.createQuerySet({ type: 'timestamp', count: passes * 2 });
    this.resolveBuffer = gpu.pool.create(this.bytes, GPUBufferUsage.QUERY_RESOLVE | GPUBufferUsage.COPY_SRC, 'timestamps');
    this.staging = gpu.pool.create(this.bytes, GPUBufferUsage.MAP_READ | GPUBufferUsage.COPY_DST, 'timestamps readback');
  }

  /** The pass descriptor's timestampWrites for measured pass `i`. */
  writes(i = 0): GPUComputePassTimestampWrites {
    return { querySet: this.querySet, beginningOfPassWriteIndex: 2 * i, endOfPassWriteIndex: 2 * i + 1 };
  }

  /** Encodes the copy of the timestamps for read(), after the measured passes. */
  resolve(enc: GPUCommandEncoder): void {
    enc.resolveQuerySet(this.querySet, 0, this.passes * 2, this.resolveBuffer, 0);
    enc.copyBufferToBuffer(this.resolveBuffer, 0, this.staging, 0, this.bytes);
  }

  /** The device time of each pass in ns, once the submission holding resolve() has been made. */
  async read(): Promise<number[]> {
    await this.staging.mapAsync(GPUMapMode.READ);
    const t = new BigUint64Array(this.staging.getMappedRange(0, this.bytes).slice(0));
    this.staging.unmap();
    return Array.from({ length: this.passes }, (_, i) => Number(t[2 * i + 1] - t[2 * i]));
  }

  /** Runs `submit` (which must encode one pass with `writes`) and returns its device time in ns. */
  async time(submit: (writes: GPUComputePassTimestampWrites) => void): Promise<number> {
    submit(this.writes(0));
    const enc = this.gpu.device.createCommandEncoder();
    this.resolve(enc);
    this.gpu.device.queue.submit([enc.finish()]);
    return (await this.read())[0];
  }

  destroy(): void {
    this.querySet.destroy();
    this.gpu.pool.destroy(this.resolveBuffer);
    this.gpu.pool.destroy(this.staging);
  }
}
