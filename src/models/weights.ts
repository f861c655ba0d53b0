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

export class WeightStore {
  private readonly requests = new Map<string, Request>();
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
  }

  /** Frees every uploaded weight. */
  dispose(): void {
    for (const r of this.requests.values()) {
      for (const c of r.tensor.chunks ?? []) this.gpu.pool.destroy(c.buffer);
      r.tensor.chunks = undefined;
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
