// Matrix-vector product for decode (M small, typically 1): y[m, n] = act(a[m, :] · W[n, :] + bias) + res.
// W is [N, K] in WT and the bias in BT (f32 or f16 each), f32 accumulation. A workgroup of 32×8 invocations computes 8 outputs:
// 32 lanes stride over K (consecutive lanes read consecutive weights) and reduce in shared memory.
// Versions:
//   v1 (this): shared-memory tree reduction; one m per workgroup row of the grid (z = m).
// Same epilogue and chunking (n0) as matmul.wgsl.
//#include activation

struct Params {
  M: u32, N: u32, K: u32, n0: u32,
  ldc: u32, act: u32, has_bias: u32, has_res: u32,
}

@group(0) @binding(0) var<uniform> p: Params;
@group(0) @binding(1) var<storage, read> a: array<f32>;
@group(0) @binding(2) var<storage, read> w: array<WT>;
@group(0) @binding(3) var<storage, read> bias: array<BT>;
@group(0) @binding(4) var<storage, read> res: array<f32>;
@group(0) @binding(5) var<storage, read_write> y: array<f32>;

const LANES: u32 = 32u;
const ROWS: u32 = 8u;
var<workgroup> part: array<array<f32, LANES>, ROWS>;

@compute @workgroup_size(32, 8)
fn gemv(@builtin(workgroup_id) wg: vec3u, @builtin(local_invocation_id) lid: vec3u) {
  let n = wg.x * ROWS + lid.y;
  let m = wg.z;
  var acc = 0.0;
  if (n < p.N) {
    let wrow = n * p.K;
    let arow = m * p.K;
    for (var k = lid.x; k < p.K; k += LANES) {
      acc = fma(a[arow + k], f32(w[wrow + k]), acc);
    }
  }
  part[lid.y][lid.x] = acc;
  workgroupBarrier();
  for (var s = LANES / 2u; s > 0u; s >>= 1u) {
    if (lid.x < s) { part[lid.y][lid.x] += part[lid.y][lid.x + s]; }
    workgroupBarrier();
  }
  if (lid.x == 0u && n < p.N) {
    let col = p.n0 + n;
    var v = part[lid.y][0];
    if (p.has_bias != 0u) { v += f32(bias[col]); }
    v = activate(v, p.act);
    if (p.has_res != 0u) { v += res[m * p.ldc + col]; }
    y[m * p.ldc + col] = v;
  }
}
