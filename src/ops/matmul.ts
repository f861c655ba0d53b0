// Linear layers: Y[M, N] = act(A · Wᵀ + bias) + residual with W as checkpoints store it ([N, K]), in any
// weight format (f32, 16-bit, q4 / q8: dequantized inside the kernels, never materialised). Tiled matmul
// (shaders/matmul.wgsl) for prefill and encoders on GPUs, matrix-vector (shaders/gemv.wgsl) when M is
// small, and matmul_rows (shaders/matmul-rows.wgsl: no shared memory, operands read uniformly) for both
// on SIMD-on-CPU drivers such as lavapipe (src/gpu/tuning.ts). A weight split in row chunks is one
// dispatch per chunk. The A operand may be gathered on the fly (pixel shuffle for the projector, im2col
// for the patch embedding) or, in the gemv, merged from split-KV attention partials.
import type { BufferOf, Dispatch, Graph, Kernel, KernelContext, Node } from '../graph/graph.ts';
import { type Tensor, WEIGHT_DTYPES, expectShape } from '../graph/tensor.ts';
import { ACT, type Activation } from './elementwise.ts';
import { uniforms, chunksOf, whole, grid1d, f32, weightFormat } from './common.ts';
import { rmsNorm } from './norm.ts';
import type { MatmulTiles, RowsTiles } from '../gpu/tuning.ts';

/** How the linear kernels read A: shaders/a-operand.wgsl (tiled and rows), and attention partials in shaders/gemv.wgsl. */
export type AOperand =
  | { mode: 'plain' }
  | { mode: 'pixel_shuffle'; s: number; E: number; gridW: number }
  | { mode: 'im2col'; C: number; H: number; W: number; P: number; gridW: number }
  /** Split-KV attention partials [M·heads·splits, d + 2], merged as read (gemv only): K = heads·d. */
  | { mode: 'attn_partials'; heads: number; d: number; splits: number };

/** Rows after which the residual repeats (per-tile position embeddings); 0 = it has M rows. */
export interface ResidualRepeat {
  residualRows?: number;
}

/** An RMSNorm to apply to the input first: x → x / sqrt(mean(x²) + eps) · weight. */
export interface NormFold {
  weight: Tensor;
  eps: number;
}

export interface LinearOptions extends ResidualRepeat {
  /** Folded into the kernel where the variant reads whole rows of a plain A (gemv, rows); else a separate node. */
  norm?: NormFold;
  bias?: Tensor;
  residual?: Tensor;
  act?: Activation;
  /**
   * 'auto' takes rows on a SIMD-on-CPU device where the shapes allow it; otherwise gemv for
   * M <= GEMV_MAX_M, split-K for few tiles over a long K, else tiled.
   */
  variant?: 'auto' | MatmulVariant;
}

export interface MatmulAttrs {
  M: number;
  N: number;
  K: number;
  act: number;
  a: AOperand;
  variant: MatmulVariant;
  /** matmul_rows' tile sizes (override constants); only for the rows variant. */
  rows?: RowsTiles;
  /** The tiled and split-K entries' workgroup (override constants). */
  tiled?: MatmulTiles;
  hasBias: boolean;
  hasRes: boolean;
  /** A folded RMSNorm: its eps; the weight is the last input. */
  norm?: { eps: number };
  resRows: number;
  /** Split-K: K per split and number of splits (1 otherwise). */
  kChunk: number;
  splits: number;
}

export type MatmulVariant = 'tiled' | 'gemv' | 'splitk' | 'rows';

export const GEMV_MAX_M = 4;
/** Output rows per gemv workgroup (32 lanes each): the override GROWS of shaders/gemv.wgsl. */
export const GEMV_ROWS = 8;
const A_MODE = { plain: 0, pixel_shuffle: 1, im2col: 2 } as const;

