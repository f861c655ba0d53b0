// The webgpu-vlm command line as a user runs it: run (streamed and --json), Ctrl-C during a reply,
// --help on every command, and non-zero exits with clear messages on misuse.
import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { spawn, spawnSync } from 'node:child_process';
import { once } from 'node:events';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { FIXTURES } from '../reference.ts';

// The command from its sources (tsx compiles them as they load); test/package/ runs the built one as installed.
const BIN = ['--import', 'tsx', fileURLToPath(new URL('../../src/cli.ts', import.meta.url))];
const cli = (...args: string[]) => spawnSync(process.execPath, [...BIN, ...args], { encoding: 'utf8', timeout: 300_000 });
const SMOL = join(FIXTURES, 'smolvlm-tiny');
const LLAVA = join(FIXTURES, 'llava-tiny');

describe('webgpu-vlm run', () => {
  it('streams a reply and prints the timings line (SmolVLM)', () => {
    const r = cli('run', '--model', SMOL, '--image', join(SMOL, 'image.png'), '--prompt', 'What is in the image?', '--max-new-tokens', '6');
    assert.equal(r.status, 0, r.stderr);
    assert.match(r.stderr, /loading 100% .*59\/59 tensors/);
    assert.match(r.stderr, /load [\d.]+ s, image encode [\d.]+ ms, TTFT [\d.]+ ms, prefill [\d.]+ tok\/s \(\d+ tokens\), decode [\d.]+ tok\/s \(6 tokens, length\)/);
  });

  it('prints a machine-readable result with --json (LLaVA), the same tokens with either kernel set', () => {
    const runs = ['gpu', 'cpu'].map((k) => cli('run', '--model', LLAVA, '--image', join(LLAVA, 'image.png'), '--prompt', 'Hi?', '--max-new-tokens', '5', '--json', '--kernels', k));
    for (const r of runs) assert.equal(r.status, 0, r.stderr);
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

  it('has --help on every command', () => {
    for (const cmd of ['run', 'diff', 'info']) {
      const r = cli(cmd, '--help');
      assert.equal(r.status, 0, `${cmd}: ${r.stderr}`);
      assert.match(r.stdout, new RegExp(`webgpu-vlm ${cmd}`));
    }
    assert.equal(cli('--help').status, 0);
  });

  it('exits 2 with a clear message on misuse', () => {
    const cases: [string[], RegExp][] = [
      [['run', '--prompt', 'x'], /--model DIR\|ID is required/],
      [['run', '--model', SMOL], /--prompt TEXT is required/],
      [['run', '--model', SMOL, '--prompt', 'x', '--max-new-tokens', 'many'], /--max-new-tokens expects a positive integer, got "many"/],
      [['run', '--model', SMOL, '--prompt', 'x', '--top-p', '2'], /--top-p expects a number in \(0, 1\], got "2"/],
      [['run', '--model', SMOL, '--prompt', 'x', '--dtype', 'int4'], /--dtype expects auto, f32 or f16, got "int4"/],
      [['run', '--model', SMOL, '--prompt', 'x', '--kernels', 'tpu'], /--kernels expects gpu or cpu, got "tpu"/],
      [['run', '--model', SMOL, '--prompt', 'x', '--stop', ''], /--stop expects non-empty text/],
      [['run', '--model', SMOL, '--prompt', 'x', '--image-splitting', 'maybe'], /--image-splitting expects on or off, got "maybe"/],
      [['run', '--model', SMOL, '--prompt', 'x', '--image-size', '0'], /--image-size expects an integer in \[1, 4096\], got "0"/],
      [['diff', '--model', SMOL, '--reference', 'x', '--prefill-tokens', '0'], /--prefill-tokens expects a positive integer, got "0"/],
      [['run', '--bogus'], /Unknown option '--bogus'/],
    ];
    for (const [args, msg] of cases) {
      const r = cli(...args);
      assert.equal(r.status, 2, `${args.join(' ')}: ${r.stderr}`);
      assert.match(r.stderr, msg);
    }
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

  it('diff checks a chunked prefill against the reference', () => {
    const r = cli('diff', '--model', LLAVA, '--reference', join(LLAVA, 'reference.safetensors'), '--prefill-tokens', '7', '--json');
    assert.equal(r.status, 0, r.stderr);
    const out = JSON.parse(r.stdout);
    assert.ok(out.ok);
    assert.ok(out.rows.some((row: { name: string; ok: boolean }) => row.name === 'logits' && row.ok));
  });

  it('exits 1 naming the problem for a missing model or image', () => {
    const r = cli('run', '--model', '/nonexistent/model', '--prompt', 'x');
    assert.equal(r.status, 1);
    assert.match(r.stderr, /\/nonexistent\/model/);
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
