// Y[M, N] = act(A[M, K] · W[N, K]ᵀ + bias) + residual, with W stored as checkpoints store linear
// weights ([out, in]) in WT (f32 or f16), f32 accumulation.
// Entry points:
//   matmul: TM×TN output tile per workgroup of TWX×TWY invocations (64×64 and 16×16 by default), 4×4
//           outputs per invocation (strided by the workgroup size to keep shared-memory reads
//           conflict-free), K step 16.
//   matmul_splitk + splitk_reduce: the same tiles with K split over the grid's z, for few tiles and
//           long K (see below).
//   gemv_glu: the gemv over the gate and up weights at once, with silu(gate)·up as the epilogue.
//   gemv:   for decode (M small, typically 1): a workgroup of 32×8 invocations computes 8 outputs;
//           32 lanes stride over K (consecutive lanes read consecutive weights) and reduce with
//           subgroupAdd where the module has subgroups (see row_sum), else in shared memory; z of the
//           grid is the row m. Reads A plainly (a_mode 0) or as split-KV partials (a_mode 3), and no
//           repeating residual.
// The A operand is read through load_a, which can gather it instead of reading a plain matrix:
//   a_mode 0: A is a row-major [M, K] f32 matrix.
//   a_mode 1: Idefics3 pixel shuffle of square [gw·gw, E] grids (one per image tile) by s, fused
//             (projector): row r of a tile is the s×s block (r / (gw/s), r % (gw/s)),
//             feature k = (i·s + j)·E + c.
//   a_mode 2: im2col of NCHW pixels [tiles, C, H, W] for a stride-P convolution (patch embedding):
//             row r of a tile is patch (r / gw, r % gw), feature k = (c·P + ky)·P + kx, as the conv
//             weight [D, C, P, P] flattens.
//   a_mode 3 (gemv only): the output of split-KV attention, merged on the fly from its partials
//             [M·heads·splits, d + 2] (see attention_partial in attention.wgsl) with gw = heads, E = d,
//             s = splits: A[r, h·d + i] = Σ_s o_s[i]·e^(m_s − m) / Σ_s l_s·e^(m_s − m). The decode
//             step's o_proj reads attention this way, so attention_combine is not dispatched.
// The residual may repeat every res_rows rows (the position embedding of each tile); 0 means M.
// A weight split in chunks (above maxStorageBufferBindingSize) is one dispatch per chunk: n0 is the
// chunk's first output column and N its row count.
//#include activation
alias AT = f32;

struct Params {
  M: u32, N: u32, K: u32, n0: u32,
  ldc: u32, act: u32, has_bias: u32, has_res: u32,
  a_mode: u32, s: u32, E: u32, gw: u32,
  C: u32, H: u32, W: u32, P: u32,
  res_rows: u32, k_chunk: u32, splits: u32, has_norm: u32,
  eps: f32, _p3: u32, _p4: u32, _p5: u32,
}

@group(0) @binding(0) var<uniform> p: Params;
@group(0) @binding(1) var<storage, read> a: array<f32>;
@group(0) @binding(2) var<storage, read> w: array<WT>;
@group(0) @binding(3) var<storage, read> bias: array<BT>;
@group(0) @binding(4) var<storage, read> res: array<f32>;
@group(0) @binding(5) var<storage, read_write> y: array<f32>;

// The tiled entries' tile: a workgroup of TWX × TWY invocations, each 4×4 outputs strided by the
// workgroup's size, so a tile is TM = 4·TWY rows by TN = 4·TWX columns; K in steps of TK. TWX and TWY are
// override constants chosen per device (src/gpu/tuning.ts; 16 × 16 → 64×64 tiles by default).
override TWX: u32 = 16u;
override TWY: u32 = 16u;
override TM: u32 = 4u * TWY;
override TN: u32 = 4u * TWX;
const TK: u32 = 16u;

// [TK][TM] and [TK][TN], flattened (only the outer size of a workgroup array may be an override).
var<workgroup> As: array<f32, TK * TM>;
var<workgroup> Ws: array<f32, TK * TN>;

