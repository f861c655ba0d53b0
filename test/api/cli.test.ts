// The webgpu-vlm command line as a user runs it: run (streamed and --json), Ctrl-C during a reply, a reader
// that leaves, --help and --version without Dawn, choosing the adapter, no Dawn warnings unless --verbose,
// and non-zero exits with one-line messages on misuse.
import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { spawn, spawnSync } from 'node:child_process';
import { once } from 'node:events';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { FIXTURES } from '../reference.ts';
import { readJsonObject } from '../../src/io/model-dir.ts';

// The command from its sources (tsx compiles them as they load); test/package/ runs the built one as installed.
const BIN = ['--import', 'tsx', fileURLToPath(new URL('../../src/cli.ts', import.meta.url))];
const cli = (...args: string[]) => spawnSync(process.execPath, [...BIN, ...args], { encoding: 'utf8', timeout: 300_000 });
const SMOL = join(FIXTURES, 'smolvlm-tiny');
const LLAVA = join(FIXTURES, 'llava-tiny');
const VERSION = ((await readJsonObject(fileURLToPath(new URL('../../package.json', import.meta.url)))) as { version: string }).version;
// What Dawn prints on lavapipe while it discovers adapters; the command hides it unless --verbose, where its
// stderr is a terminal or a pipe. Node gives a child socket pairs, so `piped` puts a real pipe (bash's process
// substitution) between the command's stderr and the test.
const DAWN_WARNING = /Warning: maxDynamic\w+ artificially reduced/;
const piped = (...args: string[]) =>
  spawnSync('bash', ['-c', 'exec "$@" 2> >(exec cat >&2)', 'bash', process.execPath, ...BIN, ...args], { encoding: 'utf8', timeout: 300_000 });

