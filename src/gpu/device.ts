// The GPU context: one Dawn instance, one adapter, one device, with the features and limits this
// runtime needs, WGSL errors surfaced through error scopes, device loss tracked, and destroy().
// Reference: the WebGPU spec (requestAdapter/requestDevice, pushErrorScope) and the `webgpu` npm package.
import './webgpu.ts';
import { create } from 'webgpu';
import { BufferPool } from './buffers.ts';
import { PipelineCache } from './pipelines.ts';
import { tuningFor, type Tuning } from './tuning.ts';
import { quietDawn } from './quiet.ts';

export type Feature = 'shader-f16' | 'subgroups' | 'timestamp-query';
const WANTED_FEATURES: Feature[] = ['shader-f16', 'subgroups', 'timestamp-query'];

/** Limits requested at the adapter's maximum: the defaults (128 MiB buffers, 8 storage bindings) are too small. */
const WANTED_LIMITS = [
  'maxBufferSize',
  'maxStorageBufferBindingSize',
  'maxStorageBuffersPerShaderStage',
  'maxComputeWorkgroupStorageSize',
  'maxComputeInvocationsPerWorkgroup',
  'maxComputeWorkgroupSizeX',
  'maxComputeWorkgroupSizeY',
  'maxComputeWorkgroupSizeZ',
  'maxComputeWorkgroupsPerDimension',
  'maxUniformBufferBindingSize',
  'maxBindGroups',
] as const;

export interface GpuOptions {
  /** Extra Dawn toggles, e.g. `backend=null` for host-overhead measurements. */
  dawnFlags?: string[];
  /** Cap maxStorageBufferBindingSize below the adapter's (tests force tensor splitting with this). */
  maxStorageBufferBindingSize?: number;
  /** Refuse to enable shader-f16 even where offered (f16 weights are then widened to f32 on upload). */
  disableF16?: boolean;
  /**
   * Dawn's skip_validation toggle: encoding skips WebGPU's validation (about a quarter of the host time
   * of a decode step, bench/host.bench.ts). For graphs that already ran validated; errors then go unseen.
   */
  skipValidation?: boolean;
  /**
   * Read 16-bit weights as native f16 (shader-f16) rather than as u32 pairs, where the adapter has the
   * feature; on NVIDIA, Dawn offers shader-f16 only with its vulkan_enable_f16_on_nvidia toggle, which this
   * also sets. An opt-in: see the README's formats table for what it measured.
   */
  nativeF16?: boolean;
  /** Leave subgroup operations unused even where offered (also WEBGPU_VLM_NO_SUBGROUPS=1). */
  noSubgroups?: boolean;
  /**
   * Which adapter of listAdapters(): its index, or a case-insensitive substring of its name, vendor or
   * architecture that matches one of them. Default: the one Dawn offers for `powerPreference`.
   */
  adapter?: number | string;
  /** The adapter Dawn prefers for this (default 'high-performance'); not together with `adapter`. */
  powerPreference?: GPUPowerPreference;
  /**
   * Drop the two warnings Dawn prints on lavapipe while it discovers adapters (written by its C++ code to
   * stderr; see quiet.ts): every other line still shows. For command-line programs; Linux only.
   */
  quiet?: boolean;
}

/** An adapter Dawn offers, with the requests that returned it. */
export interface AdapterEntry {
  adapter: GPUAdapter;
  /** 'high-performance', 'low-power', 'default' (no preference) and/or 'fallback'. */
  requestedAs: string[];
}

const ADAPTER_REQUESTS: [string, GPURequestAdapterOptions][] = [
  ['high-performance', { powerPreference: 'high-performance' }],
  ['low-power', { powerPreference: 'low-power' }],
  ['default', {}],
  ['fallback', { forceFallbackAdapter: true }],
];

/**
 * Every adapter Dawn offers through requestAdapter(): one request per power preference, none, and the
 * fallback adapter, deduplicated by vendor, architecture, device and description. The first is the
 * high-performance one (Gpu.create()'s default); WebGPU has no call that enumerates adapters.
 */