/** LinearParams of linear.wgsl for the weight rows [row0, row0 + rows): the fields every entry reads. */
function linearWords(at: MatmulAttrs, row0: number, rows: number): (number | ReturnType<typeof f32>)[] {
  return [at.M, rows, at.K, row0, at.N, at.act, at.hasBias ? 1 : 0, at.hasRes ? 1 : 0, at.resRows, at.norm ? 1 : 0, f32(at.norm?.eps ?? 0), 0];
}

/** AOperand of a-operand.wgsl (the tiled and rows entries). */
function aWords(a: AOperand): number[] {
  if (a.mode === 'pixel_shuffle') return [A_MODE.pixel_shuffle, a.s, a.E, a.gridW, 0, 0, 0, 0];
  if (a.mode === 'im2col') return [A_MODE.im2col, 0, 0, a.gridW, a.C, a.H, a.W, a.P];
  if (a.mode === 'attn_partials') throw new Error('matmul: attention partials are read by the gemv only');
  return [A_MODE.plain, 0, 0, 0, 0, 0, 0, 0];
}

/** The uniforms of a linear entry over weight rows [row0, row0 + rows). */
export function params(at: MatmulAttrs, row0: number, rows: number): Uint32Array {
  const head = linearWords(at, row0, rows);
  switch (at.variant) {
    case 'gemv': {
      const pa = at.a.mode === 'attn_partials' ? [1, at.a.heads, at.a.d, at.a.splits] : [0, 0, 0, 0];
      return uniforms(...head, ...pa);
    }
    case 'rows':
      return uniforms(...head, ...aWords(at.a));
    default:
      return uniforms(...head, ...aWords(at.a), at.kChunk, at.splits, 0, 0);
  }
}

/** The pipeline of a linear entry reading weight `w`: shader, entry, weight format and override constants. */
function linearPipeline(shader: string, entry: string, w: Tensor, constants: Record<string, number> = {}, enables?: string[]) {
  const f = weightFormat(w);
  return { shader, entry, weight: f.weight, constants: { ...f.constants, ...constants }, enables };
}

/** A node's folded RMSNorm weight (its last input), if it folds one. */
export function normWeightOf(node: Node<MatmulAttrs>): Tensor | undefined {
  return node.attrs.norm ? node.inputs[node.inputs.length - 1] : undefined;
}

/** The folded norm's weight, or the dummy, at the bindings that read it (11 as floats, 12 as vec4). */
export function normBindings(node: Node<MatmulAttrs>, buf: BufferOf, ctx: KernelContext, bindings: number[]) {
  const nw = normWeightOf(node);
  const buffer = nw ? whole('folded rmsnorm weight', nw, buf) : ctx.dummy;
  return bindings.map((binding) => ({ binding, buffer }));
}

/**
 * Whether a linear layer over the M rows of a plain input folds an RMSNorm into its kernel (see
 * LinearOptions.norm): whether its 'auto' variant reads whole rows of weight w.
 */
export function foldsNorm(g: Graph, M: number, w: Tensor): boolean {
  const v = autoVariant(g, M, w.dim(0), w.dim(1), { mode: 'plain' }, w);
  return v === 'gemv' || v === 'rows';
}

/** The 'auto' variant: see LinearOptions.variant. */
function autoVariant(g: Graph, M: number, N: number, K: number, a: AOperand, w?: Tensor): MatmulVariant {
  if (a.mode === 'attn_partials') return 'gemv';
  if (g.tuning.target === 'cpu' && rowsFit(a, K, w)) return 'rows';
  if (M <= GEMV_MAX_M && a.mode === 'plain') return 'gemv';
  const tiles = Math.ceil(M / (4 * g.tuning.tiled.TWY)) * Math.ceil(N / (4 * g.tuning.tiled.TWX));
  return tiles < SPLITK_BELOW_TILES && K >= 2 * SPLITK_MIN_CHUNK ? 'splitk' : 'tiled';
}

/** The tiled entries' workgroup, which matmulNode sets for the tiled and split-K variants. */
function tiledOf(at: MatmulAttrs): MatmulTiles {
  if (!at.tiled) throw new Error(`matmul: the ${at.variant} variant has no tiled workgroup size`);
  return at.tiled;
}

