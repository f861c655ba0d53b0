// Shared by the linear-layer kernels (matmul.wgsl: tiled and split-K; gemv.wgsl: decode; matmul-rows.wgsl:
// SIMD-on-CPU drivers): Y[M, N] = act(A[M, K] · W[N, K]ᵀ + bias) + residual, with W stored as checkpoints
// store linear weights ([out, in]) in any weight format (shaders/weights/*.wgsl, read through w_at and its
// siblings), f32 accumulation.
// A weight split in chunks (above maxStorageBufferBindingSize) is one dispatch per chunk: n0 is the
// chunk's first output column and N its row count; ldc is the whole output width.
// The residual may repeat every res_rows rows (the position embedding of each tile); 0 means M.
// With has_norm, an RMSNorm is folded into the entries that read whole plain rows of A (gemv, gemv_glu,
// the rows entries): every a[k] is scaled by nw[k] on the way in, the row's sum of squares is taken in
// the same pass, and the dot product is scaled by 1/sqrt(mean(a²) + eps) at the end.
//#include activation
alias AT = f32;

struct LinearParams {
  M: u32, N: u32, K: u32, n0: u32,
  ldc: u32, act: u32, has_bias: u32, has_res: u32,
  res_rows: u32, has_norm: u32, eps: f32, _p0: u32,
}

@group(0) @binding(1) var<storage, read> a: array<f32>;
@group(0) @binding(3) var<storage, read> bias: array<f32>;
@group(0) @binding(4) var<storage, read> res: array<f32>;
@group(0) @binding(5) var<storage, read_write> y: array<f32>;
@group(0) @binding(11) var<storage, read> nw: array<f32>;
// The same A and folded-norm weight as vec4s (the gemv and rows entries read four at a time).
@group(0) @binding(8) var<storage, read> a4: array<vec4f>;
@group(0) @binding(12) var<storage, read> nw4: array<vec4f>;

fn epilogue(m: u32, n: u32, acc: f32) {
  let col = p.l.n0 + n;
  var v = acc;
  if (p.l.has_bias != 0u) { v += bias[col]; }
  v = activate(v, p.l.act);
  if (p.l.has_res != 0u) {
    let rm = select(m, m % p.l.res_rows, p.l.res_rows != 0u);
    v += res[rm * p.l.ldc + col];
  }
  y[m * p.l.ldc + col] = v;
}

fn norm_w(k: u32) -> f32 {
  if (p.l.has_norm == 0u) { return 1.0; }
  return nw[k];
}

fn norm_w4(k4: u32) -> vec4f {
  if (p.l.has_norm == 0u) { return vec4f(1.0); }
  return nw4[k4];
}

/** The factor 1/rms of a row from its sum of squares (1 without a folded norm). */
fn row_scale(ss: f32) -> f32 {
  if (p.l.has_norm == 0u) { return 1.0; }
  return inverseSqrt(ss / f32(p.l.K) + p.l.eps);
}
