// Weights bound by their HF checkpoint names. Model constructors ask a VarBuilder for tensors by
// prefix + name with the shape the config implies; every request is checked against the checkpoint
// header, and `load()` reports all missing tensors and shape mismatches at once before any upload.
// (After candle's VarBuilder `vb.pp("layers").pp(i)`.)
import type { Gpu } from '../gpu/device.ts';
import type { Checkpoint } from '../io/checkpoint.ts';
import { LoadError } from '../io/safetensors.ts';
import { Tensor } from '../graph/tensor.ts';
import type { Target } from '../gpu/tuning.ts';
import { gpuDType, uploadTensor, type SourceDType, type UploadOptions, type WeightDType } from '../io/upload.ts';

export interface LoadProgress {
  tensors: number;
  totalTensors: number;
  bytes: number;
  totalBytes: number;
  name: string;
}

export interface ModelLoadOptions {
  /** Storage of float weights: 'auto' (as stored where the device can read it), 'f32' or 'f16'. */
  dtype?: WeightDType;
  onProgress?: (p: LoadProgress) => void;
  /** Folder that symlinked weight files must resolve into (the Hugging Face cache repo folder). */
  root?: string;
  /** config.json as already read (ModelDir), so that the checkpoint does not read it again. */
  config?: Record<string, unknown>;
  /**
   * Kernel set: 'gpu' (shared-memory tiles) or 'cpu' (for SIMD-on-CPU drivers such as lavapipe);
   * by default the one that suits the adapter (src/gpu/tuning.ts).
   */
  kernels?: Target;
}

interface Request {
  tensor: Tensor;
  opts: UploadOptions;
}

/** Weights whose rows are stacked into one tensor after upload (see WeightStore.stackRows). */
interface Stack {
  tensor: Tensor;
  parts: Tensor[];
}

export class WeightStore {
  private readonly requests = new Map<string, Request>();
  private readonly stacks: Stack[] = [];
  private readonly problems: string[] = [];

  constructor(
    readonly gpu: Gpu,
    readonly ckpt: Checkpoint,
    /** Storage preference for float weights (see src/io/upload.ts). */
    readonly dtype: WeightDType = 'auto',
  ) {}

  has(name: string): boolean {
    return this.ckpt.tensors.has(name);
  }

  /** A weight by full name and expected shape; problems are collected and thrown by load(). */
  get(name: string, shape: number[], options: UploadOptions = {}): Tensor {
    const opts = { dtype: this.dtype, ...options };
    const prev = this.requests.get(name);
    if (prev) return prev.tensor;
    const info = this.ckpt.tensors.get(name);
    let dtype: SourceDType = 'F32';
    if (!info) {
      this.problems.push(`missing tensor ${name} [${shape.join(', ')}]`);
    } else if (info.dtype !== 'F32' && info.dtype !== 'F16' && info.dtype !== 'BF16') {
      this.problems.push(`tensor ${name} in ${info.file} has dtype ${info.dtype}, expected F32, F16 or BF16`);
    } else {
      dtype = info.dtype;
      if (info.shape.length !== shape.length || info.shape.some((d, i) => d !== shape[i])) {
        this.problems.push(`tensor ${name} in ${info.file} has shape [${info.shape.join(', ')}], expected [${shape.join(', ')}]`);
      }
    }
    const tensor = new Tensor(shape, gpuDType(this.gpu, dtype, opts), 'weight', name);
    this.requests.set(name, { tensor, opts });
    return tensor;
  }

  /**
   * One tensor holding the rows of `parts` (requested weights of equal width and dtype) one after the
   * other, as a fused projection reads them (Llama's q, k and v: [Nq + Nk + Nv, K]). After load() the
   * rows are copied into one buffer on the GPU and the parts freed (their tensors hold no data); where
   * a part is split in chunks or the whole would exceed a binding, the stack is the parts' chunks side
   * by side, which kernels bind one by one.
   */
  stackRows(name: string, parts: Tensor[]): Tensor {
    const [first] = parts;
    const width = first.shape.slice(1);
    for (const t of parts) {
      if (t.dtype !== first.dtype || t.shape.length !== first.shape.length || t.shape.slice(1).some((d, i) => d !== width[i])) {
        this.problems.push(`${name}: cannot stack ${parts.map((p) => `${p.name} [${p.shape.join(', ')}] ${p.dtype}`).join(', ')} (rows of one width and dtype)`);
        break;
      }
    }
    const rows = parts.reduce((n, t) => n + t.shape[0], 0);
    const tensor = new Tensor([rows, ...width], first.dtype, 'weight', name);
    this.stacks.push({ tensor, parts });
    return tensor;
  }

