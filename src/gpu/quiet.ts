// Drops the two warnings Dawn's Vulkan backend prints while it discovers adapters on lavapipe
// ("maxDynamic{Uniform,Storage}BuffersPerPipelineLayout artificially reduced from 1000000 to 16 ..."):
// lavapipe reports a million dynamic buffers and Dawn caps them to its own limit. They are written
// by Dawn's C++ logger straight to file descriptor 2, synchronously inside the first requestAdapter()
// of an instance, before any limit is requested, so no requested limit can avoid them and no JavaScript
// stream sees them. For that synchronous call fd 2 points at a private temporary file; afterwards it
// points at the original stderr again and everything captured except those two lines is written there.
//
// Node cannot duplicate a descriptor (no dup2), so the original stderr is reopened through /proc/self/fd:
// Linux only, and only for a terminal or a pipe, the usual stderr of a command. Elsewhere `fn` simply runs
// and the warnings stay: a regular file would get its own offset once reopened (`>log 2>&1` shares one
// between stdout and stderr, and stdout would overwrite what stderr wrote), and a socket cannot be
// reopened (Node's child_process makes its stdio 'pipe's as socket pairs). Another thread that opens a
// file in the instant fd 2 is closed would be handed fd 2: use this where nothing else is in flight.
import { closeSync, fstatSync, openSync, readFileSync, rmSync, writeSync } from 'node:fs';
import { randomBytes } from 'node:crypto';
import { tmpdir } from 'node:os';
import { join } from 'node:path';

const DAWN_WARNING = /^Warning: maxDynamic(Uniform|Storage)BuffersPerPipelineLayout artificially reduced from \d+ to \d+ to fit dynamic offset allocation limit\.\r?\n?$/;

/** Lines of `text` that are not Dawn's adapter-discovery warnings. */
export function withoutDawnWarnings(text: string): string {
  return text
    .split(/(?<=\n)/)
    .filter((line) => !DAWN_WARNING.test(line))
    .join('');
}

/** Runs `fn` (synchronous) with what native code writes to fd 2 filtered through withoutDawnWarnings. */
export function quietDawn<T>(fn: () => T): T {
  if (process.platform !== 'linux') return fn();
  let saved: number;
  try {
    fstatSync(0); // with 0 or 1 closed, the file opened below would not get fd 2
    fstatSync(1);
    if (fstatSync(2).isFile()) return fn();
    saved = openSync('/proc/self/fd/2', 'a');
  } catch {
    return fn();
  }
  const file = join(tmpdir(), `webgpu-vlm-stderr-${process.pid}-${randomBytes(6).toString('hex')}`);
  let capture = -1;
  try {
    closeSync(2);
    capture = openSync(file, 'wx+', 0o600); // the lowest free descriptor: 2
    return fn();
  } finally {
    if (capture >= 0) closeSync(capture);
    openSync(`/proc/self/fd/${saved}`, 'a'); // takes fd 2 back
    closeSync(saved);
    let text = '';
    try {
      text = readFileSync(file, 'utf8');
      rmSync(file, { force: true });
    } catch {
      // nothing was captured
    }
    const kept = withoutDawnWarnings(text);
    if (kept) writeSync(2, kept);
  }
}