/** Index into a of A[r, k] (see a_mode above). */
fn a_index(r: u32, k: u32) -> u32 {
  switch p.a_mode {
    case 1u: {
      let bw = p.gw / p.s;
      let tile = r / (bw * bw);
      let rr = r % (bw * bw);
      let h = (rr / bw) * p.s + k / (p.E * p.s);
      let x = (rr % bw) * p.s + (k / p.E) % p.s;
      return ((tile * p.gw + h) * p.gw + x) * p.E + k % p.E;
    }
    case 2u: {
      let per = (p.H / p.P) * p.gw;
      let tile = r / per;
      let rr = r % per;
      let pp = p.P * p.P;
      let c = k / pp;
      let yy = (rr / p.gw) * p.P + (k % pp) / p.P;
      let xx = (rr % p.gw) * p.P + k % p.P;
      return ((tile * p.C + c) * p.H + yy) * p.W + xx;
    }
    default: { return r * p.K + k; }
  }
}

/** How many consecutive k from a multiple of it are consecutive floats of a: E, P, or all of K. */
fn a_run() -> u32 {
  switch p.a_mode {
    case 1u: { return p.E; }
    case 2u: { return p.P; }
    default: { return p.K; }
  }
}

fn load_a(r: u32, k: u32) -> f32 {
  return a[a_index(r, k)];
}

/** A[r, k] for the gemv entries: plain, or (a_mode 3) merged from split-KV attention partials. */
fn gemv_a(r: u32, k: u32) -> f32 {
  if (p.a_mode != 3u) { return a[r * p.K + k]; }
  let d = p.E;
  let stride = d + 2u;
  let base = (r * p.gw + k / d) * p.s * stride;
  var mx = -0x1.fffffep+127f;
  for (var z = 0u; z < p.s; z++) { mx = max(mx, a[base + z * stride + d]); }
  var o = 0.0;
  var l = 0.0;
  for (var z = 0u; z < p.s; z++) {
    let at = base + z * stride;
    let e = exp(a[at + d] - mx);
    o = fma(a[at + k % d], e, o);
    l = fma(a[at + d + 1u], e, l);
  }
  return o / l;
}

fn epilogue(m: u32, n: u32, acc: f32) {
  let col = p.n0 + n;
  var v = acc;
  if (p.has_bias != 0u) { v += f32(bias[col]); }
  v = activate(v, p.act);
  if (p.has_res != 0u) {
    let rm = select(m, m % p.res_rows, p.res_rows != 0u);
    v += res[rm * p.ldc + col];
  }
  y[m * p.ldc + col] = v;
}

// RMSNorm folded into the decode kernels (gemv, gemv_glu and the rows entries, plain A only): with
// has_norm, A is read as if it were rmsnorm(A)·nw, i.e. every a[k] is scaled by nw[k] on the way in, the
// sum of squares of the row is taken in the same pass, and the dot product is scaled by
// 1/sqrt(mean(a²) + eps) at the end. That saves the norm's dispatch and its [M, K] output.
@group(0) @binding(11) var<storage, read> nw: array<NT>;
@group(0) @binding(12) var<storage, read> nw4: array<vec4<NT>>;

fn norm_w(k: u32) -> f32 {
  if (p.has_norm == 0u) { return 1.0; }
  return f32(nw[k]);
}

fn norm_w4(k4: u32) -> vec4f {
  if (p.has_norm == 0u) { return vec4f(1.0); }
  return vec4f(nw4[k4]);
}

/** The factor 1/rms of a row from its sum of squares (1 without a folded norm). */
fn row_scale(ss: f32) -> f32 {
  if (p.has_norm == 0u) { return 1.0; }
  return inverseSqrt(ss / f32(p.K) + p.eps);
}

/** The TM×TN output tile at (m0, c0) over k in [k_begin, k_end): 4×4 sums per invocation. */
fn tile_product(m0: u32, c0: u32, lid: vec3u, li: u32, k_begin: u32, k_end: u32) -> array<array<f32, 4>, 4> {
  var acc: array<array<f32, 4>, 4>;
  let threads = TWX * TWY;
  for (var k0 = k_begin; k0 < k_end; k0 += TK) {
    for (var idx = li; idx < TK * TM; idx += threads) {
      let row = idx / TK;
      let kk = idx % TK;
      let k = k0 + kk;
      var av = 0.0;
      if (m0 + row < p.M && k < k_end) { av = load_a(m0 + row, k); }
      As[kk * TM + row] = av;
    }
    for (var idx = li; idx < TK * TN; idx += threads) {
      let row = idx / TK;
      let kk = idx % TK;
      let k = k0 + kk;
      var wv = 0.0;
      if (c0 + row < p.N && k < k_end) { wv = f32(w[(c0 + row) * p.K + k]); }
      Ws[kk * TN + row] = wv;
    }
    workgroupBarrier();
    for (var kk = 0u; kk < TK; kk++) {
      var av: array<f32, 4>;
      var wv: array<f32, 4>;
      for (var i = 0u; i < 4u; i++) {
        av[i] = As[kk * TM + lid.y + TWY * i];
        wv[i] = Ws[kk * TN + lid.x + TWX * i];
      }
      for (var i = 0u; i < 4u; i++) {
        for (var j = 0u; j < 4u; j++) {
          acc[i][j] = fma(av[i], wv[j], acc[i][j]);
        }
      }
    }
    workgroupBarrier();
  }
  return acc;
}

