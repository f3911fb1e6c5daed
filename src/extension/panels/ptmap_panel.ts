/**
 * Page-Table Map panel: all tables of one TDP MMU root, or of an arm64 stage-2, drawn on a virtualised
 * canvas (see webview/ptmap). The extension reads `kvmMmu/tableMap` (x86) or `kvmMmu/stage2Map` (arm64)
 * at each stop while the panel is visible.
 */
import * as vscode from 'vscode';
import { webviewHtml, webviewOptions } from './webview_html';
import { parseFromMap, parseToMap, type MapData, type ToMap } from '../../../webview/shared/ptmap_protocol';
import { activeKvmSession, errorText, type SessionEvents } from '../views/session_events';

export const PTMAP_VIEW_TYPE = 'kvmMmu.pageTableMap';

export class PtMapPanel {
  static current: PtMapPanel | undefined;
  private root: number | undefined;
  map: MapData | undefined;
  rendered: { tables: number; drawn: number } | undefined;
  private readonly renderedEmitter = new vscode.EventEmitter<{ tables: number; drawn: number }>();
  readonly onDidRender = this.renderedEmitter.event;
  private readonly subs: vscode.Disposable[] = [];

  static show(extensionUri: vscode.Uri, events: SessionEvents, root?: number): PtMapPanel {
    if (PtMapPanel.current) {
      if (root !== undefined) PtMapPanel.current.root = root;
      PtMapPanel.current.panel.reveal(undefined, false);
      return PtMapPanel.current;
    }
    const panel = vscode.window.createWebviewPanel(PTMAP_VIEW_TYPE, 'Page-Table Map', { viewColumn: vscode.ViewColumn.Beside, preserveFocus: false }, webviewOptions(extensionUri));
    return new PtMapPanel(panel, extensionUri, events, root);
  }

  constructor(readonly panel: vscode.WebviewPanel, extensionUri: vscode.Uri, events: SessionEvents, root?: number) {
    PtMapPanel.current = this;
    this.root = root;
    panel.webview.options = webviewOptions(extensionUri);
    panel.webview.html = webviewHtml(panel.webview, extensionUri, 'ptmap', 'Page-Table Map');
    this.subs.push(
      panel.webview.onDidReceiveMessage((m) => this.onMessage(m)),
      panel.onDidDispose(() => this.dispose()),
      events.onStopped(() => {
        if (panel.visible) void this.refresh();
      }),
      events.onSessionChanged(() => {
        if (panel.visible) void this.refresh();
      }),
      panel.onDidChangeViewState((e) => {
        if (e.webviewPanel.visible) void this.refresh();
      }),
    );
  }

  private post(m: ToMap): void {
    void this.panel.webview.postMessage(m);
  }

  async refresh(): Promise<MapData | undefined> {
    const s = activeKvmSession();
    if (!s) {
      this.post({ type: 'error', message: 'No KVM MMU debug session is running.' });
      return undefined;
    }
    try {
      const raw = await this.read(s);
      const parsed = parseToMap({ type: 'map', map: raw });
      if (!parsed || parsed.type !== 'map') throw new Error('malformed kvmMmu/tableMap response');
      this.map = parsed.map;
      this.root = parsed.map.root >= 0 ? parsed.map.root : undefined;
      this.panel.title = `Page-Table Map (${parsed.map.tables.length} tables)`;
      this.post(parsed);
      return parsed.map;
    } catch (e) {
      const msg = errorText(e);
      this.post({ type: 'error', message: /not available|unknown request/.test(msg) ? 'not available for this VM' : msg });
      return undefined;
    }
  }

  /** The x86 map, else the arm64 stage-2 map (an arm64 VM answers the first with 'no x86 MMU'). */
  private async read(s: vscode.DebugSession): Promise<Record<string, unknown>> {
    const args = { root: this.root ?? -1, maxTables: 8192 };
    try {
      const map = (await s.customRequest('kvmMmu/tableMap', args)) as Record<string, unknown>;
      return { ...map, walk: await this.currentFault(s) };
    } catch (e) {
      if (!/no x86 MMU/.test(errorText(e))) throw e;
      return (await s.customRequest('kvmMmu/stage2Map', args)) as Record<string, unknown>;
    }
  }

  /** The page of the x86 current fault ("Why?"'s), whose walk the map highlights; none before a fault. */
  private async currentFault(s: vscode.DebugSession): Promise<{ gfn: number; label: string } | undefined> {
    try {
      const r = (await s.customRequest('kvmMmu/why', {})) as { fault?: { vcpu?: number; gpa?: string; gfn?: string; ret_pf?: string } | null };
      const f = r.fault;
      const gfn = f && typeof f.gfn === 'string' ? Number.parseInt(f.gfn, 16) : NaN;
      if (!f || !Number.isSafeInteger(gfn)) return undefined;
      return { gfn, label: `current fault: vCPU ${f.vcpu ?? '?'} gpa ${f.gpa ?? '?'} ${f.ret_pf ?? ''}`.trim() };
    } catch {
      return undefined;
    }
  }

  private onMessage(raw: unknown): void {
    const m = parseFromMap(raw);
    if (!m) return;
    if (m.type === 'ready') {
      if (this.root === undefined && m.root !== undefined) this.root = m.root;
      void this.refresh();
    } else if (m.type === 'selectRoot') {
      this.root = m.root;
      void this.refresh();
    } else if (m.type === 'where') {
      void vscode.commands.executeCommand('kvmMmu.whereIsGfn', m.gfn);
    } else if (m.type === 'rendered') {
      this.rendered = { tables: m.tables, drawn: m.drawn };
      this.renderedEmitter.fire(this.rendered);
    }
  }

  dispose(): void {
    if (PtMapPanel.current === this) PtMapPanel.current = undefined;
    for (const s of this.subs) s.dispose();
    this.renderedEmitter.dispose();
    this.panel.dispose();
  }
}

export function registerPtMapPanel(context: vscode.ExtensionContext, events: SessionEvents): void {
  const uri = context.extensionUri;
  context.subscriptions.push(
    vscode.commands.registerCommand('kvmMmu.showPageTableMap', async (arg?: { kind?: string; root?: { table?: unknown } }) => {
      // From the MMU Pages view: a root node opens the map of that root.
      const root = arg?.kind === 'root' && typeof arg.root?.table === 'number' ? arg.root.table : undefined;
      const p = PtMapPanel.show(uri, events, root);
      return p.refresh();
    }),
    vscode.window.registerWebviewPanelSerializer(PTMAP_VIEW_TYPE, {
      deserializeWebviewPanel: async (panel, state) => {
        const root = state && typeof state === 'object' && typeof (state as { root?: unknown }).root === 'number' ? (state as { root: number }).root : undefined;
        new PtMapPanel(panel, uri, events, root);
      },
    }),
  );
}