export async function listAdapters(instance: GPU, quiet = false): Promise<AdapterEntry[]> {
  // All issued synchronously (inside quietDawn): Dawn discovers the adapters during the first call.
  const request = () => ADAPTER_REQUESTS.map(([, options]) => instance.requestAdapter(options));
  const found = await Promise.all(quiet ? quietDawn(request) : request());
  const byKey = new Map<string, AdapterEntry>();
  found.forEach((adapter, i) => {
    if (!adapter) return;
    const { vendor, architecture, device, description } = adapter.info;
    const key = JSON.stringify([vendor, architecture, device, description]);
    const entry = byKey.get(key);
    if (entry) entry.requestedAs.push(ADAPTER_REQUESTS[i][0]);
    else byKey.set(key, { adapter, requestedAs: [ADAPTER_REQUESTS[i][0]] });
  });
  return [...byKey.values()];
}

export function adapterName(info: GPUAdapterInfo): string {
  return info.description || info.device || '(unnamed)';
}

/** The adapter `which` names among `list` (an index, or a substring matching exactly one), else a GpuError listing them. */
export function chooseAdapter(list: AdapterEntry[], which: number | string): AdapterEntry {
  const listing = () => list.map((e, i) => `\n  ${i}: ${adapterName(e.adapter.info)} (${e.adapter.info.vendor || '?'}, ${e.adapter.info.architecture || '?'})`).join('') || ' none';
  if (typeof which === 'number') {
    const entry = list[which];
    if (!Number.isInteger(which) || !entry) throw new GpuError(`WebGPU: there is no adapter ${which}; Dawn offers${listing()}`);
    return entry;
  }
  const needle = which.toLowerCase();
  const hits = list.filter(({ adapter: { info } }) => [adapterName(info), info.vendor, info.architecture].some((t) => t.toLowerCase().includes(needle)));
  if (hits.length === 1) return hits[0];
  const what = hits.length ? `matches ${hits.length} adapters (give an index)` : 'matches no adapter';
  throw new GpuError(`WebGPU: "${which}" ${what}; Dawn offers${listing()}`);
}

export class GpuError extends Error {
  constructor(message: string) {
    super(message);
    this.name = 'GpuError';
  }
}

const NO_ADAPTER_HELP = `WebGPU: Dawn found no adapter.
  On a machine without a GPU, install Mesa's lavapipe (a CPU Vulkan driver). On Debian 12, as root:
    printf 'Types: deb\\nURIs: http://deb.debian.org/debian\\nSuites: bookworm-backports\\nComponents: main\\nSigned-By: /usr/share/keyrings/debian-archive-keyring.gpg\\n' > /etc/apt/sources.list.d/bookworm-backports.sources
    apt-get update && apt-get install -t bookworm-backports mesa-vulkan-drivers libvulkan1
  (Debian 12's own Mesa 22.3 is too old for Dawn.) Or simply run: npm run setup
  On a machine with a GPU, install its Vulkan driver (Linux), or use macOS (Metal) / Windows (D3D12).`;

function dawnInstance(options: GpuOptions): GPU {
  // Dawn takes its enabled features as one comma-joined flag.
  const features = [...(options.skipValidation ? ['skip_validation'] : []), ...(options.nativeF16 ? ['vulkan_enable_f16_on_nvidia'] : [])];
  return create([...(options.dawnFlags ?? []), ...(features.length ? [`enable-dawn-features=${features.join(',')}`] : [])]);
}

/** The adapter `options` ask for: by `adapter` among listAdapters(), else the one Dawn prefers for `powerPreference`. */
async function requestAdapter(instance: GPU, options: GpuOptions): Promise<AdapterEntry | null> {
  if (options.adapter !== undefined) {
    if (options.powerPreference !== undefined) throw new GpuError('WebGPU: give `adapter` or `powerPreference`, not both');
    const list = await listAdapters(instance, options.quiet);
    return list.length ? chooseAdapter(list, options.adapter) : null;
  }
  const preference = options.powerPreference ?? 'high-performance';
  const request = () => instance.requestAdapter({ powerPreference: preference });
  const adapter = await (options.quiet ? quietDawn(request) : request());
  return adapter && { adapter, requestedAs: [preference] };
}

