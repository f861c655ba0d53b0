// Weight format f16x2: IEEE half floats as the checkpoint stores them, two per u32, unpacked with core
// WGSL's unpack2x16float: no shader-f16 needed, exact. The layout and functions: weights/pairs.wgsl.
fn half_pair(w: u32) -> vec2f { return unpack2x16float(w); }
//#include weights/pairs
