// How the tiled and rows linear kernels read their A operand (the `a` field of their Params):
//   mode 0: A is a row-major [M, K] f32 matrix.
//   mode 1: Idefics3 pixel shuffle of square [gw·gw, E] grids (one per image tile) by s, fused
//           (projector): row r of a tile is the s×s block (r / (gw/s), r % (gw/s)),
//           feature k = (i·s + j)·E + c.
//   mode 2: im2col of NCHW pixels [tiles, C, H, W] for a stride-P convolution (patch embedding):
//           row r of a tile is patch (r / gw, r % gw), feature k = (c·P + ky)·P + kx, as the conv
//           weight [D, C, P, P] flattens.
struct AOperand { mode: u32, s: u32, E: u32, gw: u32, C: u32, H: u32, W: u32, P: u32 }

/** Index into a of A[r, k]. */
fn a_index(r: u32, k: u32) -> u32 {
  switch p.a.mode {
    case 1u: {
      let bw = p.a.gw / p.a.s;
      let tile = r / (bw * bw);
      let rr = r % (bw * bw);
      let h = (rr / bw) * p.a.s + k / (p.a.E * p.a.s);
      let x = (rr % bw) * p.a.s + (k / p.a.E) % p.a.s;
      return ((tile * p.a.gw + h) * p.a.gw + x) * p.a.E + k % p.a.E;
    }
    case 2u: {
      let per = (p.a.H / p.a.P) * p.a.gw;
      let tile = r / per;
      let rr = r % per;
      let pp = p.a.P * p.a.P;
      let c = k / pp;
      let yy = (rr / p.a.gw) * p.a.P + (k % pp) / p.a.P;
      let xx = (rr % p.a.gw) * p.a.P + k % p.a.P;
      return ((tile * p.a.C + c) * p.a.H + yy) * p.a.W + xx;
    }
    default: { return r * p.l.K + k; }
  }
}

/** How many consecutive k from a multiple of it are consecutive floats of a: E, P, or all of K. */
fn a_run() -> u32 {
  switch p.a.mode {
    case 1u: { return p.a.E; }
    case 2u: { return p.a.P; }
    default: { return p.l.K; }
  }
}
