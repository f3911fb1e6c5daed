/**
 * VS Code's API has no "debuggee stopped" event, so the views learn about stops by watching the adapter's
 * messages (a DebugAdapterTracker), as the mcu-debug tracker does. One tracker feeds every view.
 */
import * as vscode from 'vscode';

export const DEBUG_TYPE = 'kvm-mmu';

export interface StopInfo {
  session: vscode.DebugSession;
  reason: string;
}

export class SessionEvents implements vscode.Disposable {
  private readonly stoppedEmitter = new vscode.EventEmitter<StopInfo>();
  private readonly changedEmitter = new vscode.EventEmitter<vscode.DebugSession | undefined>();
  /** A kvm-mmu session stopped (entry, step, breakpoint, ...). */
  readonly onStopped = this.stoppedEmitter.event;
  /** The active kvm-mmu session started, ended, continued or changed: views should reset or refresh. */
  readonly onSessionChanged = this.changedEmitter.event;
  private readonly subs: vscode.Disposable[] = [];
  private readonly stoppedSessions = new Set<string>();

  constructor() {
    this.subs.push(
      vscode.debug.registerDebugAdapterTrackerFactory(DEBUG_TYPE, {
        createDebugAdapterTracker: (session) => ({
          onDidSendMessage: (m: { type?: string; event?: string; body?: { reason?: string } }) => {
            if (m?.type !== 'event') return;
            if (m.event === 'stopped') {
              this.stoppedSessions.add(session.id);
              // Let VS Code process the stop first, so requests from listeners see a paused session.
              setTimeout(() => this.stoppedEmitter.fire({ session, reason: m.body?.reason ?? '' }), 0);
            } else if (m.event === 'continued') {
              this.stoppedSessions.delete(session.id);
            }
          },
          onWillStopSession: () => {
            this.stoppedSessions.delete(session.id);
          },
        }),
      }),
      vscode.debug.onDidStartDebugSession((s) => s.type === DEBUG_TYPE && this.changedEmitter.fire(s)),
      vscode.debug.onDidTerminateDebugSession((s) => {
        this.stoppedSessions.delete(s.id);
        if (s.type === DEBUG_TYPE) this.changedEmitter.fire(activeKvmSession());
      }),
      vscode.debug.onDidChangeActiveDebugSession(() => this.changedEmitter.fire(activeKvmSession())),
      this.stoppedEmitter,
      this.changedEmitter,
    );
  }

  isStopped(session: vscode.DebugSession): boolean {
    return this.stoppedSessions.has(session.id);
  }

  dispose(): void {
    for (const s of this.subs) s.dispose();
  }
}

export function activeKvmSession(): vscode.DebugSession | undefined {
  const s = vscode.debug.activeDebugSession;
  return s && s.type === DEBUG_TYPE ? s : undefined;
}

/** The text of a failed customRequest, without VS Code's wrapping. */
export function errorText(e: unknown): string {
  return e instanceof Error ? e.message : String(e);
}