@compute @workgroup_size(TWX, TWY)
fn matmul(@builtin(workgroup_id) wg: vec3u, @builtin(local_invocation_id) lid: vec3u,
          @builtin(local_invocation_index) li: u32) {
  let m0 = wg.y * TM;
  let c0 = wg.x * TN;
  let acc = tile_product(m0, c0, lid, li, 0u, p.K);
  for (var i = 0u; i < 4u; i++) {
    let m = m0 + lid.y + TWY * i;
    for (var j = 0u; j < 4u; j++) {
      let n = c0 + lid.x + TWX * j;
      if (m < p.M && n < p.N) { epilogue(m, n, acc[i][j]); }
    }
  }
}

// Split-K: when M and N give few tiles but K is long (the pixel-shuffle projector: 64×576 from
// K = 12288), z splits K into k_chunk pieces; each writes raw sums to part[z][m][col] (col = n0 + n,
// over the whole output width ldc), and splitk_reduce adds them and applies the epilogue.
@group(0) @binding(6) var<storage, read_write> part: array<f32>;

@compute @workgroup_size(TWX, TWY)
fn matmul_splitk(@builtin(workgroup_id) wg: vec3u, @builtin(local_invocation_id) lid: vec3u,
                 @builtin(local_invocation_index) li: u32) {
  let m0 = wg.y * TM;
  let c0 = wg.x * TN;
  let k_begin = wg.z * p.k_chunk;
  let acc = tile_product(m0, c0, lid, li, k_begin, min(k_begin + p.k_chunk, p.K));
  for (var i = 0u; i < 4u; i++) {
    let m = m0 + lid.y + TWY * i;
    for (var j = 0u; j < 4u; j++) {
      let n = c0 + lid.x + TWX * j;
      if (m < p.M && n < p.N) { part[(wg.z * p.M + m) * p.ldc + p.n0 + n] = acc[i][j]; }
    }
  }
}

@compute @workgroup_size(256)
fn splitk_reduce(@builtin(global_invocation_id) gid: vec3u) {
  // One invocation per output element over the full width (n0 = 0, N = ldc here).
  let idx = gid.x + gid.y * 65535u * 256u;
  if (idx >= p.M * p.ldc) { return; }
  let m = idx / p.ldc;
  let n = idx % p.ldc;
  var s = 0.0;
  for (var z = 0u; z < p.splits; z++) { s += part[(z * p.M + m) * p.ldc + n]; }
  epilogue(m, n, s);
}

const LANES: u32 = 32u;
const ROWS: u32 = 8u;
var<workgroup> lanes: array<array<f32, LANES>, ROWS>;

//#if subgroups
// With subgroups (and a subgroup size of at most 32, which the op checks), each subgroup sums its lanes
// with subgroupAdd and each row adds up its 32 / subgroup-size subgroup sums from shared memory: two
// barriers instead of six. This assumes subgroups are runs of consecutive local_invocation_index, as
// the Vulkan, Metal and D3D12 drivers lay them out (lavapipe: 8 lanes, NVIDIA: 32).
var<private> sg_lane: u32;
var<private> sg_size: u32;

/** The sum of v over the 32 lanes of this invocation's workgroup row, in every lane of the row. */
fn row_sum(lid: vec3u, v: f32) -> f32 {
  let s = subgroupAdd(v);
  if (sg_lane == 0u) { lanes[lid.y][lid.x / sg_size] = s; }
  workgroupBarrier();
  var t = 0.0;
  for (var i = 0u; i < LANES / sg_size; i++) { t += lanes[lid.y][i]; }
  workgroupBarrier();
  return t;
}
//#else
/** The sum of v over the 32 lanes of this invocation's workgroup row, in every lane of the row. */
fn row_sum(lid: vec3u, v: f32) -> f32 {
  lanes[lid.y][lid.x] = v;
  workgroupBarrier();
  for (var s = LANES / 2u; s > 0u; s >>= 1u) {
    if (lid.x < s) { lanes[lid.y][lid.x] += lanes[lid.y][lid.x + s]; }
    workgroupBarrier();
  }
  let t = lanes[lid.y][0];
  workgroupBarrier();
  return t;
}
//#endif

