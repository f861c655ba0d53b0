// Elementwise kernels over flat f32 tensors: the residual add, the SwiGLU product silu(gate)·up, and
// slice_rows (the last rows before the LM head), which the models run; and unary, a standalone
// activation kept as a bench reference (bench/cases/elementwise.ts: the models apply activations in the matmul
// epilogue). One invocation per element of type ET: vec4f where the count (and for slice_rows the row)
// is a multiple of 4, else f32; counts and rows below are in ET units. The grid is 2-D so that tensors
// above 65535 workgroups of 256 still fit.
//#include activation
alias AT = ET;

struct Params {
  count: u32,      // elements to produce
  row: u32,        // slice_rows: elements per row
  src_row0: u32,   // slice_rows: first source row
  act: u32,        // unary: activation code
}

@group(0) @binding(0) var<uniform> p: Params;
@group(0) @binding(1) var<storage, read> a: array<ET>;
@group(0) @binding(2) var<storage, read> b: array<ET>;
@group(0) @binding(3) var<storage, read_write> out: array<ET>;

override WG: u32 = 256u;

fn index(gid: vec3u, nwg: vec3u) -> u32 {
  return gid.x + gid.y * nwg.x * WG;
}

@compute @workgroup_size(WG)
fn add(@builtin(global_invocation_id) gid: vec3u, @builtin(num_workgroups) nwg: vec3u) {
  let i = index(gid, nwg);
  if (i < p.count) { out[i] = a[i] + b[i]; }
}

@compute @workgroup_size(WG)
fn silu_mul(@builtin(global_invocation_id) gid: vec3u, @builtin(num_workgroups) nwg: vec3u) {
  let i = index(gid, nwg);
  if (i < p.count) { out[i] = activate(a[i], ACT_SILU) * b[i]; }
}

@compute @workgroup_size(WG)
fn unary(@builtin(global_invocation_id) gid: vec3u, @builtin(num_workgroups) nwg: vec3u) {
  let i = index(gid, nwg);
  if (i < p.count) { out[i] = activate(a[i], p.act); }
}

@compute @workgroup_size(WG)
fn slice_rows(@builtin(global_invocation_id) gid: vec3u, @builtin(num_workgroups) nwg: vec3u) {
  let i = index(gid, nwg);
  if (i < p.count) { out[i] = a[p.src_row0 * p.row + i]; }
}
