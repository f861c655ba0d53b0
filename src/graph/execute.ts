// Compiles a planned graph into pipelines, buffers and bind groups once, then runs it as one command
// encoder, one compute pass and one submission per execution. Uniforms of every dispatch live in one
// buffer (256-byte slots) written with a single writeBuffer before the submit. Nothing is read back
// unless asked: `read` copies out a named or output tensor.
import type { Gpu } from '../gpu/device.ts';
import { GpuError } from '../gpu/device.ts';
import type { Dispatch, Graph, Step, KernelContext } from './graph.ts';
import { planGraph, type PlanLayout, type PlanOptions } from './plan.ts';
import type { Tensor } from './tensor.ts';
import type { PipelineKey } from '../gpu/pipelines.ts';
import { GpuTimer } from '../gpu/timing.ts';

const UNIFORM_SLOT = 256;

interface Encoded {
  dispatch: Dispatch;
  pipeline: GPUComputePipeline;
  bindGroup: GPUBindGroup;
  /** Its slot in the uniform buffer: the step-dependent ones first, so that a step rewrites one range. */
  slot: number;
  /** The workgroup grid (0 in some dimension: nothing to do, e.g. an empty chunk). */
  x: number;
  y: number;
  z: number;
  node: string;
  section: string;
}

const dependsOnStep = (d: Dispatch) => typeof d.uniforms === 'function';

export class Executable {
  readonly gpu: Gpu;
  readonly layout: PlanLayout;
  private readonly buffers: GPUBuffer[];
  private readonly encoded: Encoded[];
  private readonly uniformBuffer: GPUBuffer;
  private readonly uniformData: ArrayBuffer;
  private disposed = false;

  private constructor(gpu: Gpu, layout: PlanLayout, buffers: GPUBuffer[], encoded: Encoded[], uniformBuffer: GPUBuffer) {
    this.gpu = gpu;
    this.layout = layout;
    this.buffers = buffers;
    this.encoded = encoded;
    this.uniformBuffer = uniformBuffer;
    this.uniformData = new ArrayBuffer(Math.max(1, encoded.length) * UNIFORM_SLOT);
    this.work = encoded.filter((e) => e.x > 0 && e.y > 0 && e.z > 0);
    // Fixed uniforms are laid out once; only the step-dependent ones are rewritten per execution.
    for (const e of encoded) {
      const u = e.dispatch.uniforms;
      if (typeof u === 'function') this.dynamic.push(e);
      else this.putUniforms(e, u);
    }
  }

  /** The dispatches whose uniforms depend on the step (they hold slots 0 .. dynamic.length − 1). */
  private readonly dynamic: Encoded[] = [];
  /** The dispatches with work to do, in order. */
  private readonly work: Encoded[];
  /** Whether the uniform buffer holds uniformData as of the last step (false until the first run). */
  private uniformsUploaded = false;
  private lastPos = NaN;

  static async compile(gpu: Gpu, graph: Graph, outputs: Tensor[], opts: PlanOptions = {}): Promise<Executable> {
    gpu.checkAlive();
    const layout = planGraph(graph, outputs, opts);
    const t = layout.largest;
    if (t && t.bytes > gpu.maxBinding) {
      throw new GpuError(`activation ${t} needs ${t.bytes} bytes, above this device's maxStorageBufferBindingSize (${gpu.maxBinding})`);
    }
    const buffers = layout.slots.map((s) => gpu.pool.acquire(s.bytes, `slot${s.index}`));
    const bufferOf = (t: Tensor): GPUBuffer => {
      const s = layout.slotOf.get(t);
      if (s) return buffers[s.index];
      if (t.chunks && t.chunks.length === 1) return t.chunks[0].buffer;
      throw new GpuError(`tensor ${t} has no buffer (${t.chunks ? 'split weights must be bound per chunk' : 'not planned'})`);
    };
    const dispatches = dispatchesOf(gpu, layout, bufferOf);
    const uniformBuffer = gpu.pool.create(
      Math.max(1, dispatches.length) * UNIFORM_SLOT,
      GPUBufferUsage.UNIFORM | GPUBufferUsage.COPY_DST,
      'uniforms',
    );
    const pipelines = await Promise.all(dispatches.map(({ d }) => gpu.pipelines.get(d.pipeline)));
    const slots: number[] = [];
    let next = 0;
    for (const pass of [true, false]) dispatches.forEach(({ d }, i) => dependsOnStep(d) === pass && (slots[i] = next++));
    const encoded = await gpu.scoped('binding the graph', () =>
      dispatches.map(({ d, node, section }, i): Encoded => {
        const pipeline = pipelines[i];
        const entries: GPUBindGroupEntry[] = [
          { binding: 0, resource: { buffer: uniformBuffer, offset: slots[i] * UNIFORM_SLOT, size: UNIFORM_SLOT } },
          ...d.bindings.map((b) => ({
            binding: b.binding,
            resource: { buffer: b.buffer, offset: b.offset ?? 0, size: b.size },
          })),
        ];
        const bindGroup = gpu.device.createBindGroup({ layout: pipeline.getBindGroupLayout(0), entries, label: node });
        const [x, y = 1, z = 1] = d.workgroups;
        return { dispatch: d, pipeline, bindGroup, slot: slots[i], x, y, z, node, section };
      }),
    );
    return new Executable(gpu, layout, buffers, encoded, uniformBuffer);
  }