/**
 * What `webgpu-vlm info` shows: every adapter (listAdapters), or with `adapter` or `powerPreference` the one
 * Gpu.create() would open. The instance is returned with them: Dawn crashes if it is collected while they are used.
 */
export async function findAdapters(options: GpuOptions = {}): Promise<{ instance: GPU; adapters: AdapterEntry[] }> {
  const instance = dawnInstance(options);
  const adapters =
    options.adapter === undefined && options.powerPreference === undefined
      ? await listAdapters(instance, options.quiet)
      : [await requestAdapter(instance, options)].filter((e) => e !== null);
  if (!adapters.length) throw new GpuError(NO_ADAPTER_HELP);
  return { instance, adapters };
}

export class Gpu {
  /** Dawn's GPU object. Kept referenced for the lifetime of the device: if it is collected, Dawn crashes. */
  readonly instance: GPU;
  readonly adapter: GPUAdapter;
  readonly device: GPUDevice;
  readonly features: ReadonlySet<string>;
  readonly limits: GPUSupportedLimits;
  readonly info: GPUAdapterInfo;
  readonly pool: BufferPool;
  readonly pipelines: PipelineCache;
  /** Which kernel variants suit this adapter (a GPU, or a SIMD-on-CPU driver such as lavapipe). */
  readonly tuning: Tuning;
  /**
   * Whether row reductions use subgroupAdd: the adapter offers subgroups of at most 32 lanes (a power of
   * two, so that a 32-lane row is whole subgroups). Set by create().
   */
  subgroupReduce = false;
  /** Set when the device is lost (or destroyed); every later submission fails with this reason. */
  lostReason: string | null = null;
  private destroyed = false;

  private constructor(instance: GPU, adapter: GPUAdapter, device: GPUDevice) {
    this.instance = instance;
    this.adapter = adapter;
    this.device = device;
    this.features = device.features as unknown as ReadonlySet<string>;
    this.limits = device.limits;
    this.info = adapter.info;
    this.bindingCap = device.limits.maxStorageBufferBindingSize;
    this.pool = new BufferPool(this);
    this.pipelines = new PipelineCache(this);
    this.tuning = tuningFor(adapter.info);
    device.lost.then((info) => {
      this.lostReason = this.destroyed ? 'the device was destroyed' : `the GPU device was lost (${info.reason}): ${info.message}`;
    });
    device.addEventListener('uncapturederror', (ev) => {
      const e = (ev as GPUUncapturedErrorEvent).error;
      console.error(`webgpu-vlm: uncaptured WebGPU error: ${e.message}`);
    });
  }

  static async create(options: GpuOptions = {}): Promise<Gpu> {
    const instance = dawnInstance(options);
    const adapter = (await requestAdapter(instance, options))?.adapter;
    if (!adapter) throw new GpuError(NO_ADAPTER_HELP);
    const requiredFeatures = WANTED_FEATURES.filter(
      (f) => adapter.features.has(f) && !(f === 'shader-f16' && options.disableF16),
    );
    const requiredLimits: Record<string, number> = {};
    for (const name of WANTED_LIMITS) {
      const v = (adapter.limits as unknown as Record<string, number>)[name];
      if (typeof v === 'number') requiredLimits[name] = v;
    }
    const device = await adapter.requestDevice({ requiredFeatures, requiredLimits });
    const gpu = new Gpu(instance, adapter, device);
    const sgMax = adapter.info.subgroupMaxSize ?? 0;
    gpu.subgroupReduce =
      gpu.has('subgroups') && sgMax >= 1 && sgMax <= 32 && (sgMax & (sgMax - 1)) === 0 && !options.noSubgroups && process.env.WEBGPU_VLM_NO_SUBGROUPS !== '1';
    // A device cannot be given a limit below the WebGPU default, so a smaller cap (for tests of
    // tensor splitting) is applied by this runtime rather than by Dawn.
    if (options.maxStorageBufferBindingSize !== undefined) {
      gpu.bindingCap = Math.min(gpu.bindingCap, options.maxStorageBufferBindingSize);
    }
    return gpu;
  }

