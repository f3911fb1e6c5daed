/**
 * "Where is GFN X?": the memslot and HVA, attributes, lpage_info, dirty bit and the SPTE path in every
 * root (x86), or the memslot, guest stage-2 entry and pKVM ownership (arm64), for one guest frame, read
 * with `kvmMmu/whereIsGfn` from the active session and re-read at every stop while the panel is open.
 */
import * as vscode from 'vscode';
import { webviewHtml, webviewOptions } from './webview_html';
import { parseFromWhere, parseGfnText, parseToWhere, type ToWhere, type WhereAnswer } from '../../../webview/shared/where_protocol';
import { activeKvmSession, errorText, type SessionEvents } from '../views/session_events';

export const WHERE_VIEW_TYPE = 'kvmMmu.where';

export class WherePanel {
  static current: WherePanel | undefined;
  private gfn: string | undefined;
  /** The last answer shown (tests read it). */
  answer: WhereAnswer | undefined;
  private readonly answered = new vscode.EventEmitter<WhereAnswer>();
  readonly onDidAnswer = this.answered.event;
  private readonly subs: vscode.Disposable[] = [];

  static show(extensionUri: vscode.Uri, events: SessionEvents, gfn?: string): WherePanel {
    if (WherePanel.current) {
      WherePanel.current.panel.reveal(undefined, true);
      if (gfn) void WherePanel.current.lookup(gfn);
      return WherePanel.current;
    }
    const panel = vscode.window.createWebviewPanel(WHERE_VIEW_TYPE, 'Where is GFN?', { viewColumn: vscode.ViewColumn.Beside, preserveFocus: true }, webviewOptions(extensionUri));
    return new WherePanel(panel, extensionUri, events, gfn);
  }

  constructor(readonly panel: vscode.WebviewPanel, extensionUri: vscode.Uri, events: SessionEvents, gfn?: string) {
    WherePanel.current = this;
    this.gfn = gfn;
    panel.webview.options = webviewOptions(extensionUri);
    panel.webview.html = webviewHtml(panel.webview, extensionUri, 'where', 'Where is GFN?');
    this.subs.push(
      panel.webview.onDidReceiveMessage((m) => this.onMessage(m)),
      panel.onDidDispose(() => this.dispose()),
      events.onStopped(() => {
        if (this.gfn && panel.visible) void this.lookup(this.gfn);
      }),
      panel.onDidChangeViewState((e) => {
        if (e.webviewPanel.visible && this.gfn) void this.lookup(this.gfn);
      }),
    );
  }

  private post(m: ToWhere): void {
    // Validate our own output with the webview's parser: a malformed answer is a bug here, not there.
    const ok = parseToWhere(m);
    void this.panel.webview.postMessage(ok ?? { type: 'error', message: 'internal: malformed answer' });
  }

  async lookup(gfn: string): Promise<WhereAnswer | undefined> {
    this.gfn = gfn;
    this.panel.title = `Where is GFN ${gfn}?`;
    const s = activeKvmSession();
    if (!s) {
      this.post({ type: 'error', gfn, message: 'No KVM MMU debug session is running.' });
      return undefined;
    }
    try {
      const r = (await s.customRequest('kvmMmu/whereIsGfn', { gfn: Number(BigInt(gfn)) })) as WhereAnswer;
      let at: string | undefined;
      try {
        const st = await s.customRequest('stackTrace', { threadId: 1, startFrame: 0, levels: 100 });
        const frames = st?.stackFrames as Array<{ name: string; line: number }> | undefined;
        const bottom = frames?.[frames.length - 1];
        if (bottom) at = `line ${bottom.line}: ${bottom.name}`;
      } catch {
        // Not stopped: no location to show.
      }
      const answer: WhereAnswer = { gfn: r.gfn, gpa: r.gpa, sections: r.sections, at };
      const parsed = parseToWhere({ type: 'answer', answer });
      if (!parsed || parsed.type !== 'answer') throw new Error('malformed kvmMmu/whereIsGfn response');
      this.answer = parsed.answer;
      this.post(parsed);
      this.answered.fire(parsed.answer);
      return parsed.answer;
    } catch (e) {
      const msg = errorText(e);
      this.post({ type: 'error', gfn, message: /not available|unknown request/.test(msg) ? `not available for this VM: ${msg}` : msg });
      return undefined;
    }
  }

  private onMessage(raw: unknown): void {
    const m = parseFromWhere(raw);
    if (!m) return;
    if (m.type === 'ready') {
      const g = this.gfn ?? m.gfn;
      if (g) void this.lookup(g);
    } else if (m.type === 'lookup') {
      const g = parseGfnText(m.text);
      if (!g) this.post({ type: 'error', message: `'${m.text}' is not a gfn (hex) or "gpa 0x..."` });
      else void this.lookup(g);
    } else if (m.type === 'decode') {
      void vscode.commands.executeCommand('kvmMmu.decodeValue', m.request);
    }
  }

  dispose(): void {
    if (WherePanel.current === this) WherePanel.current = undefined;
    for (const s of this.subs) s.dispose();
    this.answered.dispose();
    this.panel.dispose();
  }
}

export function registerWherePanel(context: vscode.ExtensionContext, events: SessionEvents): void {
  const uri = context.extensionUri;
  context.subscriptions.push(
    vscode.commands.registerCommand('kvmMmu.whereIsGfn', async (arg?: string | number | { gfn?: string | number; gpa?: string | number }) => {
      let gfn: string | undefined;
      if (typeof arg === 'number') gfn = '0x' + arg.toString(16);
      else if (typeof arg === 'string') gfn = parseGfnText(arg);
      else if (arg && typeof arg === 'object') {
        if (arg.gfn !== undefined) gfn = parseGfnText(String(typeof arg.gfn === 'number' ? arg.gfn.toString(16) : arg.gfn));
        else if (arg.gpa !== undefined) gfn = parseGfnText(`gpa ${typeof arg.gpa === 'number' ? arg.gpa.toString(16) : arg.gpa}`);
      }
      if (!gfn) {
        const text = await vscode.window.showInputBox({
          prompt: 'Where is GFN...? A gfn in hex, or "gpa 0x1000"',
          placeHolder: '0x1  or  gpa 0x1000',
          validateInput: (t) => (parseGfnText(t) ? undefined : 'a gfn in hex (e.g. 0x1f) or "gpa 0x1f000"'),
        });
        if (text === undefined) return undefined;
        gfn = parseGfnText(text);
      }
      if (!gfn) return undefined;
      const p = WherePanel.show(uri, events);
      return p.lookup(gfn);
    }),
    vscode.window.registerWebviewPanelSerializer(WHERE_VIEW_TYPE, {
      deserializeWebviewPanel: async (panel, state) => {
        const g = state && typeof state === 'object' && typeof (state as { gfn?: unknown }).gfn === 'string' ? parseGfnText((state as { gfn: string }).gfn) : undefined;
        new WherePanel(panel, uri, events, g);
      },
    }),
  );
}