  /**
   * The pipelines a graph's plan would use, without allocating anything: for creating them all at once,
   * ahead of the first run (PipelineCache.prepare).
   */
  static pipelinesOf(gpu: Gpu, graph: Graph, outputs: Tensor[]): { pipeline: PipelineKey; bindings: number[] }[] {
    const layout = planGraph(graph, outputs);
    return dispatchesOf(gpu, layout, () => gpu.dummy).map(({ d }) => ({ pipeline: d.pipeline, bindings: d.bindings.map((b) => b.binding) }));
  }

  get dispatchCount(): number {
    return this.work.length;
  }

  /** Fills an input tensor (queued; takes effect at the next run). */
  write(t: Tensor, data: ArrayBufferView): void {
    const s = this.layout.slotOf.get(t);
    if (!s || t.kind !== 'input') throw new GpuError(`write: ${t} is not an input of this plan`);
    if (data.byteLength !== t.bytes) {
      throw new GpuError(`write: input "${t.name}" expects ${t.bytes} bytes ([${t.shape.join(', ')}] ${t.dtype}), got ${data.byteLength}`);
    }
    this.gpu.device.queue.writeBuffer(this.buffers[s.index], 0, data.buffer, data.byteOffset, data.byteLength);
  }

  /**
   * The buffer of an input tensor, for a producer on the device to fill (image tiles preprocessed on the GPU) instead
   * of write(); `bytes`, what the producer writes, must be the tensor's size.
   */
  inputBuffer(t: Tensor, bytes: number): GPUBuffer {
    const s = this.layout.slotOf.get(t);
    if (!s || t.kind !== 'input') throw new GpuError(`inputBuffer: ${t} is not an input of this plan`);
    if (bytes !== t.bytes) throw new GpuError(`inputBuffer: input "${t.name}" holds ${t.bytes} bytes ([${t.shape.join(', ')}] ${t.dtype}), the producer writes ${bytes}`);
    return this.buffers[s.index];
  }

  /** Encodes every dispatch into one compute pass and submits once. */
  run(step: Step = { pos: 0 }, timestampWrites?: GPUComputePassTimestampWrites): void {
    this.writeUniforms(step);
    const enc = this.gpu.device.createCommandEncoder();
    const pass = enc.beginComputePass(timestampWrites ? { timestampWrites } : undefined);
    this.encode(pass, this.work);
    pass.end();
    this.gpu.device.queue.submit([enc.finish()]);
  }

  /**
   * Runs like run() — one encoder, one submission — but with one compute pass per section, each bracketed
   * by timestamps; resolves to the device milliseconds of each section. Without timestamp-query the
   * sections are timed together by the wall clock and reported as one entry, "all".
   */
  async runProfiled(step: Step = { pos: 0 }): Promise<Map<string, number>> {
    const sections: { name: string; items: Encoded[] }[] = [];
    for (const e of this.work) {
      const last = sections[sections.length - 1];
      if (last && last.name === e.section) last.items.push(e);
      else sections.push({ name: e.section, items: [e] });
    }
    if (!this.gpu.has('timestamp-query') || sections.length === 0) {
      const t0 = performance.now();
      this.run(step);
      await this.gpu.device.queue.onSubmittedWorkDone();
      return new Map([['all', performance.now() - t0]]);
    }
    this.writeUniforms(step);
    const timer = new GpuTimer(this.gpu, sections.length);
    try {
      const enc = this.gpu.device.createCommandEncoder();
      sections.forEach((s, i) => {
        const pass = enc.beginComputePass({ timestampWrites: timer.writes(i) });
        this.encode(pass, s.items);
        pass.end();
      });
      timer.resolve(enc);
      this.gpu.device.queue.submit([enc.finish()]);
      const ns = await timer.read();
      const out = new Map<string, number>();
      sections.forEach((s, i) => out.set(s.name, (out.get(s.name) ?? 0) + ns[i] / 1e6));
      return out;
    } finally {
      timer.destroy();
    }
  }

