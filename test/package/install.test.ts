// The package as a user gets it: `npm pack` (which builds dist/), the tarball installed into a fresh project,
// then an ES module that streams a reply from the tiny fixture, a TypeScript consumer type-checked under a
// strict NodeNext config and under `tsc --init`'s defaults, the installed `webgpu-vlm` command, and require()
// from CommonJS. Dependencies come from npm's cache where it has them (they are there after `npm run setup`).
import { describe, it, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { spawnSync, type SpawnSyncOptions } from 'node:child_process';
import { cpSync, existsSync, mkdirSync, mkdtempSync, readdirSync, rmSync, writeFileSync } from 'node:fs';
import { createRequire } from 'node:module';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { FIXTURES } from '../reference.ts';
import { readJsonObject } from '../../src/io/model-dir.ts';

const ROOT = fileURLToPath(new URL('../../', import.meta.url));
const require = createRequire(import.meta.url);
const TSC = require.resolve('typescript/bin/tsc');
const PKG = (await readJsonObject(join(ROOT, 'package.json'))) as { name: string; version: string };
const NODE_TYPES = (require('@types/node/package.json') as { version: string }).version;

// npm run from `npm test` hands its children npm_* variables describing the outer project (its prefix, package
// and script); an npm started from here must see only the project it is started in.
const env = Object.fromEntries(Object.entries(process.env).filter(([k]) => !/^npm_(package_|lifecycle_|config_(local_)?prefix$)/.test(k)));

function sh(cmd: string, args: string[], opts: SpawnSyncOptions & { cwd: string }) {
  const r = spawnSync(cmd, args, { encoding: 'utf8', env, timeout: 180_000, ...opts });
  const out = `${cmd} ${args.join(' ')} (in ${opts.cwd}): exit ${r.status}${r.error ? ` (${r.error.message})` : ''}\n${r.stdout}\n${r.stderr}`;
  return { status: r.status, stdout: String(r.stdout), stderr: String(r.stderr), out };
}

// Uses nothing but the public API; it compiles with exactOptionalPropertyTypes and noUncheckedIndexedAccess
// (tsc --init) and without the Node types (tsc --init sets "types": []).
const CONSUMER = `import { loadModel, Gpu, GpuError, LoadError, HubError, ImageError, ConfigError } from 'webgpu-vlm';
import type { GenerateResult, LoadModelOptions, TextChunk, GpuOptions } from 'webgpu-vlm';

const options: LoadModelOptions = { dtype: 'auto', kernels: 'cpu', onProgress: (p) => void p.bytes };
export async function ask(dir: string, image: string): Promise<string> {
  try {
    const model = await loadModel(dir, options);
    const reply = model.generate({ prompt: 'What is in the image?', images: [image], maxNewTokens: 4, temperature: 0 });
    const chunks: TextChunk[] = [];
    for await (const chunk of reply) chunks.push(chunk);
    const result: GenerateResult = await reply;
    model.dispose();
    return \`\${result.finishReason}: \${result.text} (\${chunks.length} chunks, TTFT \${result.timings.ttftMs} ms)\`;
  } catch (e) {
    if (e instanceof GpuError || e instanceof LoadError || e instanceof HubError || e instanceof ImageError || e instanceof ConfigError) return e.message;
    throw e;
  }
}
export async function adapterName(opts: GpuOptions = {}): Promise<string> {
  const gpu: Gpu = await Gpu.create(opts);
  const device: GPUDevice = gpu.device;
  gpu.destroy();
  return \`\${gpu.info.description} \${device.limits.maxBufferSize}\`;
}
`;

const ESM = `import { loadModel, GpuError, LoadError, HubError, ImageError, ConfigError } from 'webgpu-vlm';
const model = await loadModel('./model');
const reply = model.generate({ prompt: 'What is in the image?', images: ['./model/image.png'], maxNewTokens: 5 });
const chunks = [];
for await (const chunk of reply) chunks.push(chunk.token);
const result = await reply;
model.dispose();
const errors = [GpuError, LoadError, HubError, ImageError, ConfigError].map((E) => new E('x') instanceof Error && E.name);
console.log(JSON.stringify({ chunks, tokens: result.tokens, finishReason: result.finishReason, errors }));
`;

const CJS = `const api = require('webgpu-vlm');
console.log(JSON.stringify(Object.keys(api).sort()));
`;

describe('the npm package, installed from its tarball', { timeout: 600_000 }, () => {
  let tmp: string;
  let app: string;

  before(() => {
    tmp = mkdtempSync(join(tmpdir(), 'webgpu-vlm-package-'));
    const packed = sh('npm', ['pack', '--pack-destination', tmp], { cwd: ROOT });
    assert.equal(packed.status, 0, packed.out);
    const tarball = readdirSync(tmp).find((f) => f.endsWith('.tgz'));
    assert.ok(tarball, packed.out);

    app = join(tmp, 'app');
    mkdirSync(app);
    // allowScripts: what the README tells users to write, so npm 11 runs webgpu's install script without a warning.
    writeFileSync(join(app, 'package.json'), JSON.stringify({ name: 'app', private: true, type: 'module', allowScripts: { webgpu: true } }));
    const installed = sh('npm', ['install', '--no-audit', '--no-fund', '--prefer-offline', join(tmp, tarball), `@types/node@${NODE_TYPES}`], { cwd: app });
    assert.equal(installed.status, 0, installed.out);
    assert.doesNotMatch(installed.stderr, /install-scripts|allowScripts/, installed.out);
    cpSync(join(FIXTURES, 'smolvlm-tiny'), join(app, 'model'), { recursive: true });
  });

  after(() => {
    if (tmp) rmSync(tmp, { recursive: true, force: true });
  });

  it('holds the build, the shaders and the license, and neither sources, tests nor tsx', () => {
    const pkg = join(app, 'node_modules', PKG.name);
    for (const f of ['dist/index.js', 'dist/index.d.ts', 'dist/cli.js', 'shaders/matmul.wgsl', 'LICENSE', 'README.md']) assert.ok(existsSync(join(pkg, f)), f);
    for (const f of ['src', 'test', 'bench', 'tsconfig.json', 'dist/demo.js']) assert.ok(!existsSync(join(pkg, f)), f);
    assert.ok(!existsSync(join(app, 'node_modules', 'tsx')), 'tsx is not a runtime dependency');
  });

  it('streams a reply from an ES module', () => {
    writeFileSync(join(app, 'esm.mjs'), ESM);
    const r = sh(process.execPath, ['esm.mjs'], { cwd: app });
    assert.equal(r.status, 0, r.out);
    const out = JSON.parse(r.stdout);
    assert.equal(out.finishReason, 'length');
    assert.equal(out.tokens.length, 5);
    assert.deepEqual(out.chunks, out.tokens, 'every token streamed');
    assert.deepEqual(out.errors, ['GpuError', 'LoadError', 'HubError', 'ImageError', 'ConfigError']);
  });

  it('type-checks a TypeScript consumer under a strict NodeNext config', () => {
    writeFileSync(join(app, 'consumer.ts'), CONSUMER);
    const config = { compilerOptions: { strict: true, module: 'nodenext', moduleResolution: 'nodenext', target: 'es2022', noEmit: true }, files: ['consumer.ts'] };
    writeFileSync(join(app, 'tsconfig.json'), JSON.stringify(config));
    const r = sh(process.execPath, [TSC, '-p', '.'], { cwd: app });
    assert.equal(r.status, 0, r.out);
  });

  it("type-checks it under tsc --init's defaults", () => {
    const dir = join(app, 'init');
    mkdirSync(dir);
    writeFileSync(join(dir, 'consumer.ts'), CONSUMER);
    const init = sh(process.execPath, [TSC, '--init'], { cwd: dir });
    assert.equal(init.status, 0, init.out);
    const r = sh(process.execPath, [TSC, '-p', '.', '--noEmit'], { cwd: dir });
    assert.equal(r.status, 0, r.out);
  });

  it('runs the installed command', () => {
    const bin = join(app, 'node_modules', '.bin', 'webgpu-vlm');
    const r = sh(bin, ['--help'], { cwd: app });
    assert.equal(r.status, 0, r.out);
    assert.match(r.stdout, /webgpu-vlm run --model/);
    assert.equal(r.stderr, '');
    const v = sh(bin, ['--version'], { cwd: app });
    assert.equal(v.status, 0, v.out);
    assert.equal(v.stdout, `${PKG.version}\n`);
  });

  it('is require()d from CommonJS', { skip: !(process.features as { require_module?: boolean }).require_module && 'this Node has no require(esm)' }, () => {
    writeFileSync(join(app, 'cjs.cjs'), CJS);
    const r = sh(process.execPath, ['cjs.cjs'], { cwd: app });
    assert.equal(r.status, 0, r.out);
    const names: string[] = JSON.parse(r.stdout);
    for (const n of ['loadModel', 'Gpu', 'GpuError', 'LoadError', 'HubError', 'ImageError', 'ConfigError']) assert.ok(names.includes(n), `${n} in ${names}`);
  });
});
