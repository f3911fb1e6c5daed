/**
 * Events: the most recent tracepoint events of the active kvm-mmu session, newest first, refreshed at
 * each stop. A filter (name or text substring, as `kvmMmu/events` matches) narrows them; selecting an
 * event reveals the statement that emitted it, and "Go to Event" moves the session there when the
 * adapter supports `kvmMmu/gotoEvent`.
 */
import * as vscode from 'vscode';
import { activeKvmSession, errorText, type SessionEvents } from './session_events';

/** Events per page; older pages load on demand through the "older…" node. */
export const EVENTS_PAGE = 200;

export interface EventRow {
  index: number;
  name: string;
  vcpu: number;
  text: string;
  step: number;
}

export type EventNode = { kind: 'event'; ev: EventRow } | { kind: 'more'; remaining: number } | { kind: 'message'; text: string };

export function parseEventsResponse(body: unknown): { total: number; events: EventRow[] } | undefined {
  if (!body || typeof body !== 'object') return undefined;
  const b = body as Record<string, unknown>;
  if (typeof b.total !== 'number' || !Array.isArray(b.events)) return undefined;
  const events: EventRow[] = [];
  for (const e of b.events) {
    if (!e || typeof e !== 'object') continue;
    const r = e as Record<string, unknown>;
    if (typeof r.index !== 'number' || typeof r.name !== 'string') continue;
    events.push({ index: r.index, name: r.name, vcpu: typeof r.vcpu === 'number' ? r.vcpu : 0, text: typeof r.text === 'string' ? r.text : '', step: typeof r.step === 'number' ? r.step : -1 });
  }
  return { total: b.total, events };
}

export class EventsTree implements vscode.TreeDataProvider<EventNode> {
  private readonly changed = new vscode.EventEmitter<EventNode | undefined>();
  readonly onDidChangeTreeData = this.changed.event;
  /** Loaded events, newest first. */
  private rows: EventRow[] = [];
  private total = 0;
  private message: string | undefined;
  filter = '';
  private generation = 0;

  constructor(private readonly session: () => vscode.DebugSession | undefined) {}

  get loaded(): readonly EventRow[] {
    return this.rows;
  }

  get totalMatching(): number {
    return this.total;
  }

  /** Reload the newest page (after a stop, a filter change, or a new session). */
  async reload(): Promise<void> {
    const gen = ++this.generation;
    const s = this.session();
    if (!s) {
      this.rows = [];
      this.total = 0;
      this.message = undefined;
      this.changed.fire(undefined);
      return;
    }
    try {
      const head = parseEventsResponse(await s.customRequest('kvmMmu/events', { start: 0, count: 0, filter: this.filter }));
      if (!head) throw new Error('malformed kvmMmu/events response');
      const start = Math.max(0, head.total - EVENTS_PAGE);
      const page = parseEventsResponse(await s.customRequest('kvmMmu/events', { start, count: head.total - start, filter: this.filter }));
      if (gen !== this.generation) return;
      this.total = head.total;
      this.rows = (page?.events ?? []).slice().reverse();
      this.message = head.total === 0 ? (this.filter ? `no events match '${this.filter}'` : 'no tracepoint events yet') : undefined;
    } catch (e) {
      if (gen !== this.generation) return;
      this.rows = [];
      this.total = 0;
      this.message = `events not available: ${errorText(e)}`;
    }
    this.changed.fire(undefined);
  }

  async loadOlder(): Promise<void> {
    const s = this.session();
    if (!s) return;
    const end = this.total - this.rows.length;
    if (end <= 0) return;
    const start = Math.max(0, end - EVENTS_PAGE);
    const page = parseEventsResponse(await s.customRequest('kvmMmu/events', { start, count: end - start, filter: this.filter }));
    if (!page) return;
    this.rows = this.rows.concat(page.events.slice().reverse());
    this.changed.fire(undefined);
  }

  getTreeItem(n: EventNode): vscode.TreeItem {
    if (n.kind === 'message') {
      const item = new vscode.TreeItem(n.text);
      item.iconPath = new vscode.ThemeIcon('info');
      return item;
    }
    if (n.kind === 'more') {
      const item = new vscode.TreeItem(`older… (${n.remaining} more)`);
      item.iconPath = new vscode.ThemeIcon('ellipsis');
      item.command = { command: 'kvmMmu.events.loadOlder', title: 'Load older events' };
      item.contextValue = 'more';
      return item;
    }
    const e = n.ev;
    const item = new vscode.TreeItem(e.name);
    item.id = `ev:${e.index}`;
    item.description = `#${e.index} ${e.vcpu >= 0 ? `vcpu${e.vcpu}` : 'vm'}  ${e.text}`;
    item.iconPath = new vscode.ThemeIcon(iconFor(e.name));
    const md = new vscode.MarkdownString();
    md.appendMarkdown(`**${e.name}** — event #${e.index}, ${e.vcpu >= 0 ? `vCPU ${e.vcpu}` : 'VM context (no vCPU)'}, statement ${e.step + 1}\n\n`);
    md.appendCodeblock(`${e.name}: ${e.text}`, 'text');
    item.tooltip = md;
    item.contextValue = 'event';
    item.command = { command: 'kvmMmu.events.reveal', title: 'Reveal Statement', arguments: [e] };
    return item;
  }

