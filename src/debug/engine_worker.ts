/**
 * The engine's thread. The debug session (in the extension host, or `kvm-mmu dap`) starts this worker
 * so that a long run never blocks the editor, and so that a stop can happen in the middle of an engine
 * function with the whole state readable.
 */
import { workerData, type MessagePort } from 'node:worker_threads';
import { WorkerChannel } from './worker/channel';
import { Controller } from './worker/controller';
import { createProgram } from './create_program';
import { installDecoders } from './decoders';
import type { LaunchOptions } from './protocol';

interface Init {
  port: MessagePort;
  sig: SharedArrayBuffer;
  options: LaunchOptions;
}

function main(): void {
  const { port, sig, options } = workerData as Init;
  const chan = new WorkerChannel(port, new Int32Array(sig));
  installDecoders();
  try {
    process.setSourceMapsEnabled?.(true);
  } catch {
    // Source positions of engine frames then point into the bundle; still correct, less readable.
  }
  let program;
  let lastReport = 0;
  let started = false;
  const progress = (read: number, total: number) => {
    const now = performance.now();
    if (!started) {
      if (total < 32 << 20) return; // small captures load in a blink
      started = true;
      chan.event({ event: 'progress', kind: 'start', id: 'kvm-mmu-load', title: 'Reading the trace capture' });
    }
    if (now - lastReport < 250 && read < total) return;
    lastReport = now;
    chan.event({ event: 'progress', kind: 'update', id: 'kvm-mmu-load', message: `${(read / 1e6).toFixed(0)} of ${(total / 1e6).toFixed(0)} MB`, percentage: total ? Math.floor((100 * read) / total) : undefined });
  };
  try {
    program = createProgram(options, progress);
    if (started) chan.event({ event: 'progress', kind: 'end', id: 'kvm-mmu-load' });
  } catch (e) {
    const msg = e instanceof Error ? e.message : String(e);
    // Answer everything with the load error until the session disconnects: it never hangs.
    chan.event({ event: 'output', category: 'stderr', output: msg + '\n' });
    for (;;) {
      const m = chan.receive();
      if (m.req.cmd === 'disconnect') {
        chan.respond(m.seq, true, {});
        return;
      }
      if (m.req.cmd === 'configurationDone') {
        chan.respond(m.seq, true, {});
        chan.event({ event: 'terminated', exitCode: 2 });
        continue;
      }
      chan.respond(m.seq, false, undefined, msg);
    }
  }
  new Controller(program, chan, { stopOnEntry: options.stopOnEntry, kernelSource: options.kernelSource, checkpointInterval: options.checkpointInterval ?? undefined }).serve();
  port.close();
}

main();