  private stack({ tensor, parts }: Stack): void {
    const rowBytes = (tensor.dtype === 'f16' ? 2 : 4) * tensor.shape.slice(1).reduce((a, b) => a * b, 1);
    const offsets: number[] = [];
    let total = 0;
    for (const t of parts) {
      offsets.push(total);
      total += t.shape[0] * rowBytes;
    }
    const whole = parts.every((t) => t.chunks?.length === 1) && offsets.every((o) => o % 4 === 0) && total <= this.gpu.maxBinding;
    if (whole) {
      const dst = this.gpu.pool.create(total, undefined, tensor.name);
      const enc = this.gpu.device.createCommandEncoder();
      // Copies are 4-byte multiples: a part's rounding overlaps the next part, which is copied after it.
      parts.forEach((t, i) => enc.copyBufferToBuffer(t.chunks![0].buffer, 0, dst, offsets[i], Math.ceil((t.shape[0] * rowBytes) / 4) * 4));
      this.gpu.device.queue.submit([enc.finish()]);
      for (const t of parts) this.gpu.pool.destroy(t.chunks![0].buffer);
      tensor.chunks = [{ buffer: dst, row0: 0, rows: tensor.shape[0] }];
    } else {
      let row0 = 0;
      tensor.chunks = parts.flatMap((t) => {
        const cs = t.chunks!.map((c) => ({ ...c, row0: c.row0 + row0 }));
        row0 += t.shape[0];
        return cs;
      });
    }
    for (const t of parts) t.chunks = undefined;
  }

  /** Throws one LoadError listing every problem found so far. */
  check(): void {
    if (this.problems.length) {
      const list = this.problems.map((p) => `  - ${p}`).join('\n');
      throw new LoadError(this.ckpt.dir, `the checkpoint does not fit the model's config (${this.problems.length} problem(s)):\n${list}`);
    }
  }

  get totalBytes(): number {
    let n = 0;
    for (const name of this.requests.keys()) {
      const i = this.ckpt.tensors.get(name)!;
      n += i.end - i.begin;
    }
    return n;
  }

  /** Uploads every requested tensor, one at a time (host memory stays near the largest tensor). */
  async load(onProgress?: (p: LoadProgress) => void): Promise<void> {
    this.check();
    const totalBytes = this.totalBytes;
    let bytes = 0;
    let done = 0;
    for (const [name, r] of this.requests) {
      const info = this.ckpt.tensors.get(name)!;
      const raw = await this.ckpt.read(name);
      const up = await uploadTensor(this.gpu, name, raw, info.dtype as SourceDType, info.shape, r.opts);
      if (up.dtype !== r.tensor.dtype) throw new Error(`${name}: uploaded as ${up.dtype}, planned as ${r.tensor.dtype}`);
      r.tensor.chunks = up.chunks;
      bytes += raw.byteLength;
      done++;
      onProgress?.({ tensors: done, totalTensors: this.requests.size, bytes, totalBytes, name });
    }
    for (const st of this.stacks) this.stack(st);
  }

  /** Frees every uploaded weight. */
  dispose(): void {
    for (const t of [...[...this.requests.values()].map((r) => r.tensor), ...this.stacks.map((st) => st.tensor)]) {
      for (const c of t.chunks ?? []) this.gpu.pool.destroy(c.buffer);
      t.chunks = undefined;
    }
  }
}

/** Builds weight names by prefix, so that model fields read like the checkpoint keys. */
export class VarBuilder {
  constructor(
    readonly store: WeightStore,
    readonly prefix = '',
  ) {}

  /** A builder one level down: vb.pp('layers').pp(3) → "…layers.3". */
  pp(name: string | number): VarBuilder {
    return new VarBuilder(this.store, this.prefix ? `${this.prefix}.${name}` : `${name}`);
  }

  path(name: string): string {
    return this.prefix ? `${this.prefix}.${name}` : name;
  }

  get(name: string, shape: number[], opts?: UploadOptions): Tensor {
    return this.store.get(this.path(name), shape, opts);
  }

  has(name: string): boolean {
    return this.store.has(this.path(name));
  }
}