  getChildren(n?: EventNode): EventNode[] {
    if (n) return [];
    if (this.message) return [{ kind: 'message', text: this.message }];
    const out: EventNode[] = this.rows.map((ev) => ({ kind: 'event', ev }));
    const remaining = this.total - this.rows.length;
    if (remaining > 0) out.push({ kind: 'more', remaining });
    return out;
  }
}

function iconFor(name: string): string {
  if (/fault|violation|walker_error/.test(name)) return 'warning';
  if (/zap|remove|free|invalidate/.test(name)) return 'trash';
  if (/flush/.test(name)) return 'sync';
  if (/set_spte|spte_requested|split|map/.test(name)) return 'symbol-field';
  if (/rmp|psc|private|attr/.test(name)) return 'shield';
  return 'pulse';
}

async function revealStep(session: vscode.DebugSession, step: number): Promise<void> {
  const loc = (await session.customRequest('kvmMmu/stepLocation', { step })) as { file?: unknown; line?: unknown };
  if (typeof loc?.file !== 'string' || typeof loc.line !== 'number') return;
  const uri = loc.file.startsWith('file:') ? vscode.Uri.parse(loc.file) : vscode.Uri.file(loc.file);
  const doc = await vscode.workspace.openTextDocument(uri);
  const line = Math.max(0, Math.min(doc.lineCount - 1, loc.line - 1));
  const range = doc.lineAt(line).range;
  const editor = await vscode.window.showTextDocument(doc, { preserveFocus: true, preview: true, selection: range });
  editor.revealRange(range, vscode.TextEditorRevealType.InCenterIfOutsideViewport);
}

export function registerEventsView(context: vscode.ExtensionContext, events: SessionEvents): { tree: EventsTree; view: vscode.TreeView<EventNode> } {
  const tree = new EventsTree(activeKvmSession);
  const view = vscode.window.createTreeView('kvmMmu.events', { treeDataProvider: tree });
  const describe = (): void => {
    view.description = tree.filter ? `filter: ${tree.filter}` : undefined;
    void vscode.commands.executeCommand('setContext', 'kvmMmu.events.filtered', !!tree.filter);
  };
  context.subscriptions.push(
    view,
    events.onStopped(() => void tree.reload()),
    events.onSessionChanged(() => void tree.reload()),
    vscode.commands.registerCommand('kvmMmu.events.refresh', () => tree.reload()),
    vscode.commands.registerCommand('kvmMmu.events.loadOlder', () => tree.loadOlder()),
    vscode.commands.registerCommand('kvmMmu.events.filter', async (text?: string) => {
      const f = typeof text === 'string' ? text : await vscode.window.showInputBox({
        prompt: 'Show events whose name or text contains (empty: all)',
        placeHolder: 'kvm_mmu_set_spte, gfn 1f, vcpu ...',
        value: tree.filter,
      });
      if (f === undefined) return;
      tree.filter = f.trim();
      describe();
      await tree.reload();
    }),
    vscode.commands.registerCommand('kvmMmu.events.clearFilter', async () => {
      tree.filter = '';
      describe();
      await tree.reload();
    }),
    vscode.commands.registerCommand('kvmMmu.events.reveal', async (arg?: EventRow | EventNode) => {
      const ev = arg && 'kind' in arg ? (arg.kind === 'event' ? arg.ev : undefined) : (arg as EventRow | undefined);
      const s = activeKvmSession();
      if (!ev || !s || ev.step < 0) return;
      try {
        await revealStep(s, ev.step);
      } catch (e) {
        void vscode.window.showErrorMessage(`Cannot reveal the statement of event #${ev.index}: ${errorText(e)}`);
      }
    }),
    vscode.commands.registerCommand('kvmMmu.events.goto', async (arg?: EventNode | EventRow) => {
      const ev = arg && 'kind' in arg ? (arg.kind === 'event' ? arg.ev : undefined) : (arg as EventRow | undefined) ?? (view.selection[0]?.kind === 'event' ? view.selection[0].ev : undefined);
      const s = activeKvmSession();
      if (!ev || !s) return false;
      try {
        await s.customRequest('kvmMmu/gotoEvent', { index: ev.index });
        return true;
      } catch (e) {
        void vscode.window.showErrorMessage(`Go to event #${ev.index} is not available: ${errorText(e)}`);
        return false;
      }
    }),
  );
  describe();
  void tree.reload();
  return { tree, view };
}
