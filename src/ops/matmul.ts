// Linear layers: Y[M, N] = act(A · Wᵀ + bias) + residual with W as checkpoints store it ([N, K]).
// Tiled matmul (shaders/matmul.wgsl, entry matmul) for prefill and encoders on GPUs, matrix-vector (entry
// gemv, see gemv.ts) when M is small, and matmul_rows (no shared memory, operands read uniformly) for both
// on SIMD-on-CPU drivers such as lavapipe (src/gpu/tuning.ts). A weight split in row chunks is one dispatch per chunk. The A operand may be
// gathered on the fly (pixel shuffle for the projector, im2col for the patch embedding).
import type { BufferOf, Dispatch, Graph, Kernel, KernelContext, Node } from '../graph/graph.ts';
import { type Tensor, expectShape } from '../graph/tensor.ts';
import { ACT, type Activation } from './elementwise.ts';
import { uniforms, chunksOf, whole, wgslType, grid1d, f32 } from './common.ts';
import { rmsNorm } from './norm.ts';
import type { MatmulTiles, RowsTiles } from '../gpu/tuning.ts';

/** How matmul.wgsl reads A; see the header of that file. */
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
const A_MODE = { plain: 0, pixel_shuffle: 1, im2col: 2, attn_partials: 3 } as const;

/** The Params words of matmul.wgsl for the rows [row0, row0 + rows) of the weight. */
export function params(at: MatmulAttrs, row0: number, rows: number): Uint32Array {
  const a = at.a;
  const modeWords =
    a.mode === 'pixel_shuffle'
      ? [A_MODE.pixel_shuffle, a.s, a.E, a.gridW, 0, 0, 0, 0]
      : a.mode === 'im2col'
        ? [A_MODE.im2col, 0, 0, a.gridW, a.C, a.H, a.W, a.P]
        : a.mode === 'attn_partials'
          ? [A_MODE.attn_partials, a.splits, a.d, a.heads, 0, 0, 0, 0]
          : [A_MODE.plain, 0, 0, 0, 0, 0, 0, 0];
  const head = [at.M, rows, at.K, row0, at.N, at.act, at.hasBias ? 1 : 0, at.hasRes ? 1 : 0];
  return uniforms(...head, ...modeWords, at.resRows, at.kChunk, at.splits, at.norm ? 1 : 0, f32(at.norm?.eps ?? 0));
}

/** The type aliases of matmul.wgsl: weight, bias and folded-norm weight element types. */
export function matmulAliases(w: Tensor | null, bias?: Tensor, normWeight?: Tensor): Record<string, string> {
  return { WT: w ? wgslType(w) : 'f32', BT: bias ? wgslType(bias) : 'f32', NT: normWeight ? wgslType(normWeight) : 'f32' };
}

/** A node's folded RMSNorm weight (its last input), if it folds one. */
export function normWeightOf(node: Node<MatmulAttrs>): Tensor | undefined {
  return node.attrs.norm ? node.inputs[node.inputs.length - 1] : undefined;
}

/** The folded norm's weight bound at `binding`, or the dummy. */
export function normBinding(node: Node<MatmulAttrs>, buf: BufferOf, ctx: KernelContext, binding: number) {
  const nw = normWeightOf(node);
  return { binding, buffer: nw ? whole('folded rmsnorm weight', nw, buf) : ctx.dummy };
}

/**
 * Whether a linear layer over M rows of a plain [M, K] input into N outputs folds an RMSNorm into its
 * kernel (see LinearOptions.norm): whether its 'auto' variant reads whole rows.
 */
export function foldsNorm(g: Graph, M: number, N: number, K: number): boolean {
  const v = autoVariant(g, M, N, K, { mode: 'plain' });
  return v === 'gemv' || v === 'rows';
}

/** The 'auto' variant: see LinearOptions.variant. */
function autoVariant(g: Graph, M: number, N: number, K: number, a: AOperand): MatmulVariant {
  if (a.mode === 'attn_partials') return 'gemv';
  if (g.tuning.target === 'cpu' && rowsFit(a, K)) return 'rows';
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
        pipeline: { shader: 'matmul', entry: 'matmul_splitk', aliases: matmulAliases(w), constants: tiledConstants(at) },
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
        pipeline: { shader: 'matmul', entry: 'splitk_reduce', aliases: matmulAliases(null, bias) },
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
    if (at.variant === 'rows') return rowsDispatches(node, 'matmul_rows', [w], buf, ctx, biasRes, bias);
    return chunksOf(w, buf).map((c): Dispatch => {
      const gemv = at.variant === 'gemv';
      return {
        pipeline: {
          shader: 'matmul',
          entry: gemv ? 'gemv' : 'matmul',
          aliases: matmulAliases(w, bias, normWeightOf(node)),
          enables: gemv && ctx.subgroupReduce ? ['subgroups'] : undefined,
          constants: gemv ? undefined : tiledConstants(at),
        },
        bindings: [
          { binding: 1, buffer: buf(x) },
          { binding: 2, buffer: c.buffer },
          ...biasRes,
          { binding: 5, buffer: buf(node.output) },
          ...(gemv ? [normBinding(node, buf, ctx, 11)] : []),
        ],
        uniforms: params(at, c.row0, c.rows),
        workgroups: gemv ? [Math.ceil(c.rows / 8), 1, at.M] : tiledGrid(at, c.rows),
      };
    });
  },
};