/** The tiled entries' override constants. */
function tiledConstants(at: MatmulAttrs): Record<string, number> {
  const t = tiledOf(at);
  return { TWX: t.TWX, TWY: t.TWY };
}

/** The tiled entries' grid for `rows` weight rows (output columns): one workgroup per 4·TWY × 4·TWX tile. */
function tiledGrid(at: MatmulAttrs, rows: number): [number, number] {
  const t = tiledOf(at);
  return [Math.ceil(rows / (4 * t.TWX)), Math.ceil(at.M / (4 * t.TWY))];
}

/** Split-K, first pass: partial sums per K split into a scratch [splits·M, N] (one dispatch per weight chunk). */
const splitKPartialKernel: Kernel<MatmulAttrs> = {
  name: 'matmul_splitk',
  encode(node, buf) {
    const at = node.attrs;
    const [x, w] = node.inputs;
    return chunksOf(w, buf).map(
      (c): Dispatch => ({
        pipeline: linearPipeline('matmul', 'matmul_splitk', w, tiledConstants(at)),
        bindings: [
          { binding: 1, buffer: buf(x) },
          { binding: 2, buffer: c.buffer },
          { binding: 6, buffer: buf(node.output) },
        ],
        uniforms: params(at, c.row0, c.rows),
        workgroups: [...tiledGrid(at, c.rows), at.splits],
      }),
    );
  },
};

/** Split-K, second pass: sums the splits and applies bias, activation and residual. */
const splitKReduceKernel: Kernel<MatmulAttrs> = {
  name: 'splitk_reduce',
  encode(node, buf, ctx) {
    const at = node.attrs;
    const [part, ...rest] = node.inputs;
    const bias = at.hasBias ? rest.shift() : undefined;
    const res = at.hasRes ? rest.shift() : undefined;
    return [
      {
        // The module declares the weight; this entry does not read it.
        pipeline: { shader: 'matmul', entry: 'splitk_reduce', weight: 'f32' },
        bindings: [
          { binding: 3, buffer: bias ? whole('matmul bias', bias, buf) : ctx.dummy },
          { binding: 4, buffer: res ? buf(res) : ctx.dummy },
          { binding: 5, buffer: buf(node.output) },
          { binding: 6, buffer: buf(part) },
        ],
        uniforms: params(at, 0, at.N),
        workgroups: grid1d(at.M * at.N, 256),
      },
    ];
  },
};

/** Split K when the tiles would leave the device idle and each split still has a long K. */
const SPLITK_BELOW_TILES = 64;
const SPLITK_MIN_CHUNK = 512;
const SPLITK_MAX = 32;

export const matmulKernel: Kernel<MatmulAttrs> = {
  name: 'matmul',
  encode(node, buf, ctx) {
    const at = node.attrs;
    const [x, w, ...rest] = node.inputs;
    const bias = at.hasBias ? rest.shift() : undefined;
    const res = at.hasRes ? rest.shift() : undefined;
    const biasRes = [
      { binding: 3, buffer: bias ? whole('matmul bias', bias, buf) : ctx.dummy },
      { binding: 4, buffer: res ? buf(res) : ctx.dummy },
    ];
    if (at.variant === 'rows') return rowsDispatches(node, 'matmul_rows', [w], buf, ctx, biasRes);
    const gemv = at.variant === 'gemv';
    return chunksOf(w, buf).map(
      (c): Dispatch => ({
        pipeline: gemv
          ? linearPipeline('gemv', 'gemv', w, { GROWS: GEMV_ROWS }, ctx.subgroupReduce ? ['subgroups'] : undefined)
          : linearPipeline('matmul', 'matmul', w, tiledConstants(at)),
        bindings: [
          { binding: 1, buffer: buf(x) },
          { binding: 2, buffer: c.buffer },
          ...biasRes,
          { binding: 5, buffer: buf(node.output) },
          ...(gemv ? [{ binding: 8, buffer: buf(x) }, ...normBindings(node, buf, ctx, [11, 12])] : []),
        ],
        uniforms: params(at, c.row0, c.rows),
        workgroups: gemv ? [Math.ceil(c.rows / GEMV_ROWS), 1, at.M] : tiledGrid(at, c.rows),
      }),
    );
  },
};

