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
import { TraceLoadCancelled } from './trace_program';
import type { LaunchOptions } from './protocol';

/** The progress id of reading a capture; the session makes it cancellable. */
const LOAD_PROGRESS = 'kvm-mmu-load';

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
    // Every chunk, not only reported ones: the flag is one atomic load, and a cancel must stop within a chunk.
    if (chan.loadCancelRequested()) throw new TraceLoadCancelled(read, total);
    const now = performance.now();
    if (!started) {
      if (total < 32 << 20) return; // small captures load in a blink
      started = true;
      chan.event({ event: 'progress', kind: 'start', id: LOAD_PROGRESS, title: 'Reading the trace capture', cancellable: true });
    }
    if (now - lastReport < 250 && read < total) return;
    lastReport = now;
    chan.event({ event: 'progress', kind: 'update', id: LOAD_PROGRESS, message: `${(read / 1e6).toFixed(0)} of ${(total / 1e6).toFixed(0)} MB`, percentage: total ? Math.floor((100 * read) / total) : undefined });
  };
  try {
    program = createProgram(options, progress);
    if (started) chan.event({ event: 'progress', kind: 'end', id: LOAD_PROGRESS });
  } catch (e) {
    if (started) chan.event({ event: 'progress', kind: 'end', id: LOAD_PROGRESS, message: e instanceof TraceLoadCancelled ? 'cancelled' : undefined });
    if (e instanceof TraceLoadCancelled) {
      chan.event({ event: 'output', category: 'console', output: e.message + '\n' });
      // The user ended it: the session ends now rather than waiting for configurationDone.
      chan.event({ event: 'terminated', exitCode: 0 });
      serveWithoutProgram(chan, e.message, true);
    } else {
      const msg = e instanceof Error ? e.message : String(e);
      chan.event({ event: 'output', category: 'stderr', output: msg + '\n' });
      serveWithoutProgram(chan, msg, false);
    }
    port.close();
    return;
  }
  new Controller(program, chan, { stopOnEntry: options.stopOnEntry, kernelSource: options.kernelSource, checkpointInterval: options.checkpointInterval ?? undefined }).serve();
  port.close();
}

/**
 * Answer every request until the session disconnects, so that it never hangs: with the load error, or,
 * after a cancelled load, as an ended session (configuration requests succeed, breakpoints stay unverified).
 */
function serveWithoutProgram(chan: WorkerChannel, msg: string, cancelled: boolean): void {
  for (;;) {
    const m = chan.receive();
    const req = m.req;
    if (req.cmd === 'disconnect') {
      chan.respond(m.seq, true, {});
      return;
    }
    if (req.cmd === 'configurationDone') {
      chan.respond(m.seq, true, {});
      if (!cancelled) chan.event({ event: 'terminated', exitCode: 2 });
      continue;
    }
    if (cancelled) {
      const unverified = (line?: number) => ({ verified: false, message: msg, line });
      if (req.cmd === 'setBreakpoints') {
        chan.respond(m.seq, true, { breakpoints: req.lines.map((l) => unverified(l.line)) });
        continue;
      }
      if (req.cmd === 'setFunctionBreakpoints' || req.cmd === 'setDataBreakpoints') {
        chan.respond(m.seq, true, { breakpoints: req.breakpoints.map(() => unverified()) });
        continue;
      }
      if (req.cmd === 'setExceptionBreakpoints') {
        chan.respond(m.seq, true, {});
        continue;
      }
    }
    chan.respond(m.seq, false, undefined, msg);
  }
}

main();
