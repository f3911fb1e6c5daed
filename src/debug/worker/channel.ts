/**
 * The worker's side of the session channel. The worker never returns to its event loop while a session
 * runs (it may be paused deep inside an engine function), so it receives synchronously: it sleeps on a
 * shared counter with Atomics.wait and drains its port with receiveMessageOnPort.
 */
import { receiveMessageOnPort, type MessagePort } from 'node:worker_threads';
import { SIG_CANCEL_LOAD, SIG_MESSAGES, SIG_PAUSE, type WorkerEvent, type WorkerRequest } from '../protocol';

export interface Incoming {
  seq: number;
  req: WorkerRequest;
}

export class WorkerChannel {
  constructor(
    private readonly port: MessagePort,
    private readonly sig: Int32Array,
  ) {}

  /** Block until the session sends a request. */
  receive(): Incoming {
    for (;;) {
      const m = receiveMessageOnPort(this.port);
      if (m) return m.message as Incoming;
      const seen = Atomics.load(this.sig, SIG_MESSAGES);
      const again = receiveMessageOnPort(this.port);
      if (again) return again.message as Incoming;
      Atomics.wait(this.sig, SIG_MESSAGES, seen, 1000);
    }
  }

  /** A request that arrived while running, without blocking. */
  poll(): Incoming | undefined {
    const m = receiveMessageOnPort(this.port);
    return m ? (m.message as Incoming) : undefined;
  }

  /** Cheap check, made between statements and at probe hits, for the user's Pause button. */
  pauseRequested(): boolean {
    return Atomics.load(this.sig, SIG_PAUSE) !== 0;
  }

  /** Checked after each chunk of a capture being loaded: the user cancelled the load's progress. */
  loadCancelRequested(): boolean {
    return Atomics.load(this.sig, SIG_CANCEL_LOAD) !== 0;
  }

  clearPause(): void {
    Atomics.store(this.sig, SIG_PAUSE, 0);
  }

  respond(seq: number, ok: boolean, body?: unknown, error?: string): void {
    this.port.postMessage({ type: 'response', seq, ok, body, error });
  }

  event(e: WorkerEvent): void {
    this.port.postMessage({ type: 'event', ...e });
  }
}
