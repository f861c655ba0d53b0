// Finds, or installs on demand, onnxruntime-node for the peer benchmark, and loads it.
//
// onnxruntime-node 1.30.0 is a 113.5 MB download that unpacks to 301 MB (native libraries for every
// platform; linux-x64's is 45 MB), and its postinstall script fetches the CUDA provider from NuGet, which
// fails where only the npm registry is reachable. So it is not a dependency of this package: the peer
// bench installs it, the first time it runs, into bench/peers/.deps (git-ignored), with
// `npm install --prefix bench/peers/.deps --ignore-scripts`, and then deletes the other platforms'
// binaries (about 250 MB). The WebGPU execution provider is built into the bundled linux-x64 library, so
// skipping the install script loses only CUDA/TensorRT. An onnxruntime-node already resolvable from the
// project (e.g. `npm install --no-save --ignore-scripts onnxruntime-node@1.30.0`) is used first.
// WEBGPU_VLM_PEER_DEPS=DIR moves the cache folder.
import { createRequire } from 'node:module';
import { existsSync, mkdirSync, readdirSync, rmSync, writeFileSync } from 'node:fs';
import { spawnSync } from 'node:child_process';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';

export const ORT_VERSION = '1.30.0';
export const DEPS_DIR = process.env.WEBGPU_VLM_PEER_DEPS ?? fileURLToPath(new URL('./.deps/', import.meta.url));

/** The few parts of onnxruntime-node's API that the bench uses (its types are not installed for tsc). */
export interface OrtTensor {
  readonly type: string;
  readonly dims: readonly number[];
  readonly data: Float32Array | Uint16Array | Int32Array | BigInt64Array | Uint8Array;
}
export interface OrtSession {
  run(feeds: Record<string, OrtTensor>): Promise<Record<string, OrtTensor>>;
  release(): Promise<void>;
}
export interface Ort {
  InferenceSession: { create(model: Uint8Array, options: Record<string, unknown>): Promise<OrtSession> };
  Tensor: new (type: string, data: OrtTensor['data'], dims: readonly number[]) => OrtTensor;
  env: { versions: Record<string, string>; logLevel?: string };
  listSupportedBackends?: () => { name: string; bundled: boolean }[];
}

export interface LoadedOrt {
  ort: Ort;
  version: string;
  /** Where the package was loaded from. */
  from: string;
}

/** Thrown when the peer cannot be had; the bench exits with PEER_UNAVAILABLE and the test skips. */
export class PeerUnavailable extends Error {
  constructor(message: string) {
    super(message);
    this.name = 'PeerUnavailable';
  }
}
export const PEER_UNAVAILABLE = 3;

function tryRequire(base: string): LoadedOrt | null {
  const require = createRequire(base);
  let path: string;
  try {
    path = require.resolve('onnxruntime-node');
  } catch {
    return null;
  }
  const ort = require(path) as Ort;
  return { ort, version: ort.env.versions.node ?? ort.env.versions.common ?? '?', from: dirname(dirname(path)) };
}

function install(log: (s: string) => void): void {
  mkdirSync(DEPS_DIR, { recursive: true });
  writeFileSync(
    join(DEPS_DIR, 'package.json'),
    JSON.stringify(
      {
        private: true,
        description: 'Cache of the peer benchmark (bench/peers/ort.bench.ts); made by bench/peers/ort.ts, safe to delete.',
        dependencies: { 'onnxruntime-node': ORT_VERSION },
      },
      null,
      2,
    ),
  );
  log(`installing onnxruntime-node@${ORT_VERSION} into ${DEPS_DIR} (113.5 MB download, once) ...`);
  const npm = process.platform === 'win32' ? 'npm.cmd' : 'npm';
  const r = spawnSync(npm, ['install', '--prefix', DEPS_DIR, '--ignore-scripts', '--no-audit', '--no-fund', '--loglevel=error'], {
    encoding: 'utf8',
    timeout: 600_000,
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  if (r.status !== 0) {
    // npm's summary lines ("npm error code …", the message), without its stack trace.
    const lines = `${r.stderr ?? ''}\n${r.stdout ?? ''}`.split('\n').map((l) => l.replace(/^npm (error|ERR!) ?/, '').trim());
    const summary = lines.filter((l) => l && !l.startsWith('at ') && !/^[{}]/.test(l) && !/^\w+: '/.test(l)).slice(0, 4).join('; ');
    throw new PeerUnavailable(`npm install onnxruntime-node@${ORT_VERSION} failed (${r.error?.message ?? `exit ${r.status}`}): ${summary || 'no output'}`);
  }
  // Keep only this platform's native library.
  const bin = join(DEPS_DIR, 'node_modules', 'onnxruntime-node', 'bin', 'napi-v6');
  if (existsSync(bin)) {
    for (const os of readdirSync(bin)) {
      for (const arch of readdirSync(join(bin, os))) {
        if (os !== process.platform || arch !== process.arch) rmSync(join(bin, os, arch), { recursive: true, force: true });
      }
    }
  }
}

/**
 * onnxruntime-node with a bundled WebGPU execution provider, from the project's node_modules or the
 * bench cache, installing it into the cache when `install` is set. Throws PeerUnavailable otherwise.
 */
export function loadOrt(opts: { install: boolean; log?: (s: string) => void }): LoadedOrt {
  const log = opts.log ?? ((s: string) => process.stderr.write(`${s}\n`));
  let loaded: LoadedOrt | null = null;
  try {
    loaded = tryRequire(import.meta.url) ?? tryRequire(join(DEPS_DIR, 'package.json'));
    if (!loaded && opts.install) {
      install(log);
      loaded = tryRequire(join(DEPS_DIR, 'package.json'));
    }
  } catch (e) {
    if (e instanceof PeerUnavailable) throw e;
    throw new PeerUnavailable(`onnxruntime-node could not be loaded: ${(e as Error).message}`);
  }
  if (!loaded) {
    throw new PeerUnavailable(
      `onnxruntime-node is not installed (run the bench without --no-install, or: npm install --prefix ${DEPS_DIR} --ignore-scripts onnxruntime-node@${ORT_VERSION})`,
    );
  }
  const backends = loaded.ort.listSupportedBackends?.() ?? [];
  if (!backends.some((b) => b.name === 'webgpu' && b.bundled)) {
    throw new PeerUnavailable(
      `onnxruntime-node ${loaded.version} on ${process.platform}/${process.arch} has no bundled WebGPU execution provider (backends: ${backends.map((b) => b.name).join(', ') || 'unknown'})`,
    );
  }
  return loaded;
}