  private encode(pass: GPUComputePassEncoder, items: Encoded[]): void {
    // Each call crosses into Dawn (and is validated there): the pipeline is set only when it changes.
    let current: GPUComputePipeline | null = null;
    for (const e of items) {
      if (e.pipeline !== current) pass.setPipeline((current = e.pipeline));
      pass.setBindGroup(0, e.bindGroup);
      pass.dispatchWorkgroups(e.x, e.y, e.z);
    }
  }

  private putUniforms(e: Encoded, u: Uint32Array): void {
    if (u.byteLength > UNIFORM_SLOT) throw new GpuError(`${e.node}: uniforms exceed ${UNIFORM_SLOT} bytes`);
    new Uint32Array(this.uniformData, e.slot * UNIFORM_SLOT, u.length).set(u);
  }

  private writeUniforms(step: Step): void {
    if (this.disposed) throw new GpuError('run: this plan was disposed');
    this.gpu.checkAlive();
    // A step at the position of the last one (a re-run, a benchmark) reuses its uniforms as they are.
    if (this.uniformsUploaded && step.pos === this.lastPos) return;
    for (const e of this.dynamic) this.putUniforms(e, (e.dispatch.uniforms as (s: Step) => Uint32Array)(step));
    // The first run uploads every slot; later ones only the step-dependent slots at the front.
    const bytes = this.uniformsUploaded ? this.dynamic.length * UNIFORM_SLOT : this.uniformData.byteLength;
    if (bytes) this.gpu.device.queue.writeBuffer(this.uniformBuffer, 0, this.uniformData, 0, bytes);
    this.uniformsUploaded = true;
    this.lastPos = step.pos;
  }

  /**
   * Queues a copy of a planned tensor into `dst` at byte `dstOffset` (after the work already submitted):
   * how a step's output is kept for a later plan without a round trip through the host.
   */
  copyTo(t: Tensor, dst: GPUBuffer, dstOffset: number): void {
    const s = this.layout.slotOf.get(t);
    if (!s) throw new GpuError(`copyTo: ${t} is not held by this plan`);
    if (dstOffset + t.bytes > dst.size) throw new GpuError(`copyTo: ${t} (${t.bytes} bytes) at offset ${dstOffset} overruns its ${dst.size}-byte destination`);
    this.gpu.checkAlive();
    const enc = this.gpu.device.createCommandEncoder();
    enc.copyBufferToBuffer(this.buffers[s.index], 0, dst, dstOffset, t.bytes);
    this.gpu.device.queue.submit([enc.finish()]);
  }

  /** Reads a planned tensor (an output, a kept intermediate or an input) back as f32 / u32 values. */
  async read(t: Tensor): Promise<Float32Array | Uint32Array> {
    if (this.disposed) throw new GpuError(`read: ${t} belongs to a plan that was disposed (its buffers serve other plans now)`);
    const s = this.layout.slotOf.get(t);
    const buf = s ? this.buffers[s.index] : t.chunks?.length === 1 ? t.chunks[0].buffer : undefined;
    if (!buf) throw new GpuError(`read: ${t} is not held by this plan`);
    const bytes = await this.gpu.pool.read(buf, t.bytes);
    if (t.dtype === 'u32') return new Uint32Array(bytes);
    if (t.dtype === 'f32') return new Float32Array(bytes);
    throw new GpuError(`read: ${t} has dtype ${t.dtype}; only f32 and u32 activations can be read back`);
  }

  dispose(): void {
    if (this.disposed) return;
    this.disposed = true;
    for (const b of this.buffers) this.gpu.pool.release(b);
    this.gpu.pool.destroy(this.uniformBuffer);
  }
}

/** Every dispatch of a planned graph, in order, with its node and section. */
function dispatchesOf(gpu: Gpu, layout: PlanLayout, bufferOf: (t: Tensor) => GPUBuffer): { d: Dispatch; node: string; section: string }[] {
  const ctx: KernelContext = { has: (f) => gpu.has(f), dummy: gpu.dummy, subgroupReduce: gpu.subgroupReduce };
  const out: { d: Dispatch; node: string; section: string }[] = [];
  for (const n of layout.order) {
    for (const d of n.kernel.encode(n, bufferOf, ctx)) out.push({ d, node: `${n.kernel.name}→${n.output}`, section: n.section });
  }
  return out;
}