  private dummyBuffer?: GPUBuffer;
  /** A small zeroed buffer bound where a kernel's optional input (bias, residual) is absent. */
  get dummy(): GPUBuffer {
    this.dummyBuffer ??= this.pool.create(16, undefined, 'dummy');
    return this.dummyBuffer;
  }

  has(feature: Feature): boolean {
    return this.features.has(feature);
  }

  /** Largest byte range one storage binding may cover; tensors above it are split into chunks. */
  get maxBinding(): number {
    return this.bindingCap;
  }
  private bindingCap: number;

  describe(): string {
    return describeAdapter(this.info, this.features, this.limits, this.tuning);
  }

  /** Throws the device-loss reason, if any. Call before submitting work. */
  checkAlive(): void {
    if (this.lostReason) throw new GpuError(`WebGPU: ${this.lostReason}; load the model again on a new device`);
  }

  /**
   * Runs `fn` inside validation, out-of-memory and internal error scopes and throws the first error
   * with `what` in the message, so that WGSL compile errors and bad bindings surface where they arise.
   */
  async scoped<T>(what: string, fn: () => T): Promise<T> {
    const d = this.device;
    d.pushErrorScope('internal');
    d.pushErrorScope('out-of-memory');
    d.pushErrorScope('validation');
    const result = fn();
    const errors = await Promise.all([d.popErrorScope(), d.popErrorScope(), d.popErrorScope()]);
    const e = errors.find((x) => x !== null);
    if (e) throw new GpuError(`${what}: ${e.message}`);
    return result;
  }

  /** Frees every buffer and the device. Until this is called Dawn keeps a core busy. */
  destroy(): void {
    if (this.destroyed) return;
    this.destroyed = true;
    this.pool.destroyAll();
    this.pipelines.clear();
    this.device.destroy();
  }
}

/**
 * Four lines: the adapter's name, vendor and architecture; the features this runtime uses (and with `others`,
 * the rest); the limits that size its work; the kernel set (tuning.ts).
 */
export function describeAdapter(info: GPUAdapterInfo, features: ReadonlySet<string>, limits: GPUSupportedLimits, tuning: Tuning, others = false): string {
  const used = [...features].filter((f) => (WANTED_FEATURES as string[]).includes(f)).sort();
  const rest = others ? [...features].filter((f) => !(WANTED_FEATURES as string[]).includes(f)).sort() : [];
  return [
    `adapter: ${adapterName(info)} — vendor ${info.vendor || '?'}, architecture ${info.architecture || '?'}`,
    `features: ${used.join(', ') || '(none of shader-f16, subgroups, timestamp-query)'}${rest.length ? `; also ${rest.join(', ')}` : ''}`,
    `limits: maxBufferSize ${fmtBytes(limits.maxBufferSize)}, maxStorageBufferBindingSize ${fmtBytes(limits.maxStorageBufferBindingSize)}, ` +
      `storage buffers/stage ${limits.maxStorageBuffersPerShaderStage}, workgroup storage ${limits.maxComputeWorkgroupStorageSize} B, ` +
      `invocations/workgroup ${limits.maxComputeInvocationsPerWorkgroup}`,
    `kernels: ${tuning.target === 'cpu' ? 'for a SIMD-on-CPU driver (uniform loads, no shared memory)' : 'for a GPU (shared-memory tiles)'}` +
      ` (WEBGPU_VLM_TARGET=gpu|cpu overrides)`,
  ].join('\n');
}

export function fmtBytes(n: number): string {
  if (n >= 2 ** 30) return `${(n / 2 ** 30).toFixed(2)} GiB`;
  if (n >= 2 ** 20) return `${(n / 2 ** 20).toFixed(1)} MiB`;
  if (n >= 2 ** 10) return `${(n / 2 ** 10).toFixed(1)} KiB`;
  return `${n} B`;
}