@compute @workgroup_size(32, 8)
fn gemv(@builtin(workgroup_id) wg: vec3u, @builtin(local_invocation_id) lid: vec3u,
//#if subgroups
        @builtin(subgroup_invocation_id) sgi: u32, @builtin(subgroup_size) sgs: u32,
//#endif
) {
//#if subgroups
  sg_lane = sgi;
  sg_size = sgs;
//#endif
  let n = wg.x * ROWS + lid.y;
  let m = wg.z;
  var acc = 0.0;
  var ss = 0.0;
  if (n < p.N) {
    let wrow = n * p.K;
    for (var k = lid.x; k < p.K; k += LANES) {
      let x = gemv_a(m, k);
      ss = fma(x, x, ss);
      acc = fma(x * norm_w(k), f32(w[wrow + k]), acc);
    }
  }
  let scale = row_scale(row_sum(lid, ss));
  let dot = row_sum(lid, acc);
  if (lid.x == 0u && n < p.N) { epilogue(m, n, dot * scale); }
}

// SwiGLU in one pass for decode: y = silu(a·Wgᵀ) · (a·Wuᵀ), reading the gate rows (w) and the up rows
// (w_up) of the same output column together, so the [M, I] gate and up activations and the separate
// elementwise product never exist (two dispatches fewer per layer).
@group(0) @binding(7) var<storage, read> w_up: array<WT>;

@compute @workgroup_size(32, 8)
fn gemv_glu(@builtin(workgroup_id) wg: vec3u, @builtin(local_invocation_id) lid: vec3u,
//#if subgroups
            @builtin(subgroup_invocation_id) sgi: u32, @builtin(subgroup_size) sgs: u32,
//#endif
) {
//#if subgroups
  sg_lane = sgi;
  sg_size = sgs;
//#endif
  let n = wg.x * ROWS + lid.y;
  let m = wg.z;
  var g = 0.0;
  var u = 0.0;
  var ss = 0.0;
  if (n < p.N) {
    let wrow = n * p.K;
    let arow = m * p.K;
    for (var k = lid.x; k < p.K; k += LANES) {
      let x0 = a[arow + k];
      ss = fma(x0, x0, ss);
      let x = x0 * norm_w(k);
      g = fma(x, f32(w[wrow + k]), g);
      u = fma(x, f32(w_up[wrow + k]), u);
    }
  }
  let scale = row_scale(row_sum(lid, ss));
  let gs = row_sum(lid, g) * scale;
  let us = row_sum(lid, u) * scale;
  if (lid.x == 0u && n < p.N) { y[m * p.ldc + p.n0 + n] = activate(gs, ACT_SILU) * us; }
}

// matmul_rows: the linear layer for SIMD-on-CPU drivers (lavapipe; see src/gpu/tuning.ts), where an
// invocation is one lane of a CPU vector register: a load at the same address in every lane is one
// scalar load and a broadcast, any other is a gather, and a barrier is a coroutine switch. So there is
// no shared memory here. A workgroup takes RM rows of A, which every lane reads alike (vec4, broadcast),
// and each invocation RC output columns RWG apart, whose weight rows it gathers as vec4; RM·RC vec4
// accumulators are summed across their four lanes at the end. With RM = M it is the decode gemv.
// A gathered A (pixel shuffle, im2col) is read in its runs of consecutive floats, addressed once per run.
// Needs K % 4 == 0, and for the gathered A modes E % 4 == 0 (pixel shuffle) or P % 4 == 0 and
// W % 4 == 0 (im2col), so that four consecutive k are four consecutive floats of a.
// Measured on llvmpipe (2 cores) at 1024×768·768×768ᵀ: 9.7 GFLOP/s against 2.8 for the tiled kernel.
override RM: u32 = 8u;
override RC: u32 = 4u;
override RWG: u32 = 64u;
const RM_MAX: u32 = 8u;
const RC_MAX: u32 = 4u;

