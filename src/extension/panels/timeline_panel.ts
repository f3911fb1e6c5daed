/**
 * Timeline panel: the session's events per vCPU along the event index, coloured by kind (webview/timeline),
 * read with `kvmMmu/vcpuTimeline` for the range the webview shows, refreshed at each stop while visible.
 * Scenario and trace-replay sessions answer the same request.
 */
import * as vscode from 'vscode';
import { webviewHtml, webviewOptions } from './webview_html';
import { parseFromTimeline, parseToTimeline, type TimelineData, type ToTimeline } from '../../../webview/shared/timeline_protocol';
import { activeKvmSession, errorText, type SessionEvents } from '../views/session_events';

export const TIMELINE_VIEW_TYPE = 'kvmMmu.timeline';

export class TimelinePanel {
  static current: TimelinePanel | undefined;
  data: TimelineData | undefined;
  rendered: { rows: number; buckets: number } | undefined;
  /** The range the webview asked for; undefined = the whole window (follows new events). */
  private range: { from: number; to: number; buckets: number } | undefined;
  private buckets = 400;
  private readonly subs: vscode.Disposable[] = [];

  static show(extensionUri: vscode.Uri, events: SessionEvents): TimelinePanel {
    if (TimelinePanel.current) {
      TimelinePanel.current.panel.reveal(undefined, false);
      return TimelinePanel.current;
    }
    const panel = vscode.window.createWebviewPanel(TIMELINE_VIEW_TYPE, 'MMU Timeline', { viewColumn: vscode.ViewColumn.Beside, preserveFocus: false }, webviewOptions(extensionUri));
    return new TimelinePanel(panel, extensionUri, events);
  }

  constructor(readonly panel: vscode.WebviewPanel, extensionUri: vscode.Uri, events: SessionEvents) {
    TimelinePanel.current = this;
    panel.webview.options = webviewOptions(extensionUri);
    panel.webview.html = webviewHtml(panel.webview, extensionUri, 'timeline', 'MMU Timeline');
    this.subs.push(
      panel.webview.onDidReceiveMessage((m) => this.onMessage(m)),
      panel.onDidDispose(() => this.dispose()),
      events.onStopped(() => {
        // A new stop means new events: show the whole window again.
        this.range = undefined;
        if (panel.visible) void this.refresh();
      }),
      events.onSessionChanged(() => {
        this.range = undefined;
        if (panel.visible) void this.refresh();
      }),
      panel.onDidChangeViewState((e) => {
        if (e.webviewPanel.visible) void this.refresh();
      }),
    );
  }

  private post(m: ToTimeline): void {
    void this.panel.webview.postMessage(m);
  }

  async refresh(): Promise<TimelineData | undefined> {
    const s = activeKvmSession();
    if (!s) {
      this.post({ type: 'error', message: 'No KVM MMU debug session is running.' });
      return undefined;
    }
    try {
      const args = this.range ?? { buckets: this.buckets };
      const raw = await s.customRequest('kvmMmu/vcpuTimeline', args);
      const parsed = parseToTimeline({ type: 'timeline', data: raw });
      if (!parsed || parsed.type !== 'timeline') throw new Error('malformed kvmMmu/vcpuTimeline response');
      this.data = parsed.data;
      this.post(parsed);
      return parsed.data;
    } catch (e) {
      this.post({ type: 'error', message: errorText(e) });
      return undefined;
    }
  }

  private onMessage(raw: unknown): void {
    const m = parseFromTimeline(raw);
    if (!m) return;
    const s = activeKvmSession();
    switch (m.type) {
      case 'ready':
        void this.refresh();
        break;
      case 'range':
        this.range = m;
        this.buckets = m.buckets;
        void this.refresh();
        break;
      case 'reveal':
        void vscode.commands.executeCommand('kvmMmu.events.reveal', { index: -1, name: '', vcpu: 0, text: '', step: m.step });
        break;
      case 'goto':
        if (s) {
          s.customRequest('kvmMmu/gotoEvent', { index: m.index }).then(undefined, (e: unknown) => {
            void vscode.window.showErrorMessage(`Go to event #${m.index} is not available: ${errorText(e)}`);
          });
        }
        break;
      case 'rendered':
        this.rendered = { rows: m.rows, buckets: m.buckets };
        break;
    }
  }

  dispose(): void {
    if (TimelinePanel.current === this) TimelinePanel.current = undefined;
    for (const s of this.subs) s.dispose();
    this.panel.dispose();
  }
}

export function registerTimelinePanel(context: vscode.ExtensionContext, events: SessionEvents): void {
  const uri = context.extensionUri;
  context.subscriptions.push(
    vscode.commands.registerCommand('kvmMmu.showTimeline', async () => {
      const p = TimelinePanel.show(uri, events);
      return p.refresh();
    }),
    vscode.window.registerWebviewPanelSerializer(TIMELINE_VIEW_TYPE, {
      deserializeWebviewPanel: async (panel) => {
        new TimelinePanel(panel, uri, events);
      },
    }),
  );
}
