// GPU timing from timestamp queries: the compute pass of a step writes a timestamp at its start and
// end; the difference is the device time of every dispatch in it, without host or queue overhead.
import type { Gpu } from './device.ts';

export class GpuTimer {
  private readonly querySet: GPUQuerySet;
  private readonly resolve: GPUBuffer;
  private readonly staging: GPUBuffer;

  constructor(private readonly gpu: Gpu) {
    if (!gpu.has('timestamp-query')) throw new Error('GpuTimer: this adapter does not offer timestamp-query');
    this.querySet = gpu.device.createQuerySet({ type: 'timestamp', count: 2 });
    this.resolve = gpu.pool.create(16, GPUBufferUsage.QUERY_RESOLVE | GPUBufferUsage.COPY_SRC, 'timestamps');
    this.staging = gpu.pool.create(16, GPUBufferUsage.MAP_READ | GPUBufferUsage.COPY_DST, 'timestamps readback');
  }

  /** The pass descriptor's timestampWrites for the pass to measure. */
  get writes(): GPUComputePassTimestampWrites {
    return { querySet: this.querySet, beginningOfPassWriteIndex: 0, endOfPassWriteIndex: 1 };
  }

  /** Runs `submit` (which must encode one pass with `writes`) and returns its device time in ns. */
  async time(submit: (writes: GPUComputePassTimestampWrites) => void): Promise<number> {
    submit(this.writes);
    const enc = this.gpu.device.createCommandEncoder();
    enc.resolveQuerySet(this.querySet, 0, 2, this.resolve, 0);
    enc.copyBufferToBuffer(this.resolve, 0, this.staging, 0, 16);
    this.gpu.device.queue.submit([enc.finish()]);
    await this.staging.mapAsync(GPUMapMode.READ);
    const t = new BigUint64Array(this.staging.getMappedRange(0, 16).slice(0));
    this.staging.unmap();
    return Number(t[1] - t[0]);
  }

  destroy(): void {
    this.querySet.destroy();
    this.gpu.pool.destroy(this.resolve);
    this.gpu.pool.destroy(this.staging);
  }
}
