// Weights bound by their HF checkpoint names. Model constructors ask a VarBuilder for tensors by
// prefix + name with the shape the config implies; every request is checked against the checkpoint
// header, and `load()` reports all missing tensors and shape mismatches at once before any upload.
// (After candle's VarBuilder `vb.pp("layers").pp(i)`.)
import type { Gpu } from '../gpu/device.ts';
import type { Checkpoint } from '../io/checkpoint.ts';
import { LoadError } from '../io/safetensors.ts';
import { Tensor } from '../graph/tensor.ts';
import type { Target } from '../gpu/tuning.ts';
import { storageOf, toQuantRows, uploadQuant, uploadTensor, type SourceDType, type Storage, type UploadOptions, type WeightDType } from './storage.ts';
import { concatRows, isNotConverted, packedToRows, readPackedLinear, type QuantMethod, type QuantRows } from '../io/quant.ts';

export interface LoadProgress {
  tensors: number;
  totalTensors: number;
  bytes: number;
  totalBytes: number;
  name: string;
}

export interface ModelLoadOptions {
  /**
   * Storage of float weights (src/models/storage.ts): 'auto' (the checkpoint's own width), 'f32', 'f16',
   * 'bf16', or quantized at load, 'q8' or 'q4'. Quantized checkpoints (AWQ, GPTQ) load as published.
   */
  dtype?: WeightDType;
  /** 16-bit weights as native f16 where the adapter has shader-f16, instead of u32 pairs (an opt-in variant). */
  nativeF16?: boolean;
  /** quantize_config.json as already read (ModelDir); null when the folder has none. */
  quantizeConfig?: Record<string, unknown> | null;
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
  /** A quantized checkpoint's packed linear (module name) that this weight is converted from. */
  packed?: string;
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
    /** Storage preference for float weights (see src/models/storage.ts). */
    readonly dtype: WeightDType = 'auto',
    /** The checkpoint's quantization (AWQ, GPTQ), if any: its linears are packed. */
    readonly quantization?: QuantMethod,
    readonly nativeF16 = false,
  ) {}

  has(name: string): boolean {
    return this.ckpt.tensors.has(name) || !!this.packedModule(name);
  }

  /** The packed linear that stands for `name` (`<module>.weight` of a quantized checkpoint), if any. */
  private packedModule(name: string): string | undefined {
    if (!this.quantization || !name.endsWith('.weight') || this.ckpt.tensors.has(name)) return undefined;
    const module = name.slice(0, -'.weight'.length);
    return this.ckpt.tensors.has(`${module}.qweight`) ? module : undefined;
  }

  /** A quantized checkpoint's linear `module` [rows, K] as the kernels store it. */
  private packedStorage(module: string, shape: number[]): Storage {
    const q = this.quantization!;
    if (isNotConverted(q, module)) {
      this.problems.push(`${module} is packed (${module}.qweight), but quantization_config lists it in modules_to_not_convert`);
    }
    const group = q.group === -1 ? shape[1] : q.group;
    // Whether zeros are stored is settled when the tensors are converted (load()).
    return { dtype: q.bits === 4 ? 'q4' : 'q8', quant: { group, zeros: true } };
  }

  /** A weight by full name and expected shape; problems are collected and thrown by load(). */
  get(name: string, shape: number[], options: UploadOptions = {}): Tensor {
    const opts = { dtype: this.dtype, nativeF16: this.nativeF16, ...options };
    const prev = this.requests.get(name);
    if (prev) return prev.tensor;
    const packed = this.packedModule(name);
    if (packed) {
      if (shape.length !== 2) this.problems.push(`${packed} is packed, but the model reads ${name} as [${shape.join(', ')}], not a linear weight`);
      const st = this.packedStorage(packed, shape);
      const tensor = new Tensor(shape, st.dtype, 'weight', name);
      tensor.quant = st.quant;
      this.requests.set(name, { tensor, opts, packed });
      return tensor;
    }
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
    const st = storageOf(this.gpu, dtype, shape, opts);
    const tensor = new Tensor(shape, st.dtype, 'weight', name);
    tensor.quant = st.quant;
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
      if (t.dtype !== first.dtype || t.quant?.group !== first.quant?.group || t.shape.length !== first.shape.length || t.shape.slice(1).some((d, i) => d !== width[i])) {
        this.problems.push(`${name}: cannot stack ${parts.map((p) => `${p.name} [${p.shape.join(', ')}] ${p.dtype}`).join(', ')} (rows of one width and dtype)`);
        break;
      }
    }
    const rows = parts.reduce((n, t) => n + t.shape[0], 0);
    const tensor = new Tensor([rows, ...width], first.dtype, 'weight', name);
    // Stacked quantized rows carry zeros if any part does (the others' implicit zero filled in).
    if (first.quant) tensor.quant = { group: first.quant.group, zeros: parts.some((t) => t.quant?.zeros) };
    this.stacks.push({ tensor, parts });
    return tensor;
  }

  /** Copies the uploaded parts of a float stack into one buffer (or lists their chunks side by side). */
  private stack({ tensor, parts }: Stack): void {
    const rowBytes = (tensor.dtype === 'f32' ? 4 : 2) * tensor.shape.slice(1).reduce((a, b) => a * b, 1);
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

  /** The checkpoint bytes a request reads (every tensor of a packed linear). */
  private requestBytes(name: string, r: Request): number {
    const names = r.packed ? ['qweight', 'qzeros', 'scales', 'g_idx'].map((s) => `${r.packed}.${s}`) : [name];
    return names.reduce((n, t) => {
      const i = this.ckpt.tensors.get(t);
      return n + (i ? i.end - i.begin : 0);
    }, 0);
  }

  get totalBytes(): number {
    let n = 0;
    for (const [name, r] of this.requests) n += this.requestBytes(name, r);
    return n;
  }

  /** GPU bytes of the uploaded weights. */
  get gpuBytes(): number {
    let n = 0;
    for (const t of [...[...this.requests.values()].map((r) => r.tensor), ...this.stacks.map((st) => st.tensor)]) {
      for (const c of t.chunks ?? []) n += c.buffer.size;
    }
    return n;
  }

  /** A quantized weight's rows on the host: converted from the packed linear, or quantized from floats. */
  private async quantRows(name: string, r: Request): Promise<QuantRows> {
    const t = r.tensor;
    if (r.packed) {
      const q = packedToRows({ ...(await readPackedLinear(this.ckpt, r.packed)), rows: t.shape[0], K: t.shape[1] }, this.quantization!);
      if (q.spec.bits !== (t.dtype === 'q4' ? 4 : 8) || q.spec.group !== t.quant!.group) {
        throw new LoadError(this.ckpt.dir, `${r.packed}: converted as ${JSON.stringify(q.spec)}, planned as ${t.dtype} ${JSON.stringify(t.quant)}`);
      }
      return q;
    }
    const info = this.ckpt.tensors.get(name)!;
    return toQuantRows(name, await this.ckpt.read(name), info.dtype as SourceDType, info.shape, t);
  }

  /**
   * Uploads every requested tensor, one at a time (host memory stays near the largest tensor). The parts
   * of a quantized stack are converted on the host and go up as one tensor.
   */
  async load(onProgress?: (p: LoadProgress) => void): Promise<void> {
    this.check();
    const totalBytes = this.totalBytes;
    let bytes = 0;
    let done = 0;
    const progress = (name: string, r: Request) => {
      bytes += this.requestBytes(name, r);
      done++;
      onProgress?.({ tensors: done, totalTensors: this.requests.size, bytes, totalBytes, name });
    };
    const quantStacks = this.stacks.filter((st) => st.tensor.quant);
    const stacked = new Set(quantStacks.flatMap((st) => st.parts));
    for (const [name, r] of this.requests) {
      if (stacked.has(r.tensor)) continue;
      const up = r.tensor.quant
        ? uploadQuant(this.gpu, name, await this.quantRows(name, r))
        : await uploadTensor(this.gpu, name, await this.ckpt.read(name), this.ckpt.tensors.get(name)!.dtype as SourceDType, r.tensor.shape, r.opts);
      if (up.dtype !== r.tensor.dtype) throw new Error(`${name}: uploaded as ${up.dtype}, planned as ${r.tensor.dtype}`);
      r.tensor.chunks = up.chunks;
      // Whether zeros are stored is known once converted (GPTQ's all-midpoint zeros are dropped).
      r.tensor.quant = up.quant;
      progress(name, r);
    }
    const byTensor = new Map([...this.requests].map(([name, r]) => [r.tensor, { name, r }]));
    for (const st of quantStacks) {
      const parts = [];
      for (const t of st.parts) {
        const { name, r } = byTensor.get(t)!;
        parts.push(await this.quantRows(name, r));
        progress(name, r);
      }
      const up = uploadQuant(this.gpu, st.tensor.name, concatRows(parts));
      st.tensor.chunks = up.chunks;
      st.tensor.quant = up.quant;
    }
    for (const st of this.stacks) if (!st.tensor.quant) this.stack(st);
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
