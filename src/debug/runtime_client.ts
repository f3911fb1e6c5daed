/**
 * The session's side of the engine worker: starts it, sends requests (waking the worker, which may be
 * blocked inside a probe), and turns its messages into promises and events.
 */
import { MessageChannel, Worker, type MessagePort } from 'node:worker_threads';
import { EventEmitter } from 'node:events';
import { existsSync } from 'node:fs';
import { totalmem } from 'node:os';
import { join } from 'node:path';
import { SIG_CANCEL_LOAD, SIG_MESSAGES, SIG_PAUSE, SIG_SLOTS, type LaunchOptions, type WorkerEvent, type WorkerMessage, type WorkerRequest } from './protocol';

/** Where the bundled worker is: beside this bundle in dist/, or given explicitly. */
export function defaultWorkerPath(): string {
  const candidates = [join(__dirname, 'engineWorker.js'), join(__dirname, '..', '..', 'dist', 'engineWorker.js'), join(__dirname, '..', 'dist', 'engineWorker.js')];
  return candidates.find((c) => existsSync(c)) ?? candidates[0];
}

export class RuntimeClient extends EventEmitter {
  private readonly worker: Worker;
  private readonly port: MessagePort;
  private readonly sig: Int32Array;
  private seq = 0;
  private readonly pending = new Map<number, { resolve: (v: unknown) => void; reject: (e: Error) => void }>();
  private exited = false;

  constructor(options: LaunchOptions, workerPath = defaultWorkerPath()) {
    super();
    const shared = new SharedArrayBuffer(4 * SIG_SLOTS);
    this.sig = new Int32Array(shared);
    const { port1, port2 } = new MessageChannel();
    this.port = port1;
    this.worker = new Worker(workerPath, {
      workerData: { port: port2, sig: shared, options },
      transferList: [port2],
      // Engine frames then map back to the TypeScript sources where the bundle ships a source map.
      execArgv: [...process.execArgv.filter((a) => !a.startsWith('--inspect')), '--enable-source-maps'],
      // A large young generation: the session keeps the last 20k events alive, and with a small nursery every
      // scavenge copied them again (GC was a sixth of the attached fault-in's time at 48 MB).
      resourceLimits: { maxOldGenerationSizeMb: Math.min(8192, Math.floor(totalmem() / 2 / 2 ** 20)), maxYoungGenerationSizeMb: 192 },
    });
    this.port.on('message', (m: WorkerMessage) => this.onMessage(m));
    this.worker.on('error', (e) => this.fail(`the engine stopped: ${e.message}`));
    this.worker.on('exit', (code) => {
      this.exited = true;
      // terminate() ends a worker that did not exit by itself after disconnect: code 1, not a failure
      if (code !== 0 && !this.terminating) this.fail(`the engine exited with code ${code}`);
      for (const p of this.pending.values()) p.reject(new Error('the engine has ended'));
      this.pending.clear();
      this.emit('exit', code);
    });
  }

  private fail(message: string): void {
    this.emit('event', { event: 'output', category: 'stderr', output: message + '\n' } satisfies WorkerEvent);
    this.emit('event', { event: 'terminated', exitCode: 70 } satisfies WorkerEvent);
  }

  private onMessage(m: WorkerMessage): void {
    if (m.type === 'response') {
      const p = this.pending.get(m.seq);
      if (!p) return;
      this.pending.delete(m.seq);
      if (m.ok) p.resolve(m.body);
      else p.reject(new Error(m.error ?? 'request failed'));
    } else {
      const { type: _t, ...e } = m;
      this.emit('event', e as WorkerEvent);
    }
  }

  request<T = unknown>(req: WorkerRequest): Promise<T> {
    if (this.exited) return Promise.reject(new Error('the engine has ended'));
    const seq = ++this.seq;
    return new Promise<T>((resolve, reject) => {
      this.pending.set(seq, { resolve: resolve as (v: unknown) => void, reject });
      this.port.postMessage({ seq, req });
      Atomics.add(this.sig, SIG_MESSAGES, 1);
      Atomics.notify(this.sig, SIG_MESSAGES);
    });
  }

  /** The Pause button: noticed by the worker between statements and at probe hits. */
  pause(): void {
    Atomics.store(this.sig, SIG_PAUSE, 1);
  }

  /** Cancel of the load progress: the worker stops reading the capture after its current chunk. */
  cancelLoad(): void {
    Atomics.store(this.sig, SIG_CANCEL_LOAD, 1);
  }

  private terminating = false;

  async terminate(): Promise<void> {
    if (this.exited) return;
    try {
      await Promise.race([this.request({ cmd: 'disconnect' }), new Promise((r) => setTimeout(r, 500))]);
    } catch {
      // already gone
    }
    // the worker answers disconnect and then returns from its loop: give it the moment it needs to exit
    if (!this.exited) await Promise.race([new Promise((r) => this.worker.once('exit', r)), new Promise((r) => setTimeout(r, 100))]);
    if (!this.exited) {
      this.terminating = true;
      await this.worker.terminate();
    }
  }
}