/**
 * Whether matmul_rows can read these operands as vec4: K and, for the gathered A modes, the run of
 * consecutive features (E for pixel shuffle; P and the image width for im2col) multiples of 4.
 */
export function rowsFit(a: AOperand, K: number): boolean {
  if (K % 4 !== 0 || a.mode === 'attn_partials') return false;
  if (a.mode === 'pixel_shuffle') return a.E % 4 === 0;
  if (a.mode === 'im2col') return a.P % 4 === 0 && a.W % 4 === 0;
  return true;
}

/** matmul_rows' tiles for M rows: the device's, with RM = M when M is smaller (decode). */
export function rowsTiles(tiles: RowsTiles, M: number): RowsTiles {
  return { ...tiles, RM: Math.min(tiles.RM, M) };
}

/**
 * The dispatches of a matmul_rows entry (matmul_rows, gemv_glu_rows) for `node` (A its first input): one
 * per weight chunk, the weights bound as vec4 at bindings 9 (and 10), A at 8, the output at 5, a folded
 * norm's weight at 12, plus `extra` bindings (a `bias` among them sets the bias type).
 */
export function rowsDispatches(
  node: Node<MatmulAttrs>,
  entry: string,
  weights: Tensor[],
  buf: BufferOf,
  ctx: KernelContext,
  extra: { binding: number; buffer: GPUBuffer }[] = [],
  bias?: Tensor,
): Dispatch[] {
  const at = node.attrs;
  const tiles = at.rows;
  if (!tiles) throw new Error(`${entry}: the rows variant needs tile sizes`);
  const chunks = weights.map((w) => chunksOf(w, buf));
  const [first] = chunks;
  if (chunks.some((cs) => cs.length !== first.length || cs.some((c, i) => c.row0 !== first[i].row0 || c.rows !== first[i].rows))) {
    throw new Error(`${entry}: ${weights.join(' and ')} are split differently`);
  }
  const nw = normWeightOf(node);
  return first.map((c, i): Dispatch => ({
    pipeline: {
      shader: 'matmul',
      entry,
      aliases: matmulAliases(weights[0], bias, nw),
      constants: { RM: tiles.RM, RC: tiles.RC, RWG: tiles.RWG },
    },
    bindings: [
      { binding: 8, buffer: buf(node.inputs[0]) },
      ...chunks.map((cs, wi) => ({ binding: 9 + wi, buffer: cs[i].buffer })),
      { binding: 5, buffer: buf(node.output) },
      normBinding(node, buf, ctx, 12),
      ...extra,
    ],
    uniforms: params(at, c.row0, c.rows),
    workgroups: [Math.ceil(c.rows / (tiles.RWG * tiles.RC)), Math.ceil(at.M / tiles.RM)],
  }));
}

/** Adds a matmul node whose A operand is `x` read as `a` describes, with logical shape [M, K]. */
export function matmulNode(g: Graph, x: Tensor, w: Tensor, M: number, a: AOperand, opts: LinearOptions = {}): Tensor {
  const [N, K] = w.shape;
  expectShape('linear', 'weight', w, [null, null], ['f32', 'f16']);
  if (opts.bias) expectShape('linear', 'bias', opts.bias, [N], ['f32', 'f16']);
  const resRows = opts.residualRows ?? 0;
  if (opts.residual) expectShape('linear', 'residual', opts.residual, [resRows || M, N], ['f32']);
  if (resRows && M % resRows !== 0) throw new Error(`linear: ${M} rows are not a whole number of ${resRows}-row residual repeats`);
  if (resRows && opts.variant === 'gemv') throw new Error('linear: the gemv variant does not repeat residuals');
  const variant: MatmulVariant = opts.variant && opts.variant !== 'auto' ? opts.variant : autoVariant(g, M, N, K, a);
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
  if (opts.norm) expectShape('linear', 'folded rmsnorm weight', opts.norm.weight, [K], ['f32', 'f16']);
  if (variant === 'rows' && !rowsFit(a, K)) {
    throw new Error(`linear: the rows variant reads vec4s and needs K (${K})${a.mode === 'plain' ? '' : ` and the ${a.mode} runs`} to be multiples of 4`);
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