@group(0) @binding(8) var<storage, read> a4: array<vec4f>;
@group(0) @binding(9) var<storage, read> w4: array<vec4<WT>>;
@group(0) @binding(10) var<storage, read> w4_up: array<vec4<WT>>;

@compute @workgroup_size(RWG)
fn matmul_rows(@builtin(workgroup_id) wg: vec3u, @builtin(local_invocation_id) lid: vec3u) {
  let m0 = wg.y * RM;
  let nb = wg.x * RWG * RC + lid.x;
  let K4 = p.K / 4u;
  var acc: array<array<vec4f, RC_MAX>, RM_MAX>;
  var wrow: array<u32, RC_MAX>;
  // Rows and columns past the end read the last one (in bounds) and are not written.
  for (var j = 0u; j < RC; j++) { wrow[j] = min(nb + j * RWG, p.N - 1u) * K4; }
  // K in runs of consecutive floats of a (one run for a plain A; E or P long for the gathered modes):
  // the gather's index arithmetic is done once per run and row.
  let run4 = a_run() / 4u;
  var ss: array<vec4f, RM_MAX>;
  for (var r0 = 0u; r0 < K4; r0 += run4) {
    var abase: array<u32, RM_MAX>;
    for (var i = 0u; i < RM; i++) { abase[i] = a_index(min(m0 + i, p.M - 1u), 4u * r0) / 4u; }
    for (var k4 = 0u; k4 < run4; k4++) {
      var av: array<vec4f, RM_MAX>;
      let nwv = norm_w4(r0 + k4);
      for (var i = 0u; i < RM; i++) {
        let x = a4[abase[i] + k4];
        ss[i] = fma(x, x, ss[i]);
        av[i] = x * nwv;
      }
      for (var j = 0u; j < RC; j++) {
        let wv = vec4f(w4[wrow[j] + r0 + k4]);
        for (var i = 0u; i < RM; i++) { acc[i][j] = fma(av[i], wv, acc[i][j]); }
      }
    }
  }
  for (var i = 0u; i < RM; i++) {
    for (var j = 0u; j < RC; j++) {
      let m = m0 + i;
      let n = nb + j * RWG;
      let one = vec4f(1.0);
      if (m < p.M && n < p.N) { epilogue(m, n, dot(acc[i][j], one) * row_scale(dot(ss[i], one))); }
    }
  }
}

// gemv_glu for SIMD-on-CPU drivers: matmul_rows over the gate (w4) and up (w4_up) weights at once,
// RM rows and RC columns of each, with silu(gate)·up as the epilogue.
@compute @workgroup_size(RWG)
fn gemv_glu_rows(@builtin(workgroup_id) wg: vec3u, @builtin(local_invocation_id) lid: vec3u) {
  let m0 = wg.y * RM;
  let nb = wg.x * RWG * RC + lid.x;
  let K4 = p.K / 4u;
  var g: array<array<vec4f, RC_MAX>, RM_MAX>;
  var u: array<array<vec4f, RC_MAX>, RM_MAX>;
  var wrow: array<u32, RC_MAX>;
  for (var j = 0u; j < RC; j++) { wrow[j] = min(nb + j * RWG, p.N - 1u) * K4; }
  var ss: array<vec4f, RM_MAX>;
  for (var k4 = 0u; k4 < K4; k4++) {
    var av: array<vec4f, RM_MAX>;
    let nwv = norm_w4(k4);
    for (var i = 0u; i < RM; i++) {
      let x = a4[min(m0 + i, p.M - 1u) * K4 + k4];
      ss[i] = fma(x, x, ss[i]);
      av[i] = x * nwv;
    }
    for (var j = 0u; j < RC; j++) {
      let gv = vec4f(w4[wrow[j] + k4]);
      let uv = vec4f(w4_up[wrow[j] + k4]);
      for (var i = 0u; i < RM; i++) {
        g[i][j] = fma(av[i], gv, g[i][j]);
        u[i][j] = fma(av[i], uv, u[i][j]);
      }
    }
  }
  for (var i = 0u; i < RM; i++) {
    for (var j = 0u; j < RC; j++) {
      let m = m0 + i;
      let n = nb + j * RWG;
      if (m < p.M && n < p.N) {
        let one = vec4f(1.0);
        let scale = row_scale(dot(ss[i], one));
        y[m * p.ldc + p.n0 + n] = activate(dot(g[i][j], one) * scale, ACT_SILU) * dot(u[i][j], one) * scale;
      }
    }
  }
}