/**
 * Whether matmul_rows can read these operands eight elements at a time: K and, for the gathered A modes,
 * the run of consecutive features (E for pixel shuffle; P for im2col) multiples of 8, the image width a
 * multiple of 4 (vec4 reads of A), and a quantized weight's groups whole multiples of 8.
 */
export function rowsFit(a: AOperand, K: number, w?: Tensor): boolean {
  if (K % 8 !== 0 || a.mode === 'attn_partials') return false;
  if (w?.quant && w.quant.group % 8 !== 0) return false;
  if (a.mode === 'pixel_shuffle') return a.E % 8 === 0;
  if (a.mode === 'im2col') return a.P % 8 === 0 && a.W % 4 === 0;
  return true;
}

/** matmul_rows' tiles for M rows: the device's, with RM = M when M is smaller (decode). */
export function rowsTiles(tiles: RowsTiles, M: number): RowsTiles {
  return { ...tiles, RM: Math.min(tiles.RM, M) };
}

/**
 * The dispatches of a matmul-rows.wgsl entry (matmul_rows, gemv_glu_rows) for `node` (A its first input,
 * bound at 8 as vec4): one per weight chunk, the weights at bindings 2 (and 7), the output at 5, a folded
 * norm's weight at 12, plus `extra` bindings.
 */
export function rowsDispatches(
  node: Node<MatmulAttrs>,
  entry: string,
  weights: Tensor[],
  buf: BufferOf,
  ctx: KernelContext,
  extra: { binding: number; buffer: GPUBuffer }[] = [],
): Dispatch[] {
  const at = node.attrs;
  const tiles = at.rows;
  if (!tiles) throw new Error(`${entry}: the rows variant needs tile sizes`);
  const chunks = sameChunks(entry, weights, buf);
  return chunks[0].map((c, i): Dispatch => ({
    pipeline: linearPipeline('matmul-rows', entry, weights[0], { RM: tiles.RM, RC: tiles.RC, RWG: tiles.RWG }),
    bindings: [
      { binding: 8, buffer: buf(node.inputs[0]) },
      ...chunks.map((cs, wi) => ({ binding: wi === 0 ? 2 : 7, buffer: cs[i].buffer })),
      { binding: 5, buffer: buf(node.output) },
      ...normBindings(node, buf, ctx, [12]),
      ...extra,
    ],
    uniforms: params(at, c.row0, c.rows),
    workgroups: [Math.ceil(c.rows / (tiles.RWG * tiles.RC)), Math.ceil(at.M / tiles.RM)],
  }));
}

/** The row chunks of weights that one kernel reads side by side (gate and up): they must be split alike. */
export function sameChunks(op: string, weights: Tensor[], buf: BufferOf) {
  const chunks = weights.map((w) => chunksOf(w, buf));
  const [first] = chunks;
  if (chunks.some((cs) => cs.length !== first.length || cs.some((c, i) => c.row0 !== first[i].row0 || c.rows !== first[i].rows))) {
    throw new Error(`${op}: ${weights.join(' and ')} are split differently`);
  }
  return chunks;
}

