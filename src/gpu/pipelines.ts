// Shader and pipeline cache. Shaders live in shaders/<family>.wgsl; a variant is chosen by type
// aliases prepended to the source (e.g. `alias WT = f16;` for f16 weights) and by override
// constants (tile sizes). Pipelines are keyed by shader, entry point, aliases and constants.
import { readFileSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import { join } from 'node:path';
import type { Gpu } from './device.ts';
import { GpuError } from './device.ts';

export const SHADER_DIR = fileURLToPath(new URL('../../shaders/', import.meta.url));

export interface PipelineKey {
  shader: string;
  entry: string;
  /** Type aliases, e.g. { WT: 'f16' }: emitted as `alias WT = f16;` ahead of the shader source. */
  aliases?: Record<string, string>;
  /** WGSL `override` constants: tuning values such as workgroup and tile sizes. */
  constants?: Record<string, number>;
  /** Extra `enable` directives, e.g. ['subgroups']. */
  enables?: string[];
  /**
   * The storage format of the weights the kernel reads (shaders/weights/<format>.wgsl: f32, f16, f16x2,
   * bf16x2, q), instantiated for each `//#weights NAME BINDING` line of the shader.
   */
  weight?: string;
}

export function keyString(k: PipelineKey): string {
  const obj = (o?: Record<string, unknown>) =>
    o ? Object.keys(o).sort().map((n) => `${n}=${o[n]}`).join(',') : '';
  return `${k.shader}:${k.entry}|${obj(k.aliases)}|${obj(k.constants)}|${(k.enables ?? []).join(',')}|${k.weight ?? ''}`;
}

/**
 * Keeps the `//#if NAME` … (`//#else` …) `//#endif` blocks of a shader whose NAME is among the module's
 * enables (e.g. code using subgroup builtins, which only compiles with `enable subgroups;`). Lines are
 * blanked rather than removed, so compiler messages keep the file's line numbers.
 */
export function selectBlocks(src: string, enables: ReadonlySet<string>, shader: string): string {
  const stack: { keep: boolean; line: number }[] = [];
  const lines = src.split('\n');
  const out = lines.map((line, i) => {
    const m = /^\s*\/\/#(if (\w+)|else|endif)\s*$/.exec(line);
    if (m) {
      if (m[2]) stack.push({ keep: enables.has(m[2]), line: i + 1 });
      else if (!stack.length) throw new GpuError(`shaders/${shader}.wgsl:${i + 1}: //#${m[1]} without //#if`);
      else if (m[1] === 'else') stack[stack.length - 1].keep = !stack[stack.length - 1].keep;
      else stack.pop();
      return '';
    }
    return stack.every((b) => b.keep) ? line : '';
  });
  if (stack.length) throw new GpuError(`shaders/${shader}.wgsl:${stack[stack.length - 1].line}: //#if without //#endif`);
  return out.join('\n');
}

export class PipelineCache {
  private readonly gpu: Gpu;
  private readonly sources = new Map<string, string>();
  private readonly modules = new Map<string, GPUShaderModule>();
  private readonly pipelines = new Map<string, Promise<GPUComputePipeline>>();

  constructor(gpu: Gpu) {
    this.gpu = gpu;
  }

  get size(): number {
    return this.pipelines.size;
  }

  source(shader: string): string {
    let s = this.sources.get(shader);
    if (s === undefined) {
      const path = join(SHADER_DIR, `${shader}.wgsl`);
      try {
        s = readFileSync(path, 'utf8');
      } catch (e) {
        throw new GpuError(`shader ${shader}: cannot read ${path}: ${(e as Error).message}`);
      }
      this.sources.set(shader, s);
    }
    return s;
  }

  /** The WGSL text compiled for a key: enables, aliases, then the shader file. */
  code(k: PipelineKey): string {
    const aliases = k.aliases ?? {};
    const enables = new Set(k.enables ?? []);
    if (Object.values(aliases).includes('f16') || k.weight === 'f16') enables.add('f16');
    const head = [...enables].sort().map((e) => `enable ${e};`);
    for (const [name, type] of Object.entries(aliases)) head.push(`alias ${name} = ${type};`);
    // `//#include NAME` pulls in shaders/NAME.wgsl (shared functions, e.g. activations).
    const included = this.included(k.shader, new Set());
    const body = this.weights(included, k);
    return `${head.join('\n')}\n${selectBlocks(body, enables, k.shader)}`;
  }

  /**
   * The shader's text with each `//#include NAME` line replaced by shaders/NAME.wgsl, itself expanded the
   * same way; a file already included is not included again.
   */
  private included(shader: string, seen: Set<string>): string {
    seen.add(shader);
    return this.source(shader).replace(/^\/\/#include ([\w/-]+)\s*$/gm, (_, name: string) => (seen.has(name) ? '' : this.included(name, seen)));
  }

  /**
   * Replaces each `//#weights NAME BINDING` line with the weight format's functions for a buffer NAME at
   * BINDING: the format file's part after `//#per-binding` with $W and $B substituted; its part before
   * (shared declarations) goes in once, at the first such line.
   */
  private weights(src: string, k: PipelineKey): string {
    let shared = false;
    return src.replace(/^\/\/#weights (\w+) (\d+)\s*$/gm, (_, name: string, binding: string) => {
      if (!k.weight) throw new GpuError(`shaders/${k.shader}.wgsl reads weights (${name}) but the pipeline names no weight format`);
      const text = this.included(`weights/${k.weight}`, new Set());
      const at = text.indexOf('//#per-binding');
      if (at < 0) throw new GpuError(`shaders/weights/${k.weight}.wgsl has no //#per-binding line`);
      const per = text.slice(at + '//#per-binding'.length).replaceAll('$W', name).replaceAll('$B', binding);
      const head = shared ? '' : text.slice(0, at);
      shared = true;
      return head + per;
    });
  }

  async get(k: PipelineKey): Promise<GPUComputePipeline> {
    const key = keyString(k);
    let p = this.pipelines.get(key);
    if (!p) {
      p = this.build(k, key);
      this.pipelines.set(key, p);
      p.catch(() => this.pipelines.delete(key));
    }
    return p;
  }

  private async build(k: PipelineKey, key: string): Promise<GPUComputePipeline> {
    const modKey = `${k.shader}|${JSON.stringify(k.aliases ?? {})}|${(k.enables ?? []).join()}|${k.weight ?? ''}`;
    let module = this.modules.get(modKey);
    if (!module) {
      const code = this.code(k);
      module = await this.gpu.scoped(`compiling shaders/${k.shader}.wgsl`, () =>
        this.gpu.device.createShaderModule({ code, label: k.shader }),
      );
      const info = await module.getCompilationInfo();
      const errs = info.messages.filter((m) => m.type === 'error');
      if (errs.length) {
        const lines = errs.map((m) => `  line ${m.lineNum}:${m.linePos}: ${m.message}`).join('\n');
        throw new GpuError(`compiling shaders/${k.shader}.wgsl (${JSON.stringify(k.aliases ?? {})}):\n${lines}`);
      }
      this.modules.set(modKey, module);
    }
    // Asynchronous creation: the driver compiles while other pipelines are being asked for (see prepare()).
    try {
      return await this.gpu.device.createComputePipelineAsync({
        layout: 'auto',
        label: key,
        compute: { module, entryPoint: k.entry, constants: k.constants },
      });
    } catch (e) {
      throw new GpuError(`creating pipeline ${key}: ${(e as Error).message}`);
    }
  }

  /**
   * Creates every pipeline of `uses` at once (those not already made or under way) and runs each new one
   * on one workgroup with zeroed uniforms and buffers, where every count is 0 and no kernel does any work:
   * drivers that compile a pipeline at its first dispatch rather than at its creation (llvmpipe) do it
   * then, at load, instead of inside the first step. Returns how many pipelines it made.
   */
  async prepare(uses: { pipeline: PipelineKey; bindings: number[] }[]): Promise<number> {
    const fresh = new Map<string, { pipeline: PipelineKey; bindings: number[] }>();
    for (const u of uses) {
      const key = keyString(u.pipeline);
      if (!this.pipelines.has(key) && !fresh.has(key)) fresh.set(key, u);
    }
    if (!fresh.size) return 0;
    const made = await Promise.all([...fresh.values()].map((u) => this.get(u.pipeline)));
    const slots = Math.max(...[...fresh.values()].flatMap((u) => u.bindings)) + 1;
    // Distinct buffers per binding: a writable binding may not alias another in one dispatch.
    const zeros = Array.from({ length: slots }, (_, i) =>
      this.gpu.pool.create(i === 0 ? 256 : 1024, i === 0 ? GPUBufferUsage.UNIFORM : undefined, 'warm-up zeros'),
    );
    try {
      await this.gpu.scoped('warming up the pipelines', () => {
        const enc = this.gpu.device.createCommandEncoder();
        const pass = enc.beginComputePass();
        [...fresh.values()].forEach((u, i) => {
          const entries = [0, ...u.bindings].map((binding) => ({ binding, resource: { buffer: zeros[binding] } }));
          pass.setPipeline(made[i]);
          pass.setBindGroup(0, this.gpu.device.createBindGroup({ layout: made[i].getBindGroupLayout(0), entries }));
          pass.dispatchWorkgroups(1);
        });
        pass.end();
        this.gpu.device.queue.submit([enc.finish()]);
      });
      await this.gpu.device.queue.onSubmittedWorkDone();
    } finally {
      for (const b of zeros) this.gpu.pool.destroy(b);
    }
    return fresh.size;
  }

  clear(): void {
    this.pipelines.clear();
    this.modules.clear();
  }
}
