/**
 * A small DAP client for the benchmarks: drives a KvmMmuDebugSession in this process over a pair of
 * streams with the protocol's Content-Length framing, exactly as VS Code's inline adapter does.
 */
import { PassThrough } from 'node:stream';
import { EventEmitter } from 'node:events';
import { KvmMmuDebugSession } from '../debug/session';

export class InProcessDapClient extends EventEmitter {
  private readonly toAdapter = new PassThrough();
  private readonly fromAdapter = new PassThrough();
  private readonly session = new KvmMmuDebugSession();
  private seq = 0;
  private buf = Buffer.alloc(0);
  private readonly pending = new Map<number, (r: { success: boolean; body?: unknown; message?: string }) => void>();

  constructor() {
    super();
    this.session.setRunAsServer(true);
    this.session.start(this.toAdapter, this.fromAdapter);
    this.fromAdapter.on('data', (d: Buffer) => this.onData(d));
  }

  private onData(d: Buffer): void {
    this.buf = Buffer.concat([this.buf, d]);
    for (;;) {
      const sep = this.buf.indexOf('\r\n\r\n');
      if (sep < 0) return;
      const m = /Content-Length: (\d+)/i.exec(this.buf.subarray(0, sep).toString('ascii'));
      if (!m) throw new Error('bad DAP header');
      const len = Number(m[1]);
      if (this.buf.length < sep + 4 + len) return;
      const msg = JSON.parse(this.buf.subarray(sep + 4, sep + 4 + len).toString('utf8'));
      this.buf = this.buf.subarray(sep + 4 + len);
      if (msg.type === 'response') this.pending.get(msg.request_seq)?.(msg);
      else if (msg.type === 'event') this.emit(msg.event, msg.body);
    }
  }

  request<T = unknown>(command: string, args: unknown = {}): Promise<T> {
    const seq = ++this.seq;
    const json = JSON.stringify({ seq, type: 'request', command, arguments: args });
    return new Promise<T>((resolve, reject) => {
      this.pending.set(seq, (r) => {
        this.pending.delete(seq);
        if (r.success) resolve(r.body as T);
        else reject(new Error(`${command}: ${r.message}`));
      });
      this.toAdapter.write(`Content-Length: ${Buffer.byteLength(json)}\r\n\r\n${json}`);
    });
  }

  waitFor(event: string): Promise<unknown> {
    return new Promise((resolve) => this.once(event, resolve));
  }

  async launch(args: Record<string, unknown>, setup?: () => Promise<unknown>): Promise<void> {
    await this.request('initialize', { adapterID: 'kvm-mmu', linesStartAt1: true, columnsStartAt1: true, pathFormat: 'path' });
    const initialized = this.waitFor('initialized');
    await this.request('launch', args);
    await initialized;
    if (setup) await setup();
    await this.request('configurationDone');
  }

  async close(): Promise<void> {
    await this.request('disconnect', {}).catch(() => undefined);
  }
}
