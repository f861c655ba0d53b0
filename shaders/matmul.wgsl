// Tiled linear layer for prefill and encoders on GPUs (see linear.wgsl for the operation): a TM×TN output
// tile per workgroup of TWX×TWY invocations (64×64 and 16×16 by default), 4×4 outputs per invocation
// (strided by the workgroup size to keep shared-memory reads conflict-free), K in steps of TK. The weight
// tile is dequantized on its way into shared memory (w_at). A is read as a-operand.wgsl describes.
//   matmul:                       the whole K per workgroup;
//   matmul_splitk + splitk_reduce: K split over the grid's z, for few tiles and long K (the pixel-shuffle
//                                  projector: 64×576 from K = 12288): each split writes raw sums to
//                                  part[z][m][col] and splitk_reduce adds them and applies the epilogue.
//#include linear
//#include a-operand

struct SplitK { k_chunk: u32, splits: u32, _p0: u32, _p1: u32 }
struct Params { l: LinearParams, a: AOperand, split: SplitK }
@group(0) @binding(0) var<uniform> p: Params;
//#weights w 2
@group(0) @binding(6) var<storage, read_write> part: array<f32>;

// TWX and TWY are override constants chosen per device (src/gpu/tuning.ts).
override TWX: u32 = 16u;
override TWY: u32 = 16u;
override TM: u32 = 4u * TWY;
override TN: u32 = 4u * TWX;
const TK: u32 = 16u;

// [TK][TM] and [TK][TN], flattened (only the outer size of a workgroup array may be an override).
var<workgroup> As: array<f32, TK * TM>;
var<workgroup> Ws: array<f32, TK * TN>;

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
      if (m0 + row < p.l.M && k < k_end) { av = a[a_index(m0 + row, k)]; }
      As[kk * TM + row] = av;
    }
    for (var idx = li; idx < TK * TN; idx += threads) {
      let row = idx / TK;
      let kk = idx % TK;
      let k = k0 + kk;
      var wv = 0.0;
      if (c0 + row < p.l.N && k < k_end) { wv = w_at(c0 + row, k, p.l.K, p.l.N); }
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
  let acc = tile_product(m0, c0, lid, li, 0u, p.l.K);
  for (var i = 0u; i < 4u; i++) {
    let m = m0 + lid.y + TWY * i;
    for (var j = 0u; j < 4u; j++) {
      let n = c0 + lid.x + TWX * j;
      if (m < p.l.M && n < p.l.N) { epilogue(m, n, acc[i][j]); }
    }
  }
}

@compute @workgroup_size(TWX, TWY)
fn matmul_splitk(@builtin(workgroup_id) wg: vec3u, @builtin(local_invocation_id) lid: vec3u,
                 @builtin(local_invocation_index) li: u32) {
  let m0 = wg.y * TM;
  let c0 = wg.x * TN;
  let k_begin = wg.z * p.split.k_chunk;
  let acc = tile_product(m0, c0, lid, li, k_begin, min(k_begin + p.split.k_chunk, p.l.K));
  for (var i = 0u; i < 4u; i++) {
    let m = m0 + lid.y + TWY * i;
    for (var j = 0u; j < 4u; j++) {
      let n = c0 + lid.x + TWX * j;
      if (m < p.l.M && n < p.l.N) { part[(wg.z * p.l.M + m) * p.l.ldc + p.l.n0 + n] = acc[i][j]; }
    }
  }
}

@compute @workgroup_size(256)
fn splitk_reduce(@builtin(global_invocation_id) gid: vec3u) {
  // One invocation per output element over the full width (n0 = 0, N = ldc here).
  let idx = gid.x + gid.y * 65535u * 256u;
  if (idx >= p.l.M * p.l.ldc) { return; }
  let m = idx / p.l.ldc;
  let n = idx % p.l.ldc;
  var s = 0.0;
  for (var z = 0u; z < p.split.splits; z++) { s += part[(z * p.l.M + m) * p.l.ldc + n]; }
  epilogue(m, n, s);
}
