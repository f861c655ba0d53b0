// Per-device kernel choices. Two kinds of adapter want different kernels:
//   'gpu': a real GPU. Invocations of a workgroup run in lockstep warps with fast shared memory, so
//          the tiled matmul (shared-memory tiles, coalesced loads) and workgroup reductions win.
//   'cpu': a SIMD-on-CPU driver (Mesa's lavapipe/llvmpipe, SwiftShader). An invocation is one lane of
//          an AVX register and a workgroup one CPU thread: a load whose address is the same in every
//          lane is one scalar load and a broadcast, any other load is a per-lane gather, and a barrier
//          switches coroutines. Kernels without shared memory that read operands uniformly win there
//          (see shaders/matmul-rows.wgsl).
// The choice is made from the adapter and can be forced with WEBGPU_VLM_TARGET=gpu|cpu (to compare
// both on one device, as the benches do); WEBGPU_VLM_ROWS_TILES and WEBGPU_VLM_MATMUL_TILES try other
// tile sizes (override constants) on a device.

export type Target = 'gpu' | 'cpu';

/** Tile sizes of matmul_rows, passed as WGSL override constants (they key the pipeline cache). */
export interface RowsTiles {
  /** Rows of A per workgroup, read alike by every invocation (≤ 8). */
  RM: number;
  /** Output columns per invocation (≤ 4). */
  RC: number;
  /** Invocations per workgroup. */
  RWG: number;
}

/** The tiled matmul's workgroup (override constants): TWX × TWY invocations, a 4·TWY × 4·TWX tile. */
export interface MatmulTiles {
  TWX: number;
  TWY: number;
}

export interface Tuning {
  readonly target: Target;
  /** matmul_rows tiles for prefill-sized M; decode uses RM = M. */
  readonly rows: RowsTiles;
  /** The tiled (and split-K) matmul's workgroup. */
  readonly tiled: MatmulTiles;
}

/** Measured on llvmpipe (Mesa 25.0.7, 2 cores, AVX2) at 512×768·768×768ᵀ: 8×4 per 16-lane group. */
// The GPU set's 16 × 16 tiled workgroup (64×64 tiles) is what was measured on the H100 (13.8 TFLOP/s f32).
const CPU: Tuning = { target: 'cpu', rows: { RM: 8, RC: 4, RWG: 16 }, tiled: { TWX: 16, TWY: 16 } };
const GPU: Tuning = { target: 'gpu', rows: { RM: 4, RC: 4, RWG: 64 }, tiled: { TWX: 16, TWY: 16 } };

function isSoftwareAdapter(info: GPUAdapterInfo): boolean {
  const text = `${info.vendor} ${info.architecture} ${info.device} ${info.description}`;
  return /llvmpipe|lavapipe|swiftshader/i.test(text) || info.architecture === 'software';
}

export function tuningFor(
  info: GPUAdapterInfo,
  env: string | undefined = process.env.WEBGPU_VLM_TARGET,
  tiles: string | undefined = process.env.WEBGPU_VLM_ROWS_TILES,
  tiled: string | undefined = process.env.WEBGPU_VLM_MATMUL_TILES,
): Tuning {
  let t: Tuning;
  if (env !== undefined && env !== '') {
    if (env === 'cpu') t = CPU;
    else if (env === 'gpu') t = GPU;
    else throw new Error(`WEBGPU_VLM_TARGET must be "gpu" or "cpu", not ${JSON.stringify(env)}`);
  } else {
    t = isSoftwareAdapter(info) ? CPU : GPU;
  }
  if (tiles) t = { ...t, rows: parseRowsTiles(tiles) };
  if (tiled) t = { ...t, tiled: parseMatmulTiles(tiled) };
  return t;
}

/** WEBGPU_VLM_MATMUL_TILES=TWX,TWY: the tiled matmul's workgroup, for trying other tiles on a device. */
export function parseMatmulTiles(text: string): MatmulTiles {
  const v = text.split(',').map(Number);
  // Shared memory: 16·(4·TWX + 4·TWY) floats ≤ 32 KiB; at most 256 invocations (WebGPU's default limit).
  const ok = v.length === 2 && v.every((x) => Number.isInteger(x) && x > 0 && x <= 64) && v[0] * v[1] <= 256 && v[0] + v[1] <= 128;
  if (!ok) throw new Error(`WEBGPU_VLM_MATMUL_TILES must be TWX,TWY with each ≤ 64 and TWX·TWY ≤ 256 (e.g. 16,16), not ${JSON.stringify(text)}`);
  return { TWX: v[0], TWY: v[1] };
}

/** WEBGPU_VLM_ROWS_TILES=RM,RC,RWG: matmul_rows tiles for trying other sizes on a device. */
export function parseRowsTiles(text: string): RowsTiles {
  const v = text.split(',').map(Number);
  const ok = v.length === 3 && v.every((x) => Number.isInteger(x) && x > 0) && v[0] <= 8 && v[1] <= 4 && v[2] <= 256;
  if (!ok) throw new Error(`WEBGPU_VLM_ROWS_TILES must be RM,RC,RWG with RM <= 8, RC <= 4 and RWG <= 256 (e.g. 8,4,16), not ${JSON.stringify(text)}`);
  return { RM: v[0], RC: v[1], RWG: v[2] };
}

/** Both, for tests that run each kernel set on whatever adapter they have. */
export const TUNINGS: Readonly<Record<Target, Tuning>> = { cpu: CPU, gpu: GPU };

/** The tuning a graph built without a device gets (tests of the GPU kernels, the null backend). */
export const DEFAULT_TUNING = GPU;