describe('webgpu-vlm run', () => {
  it('streams a reply and prints the timings line (SmolVLM)', () => {
    const r = piped('run', '--model', SMOL, '--image', join(SMOL, 'image.png'), '--prompt', 'What is in the image?', '--max-new-tokens', '6');
    assert.equal(r.status, 0, r.stderr);
    assert.doesNotMatch(r.stderr, DAWN_WARNING);
    assert.match(r.stderr, /loading 100% .*59\/59 tensors/);
    assert.match(r.stderr, /load [\d.]+ s \(weights [\d.]+ MiB on the GPU\), image encode [\d.]+ ms, TTFT [\d.]+ ms, prefill [\d.]+ tok\/s \(\d+ tokens\), decode [\d.]+ tok\/s \(6 tokens, length\)/);
  });

  it('prints a machine-readable result with --json (LLaVA), the same tokens with either kernel set', () => {
    const runs = ['gpu', 'cpu'].map((k) => cli('run', '--model', LLAVA, '--image', join(LLAVA, 'image.png'), '--prompt', 'Hi?', '--max-new-tokens', '5', '--json', '--kernels', k));
    for (const r of runs) assert.equal(r.status, 0, r.stderr);
    for (const r of runs) assert.match(r.stdout, /^\{[^\n]*\}\n$/, 'one compact line');
    const [out, other] = runs.map((r) => JSON.parse(r.stdout));
    assert.deepEqual(other.tokens, out.tokens);
    assert.equal(out.tokens.length, 5);
    assert.equal(typeof out.text, 'string');
    assert.equal(out.timings.promptTokens, 50);
    assert.ok(out.timings.imageEncodeMs >= 0);
  });

  it('stops on Ctrl-C: ends the line, prints the partial timings with reason abort, exits 130', { timeout: 300_000 }, async () => {
    // The tiny model does not reach EOS on this prompt, so without the SIGINT it would write 4000 tokens.
    const child = spawn(process.execPath, [...BIN, 'run', '--model', SMOL, '--prompt', 'Hi', '--max-new-tokens', '4000'], { stdio: ['ignore', 'pipe', 'pipe'] });
    let stdout = '';
    let stderr = '';
    child.stderr.setEncoding('utf8').on('data', (d: string) => (stderr += d));
    child.stdout.setEncoding('utf8').on('data', (d: string) => {
      if (!stdout) child.kill('SIGINT');
      stdout += d;
    });
    const [code] = await once(child, 'close');
    assert.equal(code, 130, stderr);
    assert.ok(stdout.endsWith('\n'), 'the output line is ended');
    const m = /decode [\d.]+ tok\/s \((\d+) tokens, abort\)/.exec(stderr);
    assert.ok(m, stderr);
    assert.ok(Number(m[1]) > 0 && Number(m[1]) < 4000, `${m[1]} tokens`);
  });

  it('ends quietly, exit 0, when the reader of its output leaves (| head)', { timeout: 300_000 }, async () => {
    const child = spawn(process.execPath, [...BIN, 'run', '--model', SMOL, '--prompt', 'Hi', '--max-new-tokens', '4000'], { stdio: ['ignore', 'pipe', 'pipe'] });
    let stderr = '';
    child.stderr.setEncoding('utf8').on('data', (d: string) => (stderr += d));
    child.stdout.once('data', () => child.stdout.destroy());
    const [code, signal] = await once(child, 'close');
    assert.equal(signal, null);
    assert.equal(code, 0, stderr);
    assert.doesNotMatch(stderr, /EPIPE|Error|at /);
  });

  it('has --help on every command, and --help and --version answer without loading Dawn, sharp or the tokenizer', () => {
    // A resolve hook that refuses the heavy packages: a command that imported one would fail.
    const dir = mkdtempSync(join(tmpdir(), 'cli-light-'));
    try {
      const hooks = join(dir, 'hooks.mjs');
      writeFileSync(hooks, `export async function resolve(s, c, next) {\n  if (/^(webgpu|sharp|@huggingface\\/tokenizers)$/.test(s)) throw new Error('imported ' + s);\n  return next(s, c);\n}\n`);
      const register = join(dir, 'register.mjs');
      writeFileSync(register, `import { register } from 'node:module';\nregister(${JSON.stringify(new URL(`file://${hooks}`).href)});\n`);
      const light = (...args: string[]) => spawnSync(process.execPath, ['--import', register, ...BIN, ...args], { encoding: 'utf8', timeout: 60_000 });
      for (const cmd of ['run', 'diff', 'info']) {
        const r = light(cmd, '--help');
        assert.equal(r.status, 0, `${cmd}: ${r.stderr}`);
        assert.match(r.stdout, new RegExp(`webgpu-vlm ${cmd}`));
      }
      const help = light('--help');
      assert.equal(help.status, 0, help.stderr);
      assert.match(help.stdout, /webgpu-vlm --version/);
      const version = light('--version');
      assert.equal(version.status, 0, version.stderr);
      assert.equal(version.stdout, `${VERSION}\n`);
      const usage = light('run', '--prompt', 'x');
      assert.equal(usage.status, 2, usage.stderr);
      // The hook works: a command that needs Dawn fails under it.
      assert.match(light('info').stderr, /imported webgpu/);
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });

  it('exits 2 with a clear message on misuse', () => {
    const cases: [string[], RegExp][] = [
      [['run', '--prompt', 'x'], /--model DIR\|ID is required/],
      [['run', '--model', SMOL], /--prompt TEXT is required/],
      [['run', '--model', SMOL, '--prompt', 'x', '--max-new-tokens', 'many'], /--max-new-tokens expects a positive integer, got "many"/],
      [['run', '--model', SMOL, '--prompt', 'x', '--top-p', '2'], /--top-p expects a number in \(0, 1\], got "2"/],
      [['run', '--model', SMOL, '--prompt', 'x', '--dtype', 'int4'], /--dtype expects auto, f32, f16, bf16, q8, q4, got "int4"/],
      [['run', '--model', SMOL, '--prompt', 'x', '--kernels', 'tpu'], /--kernels expects gpu or cpu, got "tpu"/],
      [['run', '--model', SMOL, '--prompt', 'x', '--stop', ''], /--stop expects non-empty text/],
      [['run', '--model', SMOL, '--prompt', 'x', '--image-splitting', 'maybe'], /--image-splitting expects on or off, got "maybe"/],
      [['run', '--model', SMOL, '--prompt', 'x', '--image-size', '0'], /--image-size expects an integer in \[1, 4096\], got "0"/],
      [['diff', '--model', SMOL, '--reference', 'x', '--prefill-tokens', '0'], /--prefill-tokens expects a positive integer, got "0"/],
      [['diff', '--model', SMOL, '--reference', 'x', '--dtype', 'q5'], /diff: --dtype expects auto, f32, f16, bf16, q8, q4, got "q5"/],
      [['run', '--bogus'], /run: Unknown option '--bogus'/],
      [['run', '--model', SMOL, '--prompt', 'x', '--power', 'medium'], /run: --power expects high or low, got "medium"/],
      [['diff', '--model', SMOL, '--reference', 'x', '--adapter', '0', '--power', 'low'], /diff: give --adapter or --power, not both/],
      [['info', '--adapter'], /info: Option '--adapter <value>' argument missing/],
      [['frobnicate'], /unknown command "frobnicate"/],
      [[], /a command is required: run, serve, diff or info/],
    ];
    for (const [args, msg] of cases) {
      const r = cli(...args);
      assert.equal(r.status, 2, `${args.join(' ')}: ${r.stderr}`);
      assert.match(r.stderr, msg);
      // One line, pointing to the command's help rather than printing it.
      const cmd = ['run', 'serve', 'diff', 'info'].includes(args[0]) ? ` ${args[0]}` : '';
      assert.ok(r.stderr.endsWith(` (see webgpu-vlm${cmd} --help)\n`) && r.stderr.split('\n').length === 2, `${args.join(' ')}: ${r.stderr}`);
      assert.equal(r.stdout, '');
    }
  });

  it('lists the adapters, and --adapter (a number or part of a name) and --power choose one', () => {
    const all = piped('info');
    assert.equal(all.status, 0, all.stderr);
    assert.doesNotMatch(all.stderr, DAWN_WARNING);
    const first = /^adapter 0: (.+?) — vendor .*\n  features: .*\n  limits: maxBufferSize .*\n  kernels: for a (GPU|SIMD-on-CPU driver).*\n  requested as: .*high-performance/.exec(all.stdout);
    assert.ok(first, all.stdout);
    const name = first[1];
    // A word of its name, in other case, picks it as its number does; so does the high-performance preference.
    const word = name.split(/\W+/).find((w) => w.length >= 4) ?? name;
    for (const args of [['--adapter', '0'], ['--adapter', word.toUpperCase()], ['--power', 'high']]) {
      const r = cli('info', ...args);
      assert.equal(r.status, 0, `${args.join(' ')}: ${r.stderr}`);
      assert.ok(r.stdout.startsWith(`adapter: ${name} — `), `${args.join(' ')}: ${r.stdout}`);
    }
    assert.equal(cli('info', '--power', 'low').status, 0);
    const count = all.stdout.match(/^adapter \d+:/gm)!.length;
    for (const [which, fault] of [['no-such-adapter', /"no-such-adapter" matches no adapter/], [String(count), new RegExp(`there is no adapter ${count}`)]] as const) {
      const r = cli('info', '--adapter', which);
      assert.equal(r.status, 1, r.stderr);
      assert.match(r.stderr, fault);
      assert.ok(r.stderr.includes(`\n  0: ${name} (`), `the adapters are listed: ${r.stderr}`);
    }
    // Run on a chosen adapter (loadModel's adapter option).
    const run = cli('run', '--model', SMOL, '--prompt', 'Hi', '--max-new-tokens', '2', '--adapter', word, '--json');
    assert.equal(run.status, 0, run.stderr);
    assert.equal(JSON.parse(run.stdout).adapter, name);
    const missing = cli('run', '--model', SMOL, '--prompt', 'Hi', '--adapter', 'no-such-adapter');
    assert.equal(missing.status, 1);
    assert.match(missing.stderr, /matches no adapter/);
  });

  it("shows Dawn's warnings with --verbose", () => {
    const quiet = piped('info');
    const verbose = piped('info', '--verbose');
    assert.equal(verbose.status, 0, verbose.stderr);
    assert.equal(verbose.stdout, quiet.stdout);
    // Only lavapipe (llvmpipe) makes Dawn warn; elsewhere both are silent.
    if (/llvmpipe/.test(quiet.stdout)) assert.match(verbose.stderr, DAWN_WARNING);
    assert.doesNotMatch(quiet.stderr, DAWN_WARNING);
  });

  it('takes the image processor options, and refuses them where the processor does not split', () => {
    const args = ['--image', join(SMOL, 'image.png'), '--prompt', 'Hi?', '--max-new-tokens', '3', '--json'];
    const off = cli('run', '--model', SMOL, ...args, '--image-splitting', 'off');
    assert.equal(off.status, 0, off.stderr);
    const sized = cli('run', '--model', SMOL, ...args, '--image-size', '64');
    assert.equal(sized.status, 0, sized.stderr);
    // The fixture's image is one tile either way, so the prompt is the same.
    assert.equal(JSON.parse(off.stdout).timings.promptTokens, JSON.parse(sized.stdout).timings.promptTokens);
    const r = cli('run', '--model', LLAVA, '--image', join(LLAVA, 'image.png'), '--prompt', 'Hi?', '--image-splitting', 'on');
    assert.equal(r.status, 1);
    assert.match(r.stderr, /imageSplitting is an Idefics3 processor option: this model's CLIP\/LLaVA processor resizes and crops every image to 48×48 and never splits/);
  });

  it('diff checks a chunked prefill against the reference (on the adapter --power names)', () => {
    const r = cli('diff', '--model', LLAVA, '--reference', join(LLAVA, 'reference.safetensors'), '--prefill-tokens', '7', '--json', '--power', 'high');
    assert.equal(r.status, 0, r.stderr);
    assert.match(r.stdout, /^\{[^\n]*\}\n$/, 'one compact line');
    const out = JSON.parse(r.stdout);
    assert.ok(out.ok);
    assert.ok(out.rows.some((row: { name: string; ok: boolean }) => row.name === 'logits' && row.ok));
  });

  it('diff loads the storage --dtype and --native-f16 name: an F16 checkpoint read with shader-f16 passes, an F32 one narrowed to bf16 does not', () => {
    const f16 = join(FIXTURES, 'smolvlm-tiny-f16');
    const native = cli('diff', '--model', f16, '--reference', join(f16, 'reference.safetensors'), '--native-f16', '--json');
    assert.equal(native.status, 0, native.stderr);
    assert.ok(JSON.parse(native.stdout).ok);
    // bf16 rounding moves the f32 fixture's weights by ~2⁻⁹ relative: far past the 1e-4 default tolerance.
    const narrowed = cli('diff', '--model', SMOL, '--reference', join(SMOL, 'reference.safetensors'), '--dtype', 'bf16', '--json');
    assert.equal(narrowed.status, 1, narrowed.stderr);
    assert.equal(JSON.parse(narrowed.stdout).ok, false);
  });

  it('exits 1 naming the problem for a missing model or image, or a model that is a file', () => {
    const r = cli('run', '--model', '/nonexistent/model', '--prompt', 'x');
    assert.equal(r.status, 1);
    assert.match(r.stderr, /\/nonexistent\/model/);
    const file = cli('run', '--model', join(SMOL, 'config.json'), '--prompt', 'x');
    assert.equal(file.status, 1);
    assert.equal(file.stderr, `webgpu-vlm: ${join(SMOL, 'config.json')}: a file, not a model directory (the folder with config.json, the weights and the tokenizer files); ${SMOL} is one\n`);
    const i = cli('run', '--model', SMOL, '--image', '/nonexistent.png', '--prompt', 'x');
    assert.equal(i.status, 1);
    assert.match(i.stderr, /\/nonexistent\.png/);
  });

  it('reports a bad image before it loads the model (exit 1, the file and the fault named)', () => {
    const dir = mkdtempSync(join(tmpdir(), 'cli-images-'));
    try {
      const text = join(dir, 'notes.png');
      writeFileSync(text, 'this is not an image');
      const corrupt = join(dir, 'corrupt.png');
      writeFileSync(corrupt, Buffer.concat([Buffer.from([0x89, 0x50, 0x4e, 0x47, 0x0d, 0x0a, 0x1a, 0x0a]), Buffer.from('no IHDR chunk follows')]));
      const cases: [string, RegExp][] = [
        [join(dir, 'missing.png'), /file not found/],
        [dir, /not a regular file/],
        [text, /not a readable image \(.*unsupported image format/],
        [corrupt, /not a readable image \(.*corrupt header/],
      ];
      for (const [file, fault] of cases) {
        // The model does not exist either: only an image check made before loading can be reported.
        const r = cli('run', '--model', '/nonexistent/model', '--image', join(SMOL, 'image.png'), '--image', file, '--prompt', 'x');
        assert.equal(r.status, 1, `${file}: ${r.stderr}`);
        assert.ok(r.stderr.startsWith(`webgpu-vlm: ${file}: `), r.stderr);
        assert.match(r.stderr, fault);
        assert.doesNotMatch(r.stderr, /nonexistent\/model|loading/);
      }
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });
});
