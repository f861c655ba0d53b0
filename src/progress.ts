// A load progress bar on stderr (bytes and tensors), redrawn in place on a terminal and printed
// every 25% otherwise.
import type { LoadProgress } from './models/weights.ts';
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
