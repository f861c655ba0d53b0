// Progress on stderr: the load (bytes and tensors), redrawn in place on a terminal and printed every 25%
// otherwise; and a prompt's image encoding and prefill, once they take long enough to be worth a line.
import type { LoadProgress } from './models/weights.ts';
import type { StepProgress } from './models/vlm.ts';
import { fmtBytes } from './gpu/device.ts';

export function progressBar(label: string, stream: NodeJS.WriteStream = process.stderr): (p: LoadProgress) => void {
  let lastDecile = -1;
  return (p) => {
    const frac = p.totalBytes ? p.bytes / p.totalBytes : p.tensors / p.totalTensors;
    const done = p.tensors === p.totalTensors;
    const text = `${label} ${(frac * 100).toFixed(0).padStart(3)}% ${fmtBytes(p.bytes)} / ${fmtBytes(p.totalBytes)}, ${p.tensors}/${p.totalTensors} tensors`;
    if (stream.isTTY) {
      const width = 24;
      const bar = '█'.repeat(Math.round(frac * width)).padEnd(width, '░');
      stream.write(`\r${bar} ${text}${done ? '\n' : ''}`);
    } else {
      const decile = Math.floor(frac * 4);
      if (decile !== lastDecile || done) {
        lastDecile = decile;
        if (decile < 4 || done) stream.write(`${text}\n`);
      }
    }
  };
}

/** Prompt progress lines (tiles encoded, tokens prefilled, elapsed), shown once a step has run `quietMs`. */
export function stepProgress(stream: NodeJS.WriteStream = process.stderr, quietMs = 1000): (p: StepProgress) => void {
  return (p) => {
    if (p.elapsedMs < quietMs) return;
    const what = p.stage === 'image' ? `image encode: ${p.done}/${p.total} tile${p.total === 1 ? '' : 's'}` : `prefill: ${p.done}/${p.total} tokens`;
    const text = `${what}, ${(p.elapsedMs / 1000).toFixed(1)} s`;
    if (stream.isTTY) stream.write(`\r\x1b[K${text}${p.done === p.total ? '\n' : ''}`);
    else stream.write(`${text}\n`);
  };
}