/** Adds a matmul node whose A operand is `x` read as `a` describes, with logical shape [M, K]. */
export function matmulNode(g: Graph, x: Tensor, w: Tensor, M: number, a: AOperand, opts: LinearOptions = {}): Tensor {
  const [N, K] = w.shape;
  expectShape('linear', 'weight', w, [null, null], WEIGHT_DTYPES);
  if (opts.bias) expectShape('linear', 'bias', opts.bias, [N], ['f32']);
  const resRows = opts.residualRows ?? 0;
  if (opts.residual) expectShape('linear', 'residual', opts.residual, [resRows || M, N], ['f32']);
  if (resRows && M % resRows !== 0) throw new Error(`linear: ${M} rows are not a whole number of ${resRows}-row residual repeats`);
  if (resRows && opts.variant === 'gemv') throw new Error('linear: the gemv variant does not repeat residuals');
  const variant: MatmulVariant = opts.variant && opts.variant !== 'auto' ? opts.variant : autoVariant(g, M, N, K, a, w);
  if (variant === 'gemv' && a.mode !== 'plain' && a.mode !== 'attn_partials') {
    throw new Error(`linear: the gemv variant reads a plain A operand or attention partials, not ${a.mode}`);
  }
  if (a.mode === 'attn_partials') {
    if (variant !== 'gemv' || M > GEMV_MAX_M) throw new Error(`linear: attention partials are merged by the gemv only (M = ${M}, variant ${variant})`);
    if (K !== a.heads * a.d) throw new Error(`linear: attention partials of ${a.heads} heads × ${a.d} give K = ${a.heads * a.d}, the weight has ${K}`);
    expectShape('linear', 'attention partials', x, [M * a.heads * a.splits, a.d + 2], ['f32']);
  }
  // A norm is folded where the kernel reads whole plain rows of A; elsewhere it is a node of its own.
  const foldNorm = !!opts.norm && a.mode === 'plain' && (variant === 'gemv' || variant === 'rows');
  if (opts.norm && !foldNorm) {
    if (a.mode !== 'plain') throw new Error(`linear: an RMSNorm cannot be folded into a ${a.mode} A operand`);
    return matmulNode(g, rmsNorm(g, x, opts.norm.weight, opts.norm.eps), w, M, a, { ...opts, norm: undefined, variant });
  }
  if (opts.norm) expectShape('linear', 'folded rmsnorm weight', opts.norm.weight, [K], ['f32']);
  if (variant === 'rows' && !rowsFit(a, K, w)) {
    throw new Error(`linear: the rows variant reads eight elements at a time and needs K (${K})${a.mode === 'plain' ? '' : ` and the ${a.mode} runs`}${w.quant ? ` and the group length (${w.quant.group})` : ''} to be multiples of 8`);
  }
  const splits = variant === 'splitk' ? Math.max(2, Math.min(SPLITK_MAX, Math.floor(K / SPLITK_MIN_CHUNK))) : 1;
  const kChunk = variant === 'splitk' ? Math.ceil(K / splits / 16) * 16 : K;
  const inputs = [x, w, ...(opts.bias ? [opts.bias] : []), ...(opts.residual ? [opts.residual] : []), ...(foldNorm ? [opts.norm!.weight] : [])];
  const attrs: MatmulAttrs = {
    M,
    N,
    K,
    act: ACT[opts.act ?? 'none'],
    a,
    variant,
    rows: variant === 'rows' ? rowsTiles(g.tuning.rows, M) : undefined,
    tiled: variant === 'tiled' || variant === 'splitk' ? g.tuning.tiled : undefined,
    hasBias: !!opts.bias,
    hasRes: !!opts.residual,
    norm: foldNorm ? { eps: opts.norm!.eps } : undefined,
    resRows,
    kChunk,
    splits: variant === 'splitk' ? Math.ceil(K / kChunk) : 1,
  };
  if (variant === 'splitk') {
    const part = g.add(splitKPartialKernel, [x, w], { shape: [attrs.splits * M, N], dtype: 'f32' }, attrs);
    return g.add(splitKReduceKernel, [part, ...inputs.slice(2)], { shape: [M, N], dtype: 'f32' }, attrs);
  }
  return g.add(matmulKernel, inputs, { shape: [M, N], dtype: 'f32' }, attrs);
}

/** x[M, K] · w[N, K]ᵀ (+ bias, activation, + residual): a torch nn.Linear. */
export function linear(g: Graph, x: Tensor, w: Tensor, opts: LinearOptions = {}): Tensor {
  expectShape('linear', 'input', x, [null, w.dim(1)], ['f32']);
  return matmulNode(g, x, w, x.dim(0), { mode: 'plain' }, opts);
}

export type { BufferOf };
