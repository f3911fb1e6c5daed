/**
 * Small state views read at each stop: Memslots & Attributes (every VM), RMP (SEV-SNP VMs) and Stage-2
 * Ownership (pKVM). Each is a list fetched by one custom request; rows expand into their fields. RMP and
 * Stage-2 lists can hold a million rows: they are read a page at a time behind a "more…" node.
 * Which of them is visible is decided by context keys (`kvmMmu.vm.snp`, `kvmMmu.vm.pkvm`).
 */
import * as vscode from 'vscode';
import { activeKvmSession, errorText, type SessionEvents } from './session_events';

export interface RowNode {
  kind: 'row' | 'field' | 'message' | 'group' | 'more';
  label: string;
  description?: string;
  icon?: string;
  tooltip?: vscode.MarkdownString;
  children?: RowNode[];
  contextValue?: string;
  id?: string;
  command?: vscode.Command;
}

type Loader = (session: vscode.DebugSession) => Promise<RowNode[]>;

/** One page of a long list: its nodes and how many rows the whole list has. */
export interface RowsPage {
  nodes: RowNode[];
  total: number;
}
/** A list read in pages of `pageSize` rows from `start`; `empty` stands in when the list has none. */
export interface PagedLoader {
  view: string;
  pageSize: number;
  noun: string;
  empty: RowNode;
  load(session: vscode.DebugSession, start: number, count: number): Promise<RowsPage>;
}

export class RowsTree implements vscode.TreeDataProvider<RowNode> {
  private readonly changed = new vscode.EventEmitter<RowNode | undefined>();
  readonly onDidChangeTreeData = this.changed.event;
  private cache: RowNode[] | undefined;
  /** The read in flight: the view and a caller asking at once must share it, not page twice. */
  private loading: Promise<RowNode[]> | undefined;
  /** Paged lists: rows read so far and the list's length, so "more…" asks for the next page only. */
  private have: RowNode[] = [];
  private total = 0;
  /** Bumped by invalidate: a read that started before it must not land after it. */
  private generation = 0;

  constructor(private readonly load: Loader | PagedLoader) {}

  invalidate(): void {
    this.generation++;
    this.cache = undefined;
    this.loading = undefined;
    this.have = [];
    this.total = 0;
    this.changed.fire(undefined);
  }

  getTreeItem(n: RowNode): vscode.TreeItem {
    const item = new vscode.TreeItem(n.label, n.children?.length ? (n.kind === 'group' ? vscode.TreeItemCollapsibleState.Expanded : vscode.TreeItemCollapsibleState.Collapsed) : vscode.TreeItemCollapsibleState.None);
    item.description = n.description;
    if (n.icon) item.iconPath = new vscode.ThemeIcon(n.icon);
    if (n.tooltip) item.tooltip = n.tooltip;
    if (n.contextValue) item.contextValue = n.contextValue;
    if (n.id) item.id = n.id;
    if (n.command) item.command = n.command;
    return item;
  }

  async getChildren(n?: RowNode): Promise<RowNode[]> {
    if (n) return n.children ?? [];
    const s = activeKvmSession();
    if (!s) return [];
    if (this.cache) return this.cache;
    if (!this.loading) {
      const gen = this.generation;
      const read = (async (): Promise<RowNode[]> => {
        try {
          return typeof this.load === 'function' ? await this.load(s) : await this.page(s, this.load, gen);
        } catch (e) {
          const msg = errorText(e);
          return [{ kind: 'message', label: /not available|cannot answer|unknown request/.test(msg) ? 'not available for this VM' : msg, icon: 'info' }];
        }
      })();
      this.loading = read;
      void read.then((rows) => {
        if (gen !== this.generation || this.loading !== read) return;
        this.cache = rows;
        this.loading = undefined;
      });
    }
    return this.loading;
  }

  /** Load the next page of a paged list (the "more…" node); the tree re-reads its children. */
  async more(): Promise<void> {
    const s = activeKvmSession();
    if (!s || typeof this.load === 'function') return;
    if (this.loading) await this.loading;
    if (this.have.length >= this.total) return;
    const gen = this.generation;
    const read = this.page(s, this.load, gen);
    this.loading = read;
    try {
      const rows = await read;
      if (gen !== this.generation) return;
      this.cache = rows;
    } catch (e) {
      void vscode.window.showErrorMessage(errorText(e));
      return;
    } finally {
      if (this.loading === read) this.loading = undefined;
    }
    this.changed.fire(undefined);
  }

  private async page(s: vscode.DebugSession, p: PagedLoader, gen: number): Promise<RowNode[]> {
    const start = this.have.length;
    const r = await p.load(s, start, p.pageSize);
    // A stop (invalidate) meanwhile: this page belongs to a state the view no longer shows.
    if (gen !== this.generation) return [];
    this.have = this.have.slice(0, start).concat(r.nodes);
    this.total = r.total;
    if (!this.have.length) return [p.empty];
    const left = this.total - this.have.length;
    if (left <= 0) return this.have;
    const more: RowNode = {
      kind: 'more',
      id: `more:${p.view}`,
      label: `more… (${left} more ${p.noun})`,
      icon: 'ellipsis',
      contextValue: 'more',
      command: { command: 'kvmMmu.state.more', title: 'Load more', arguments: [p.view] },
    };
    return [...this.have, more];
  }
}

function fieldsOf(o: Record<string, unknown>, skip: readonly string[] = []): RowNode[] {
  return Object.entries(o)
    .filter(([k, v]) => !skip.includes(k) && v !== undefined && v !== null && typeof v !== 'object')
    .map(([k, v]) => ({ kind: 'field' as const, label: k, description: typeof v === 'number' && k !== 'id' && k !== 'as_id' && k !== 'npages' && k !== 'pages' && k !== 'level' ? `0x${v.toString(16)}` : String(v) }));
}

function mdTable(title: string, o: Record<string, unknown>): vscode.MarkdownString {
  const md = new vscode.MarkdownString();
  md.appendMarkdown(`**${title}**\n\n| | |\n|---|---|\n`);
  for (const [k, v] of Object.entries(o)) {
    if (v === undefined || v === null) continue;
    md.appendMarkdown(`| ${k} | ${Array.isArray(v) ? v.join(' \\| ') : String(v)} |\n`);
  }
  return md;
}

async function loadMemslots(s: vscode.DebugSession): Promise<RowNode[]> {
  const r = (await s.customRequest('kvmMmu/memslots', {})) as {
    slots?: Array<Record<string, unknown>>;
    privateRanges?: Array<{ start: string; end: string }>;
    shadowPages?: Array<Record<string, unknown>>;
    stats?: Record<string, unknown>;
    source?: string;
  };
  const slots = Array.isArray(r?.slots) ? r.slots : [];
  const out: RowNode[] = [];
  const slotNodes: RowNode[] = slots.map((m) => {
    const flags = Array.isArray(m.flagNames) ? (m.flagNames as string[]) : [];
    const label = `slot ${String(m.id)}${Number(m.as_id) ? ` (as ${String(m.as_id)})` : ''}`;
    return {
      kind: 'row',
      id: `slot:${String(m.as_id)}:${String(m.id)}`,
      label,
      description: `${String(m.gpa)}-${String(m.gpa_end)}  ${flags.map((f) => f.replace(/^KVM_MEM_/, '')).join('|')}${m.dirty_logging ? '  dirty-log' : ''}`,
      icon: flags.includes('KVM_MEM_GUEST_MEMFD') ? 'lock' : m.dirty_logging ? 'eye' : 'symbol-namespace',
      tooltip: mdTable(`memslot ${String(m.id)}`, m),
      children: [...fieldsOf(m, ['flagNames']), { kind: 'field', label: 'flags', description: flags.join(' | ') || '0' }],
      contextValue: 'memslot',
    };
  });
  out.push({ kind: 'group', id: 'memslots', label: 'Memslots', description: `${slotNodes.length}${r?.source === 'trace' ? ' inferred (a capture never shows memslots)' : ''}`, icon: 'symbol-namespace', children: slotNodes.length ? slotNodes : [{ kind: 'message', label: 'no memslots yet', icon: 'info' }] });
  const priv = Array.isArray(r?.privateRanges) ? r.privateRanges : [];
  out.push({
    kind: 'group',
    id: 'attributes',
    label: 'Attributes',
    description: priv.length ? `${priv.length} private range${priv.length === 1 ? '' : 's'}` : 'all shared',
    icon: 'shield',
    children: priv.map((p, i) => ({ kind: 'row', id: `priv:${i}`, label: `${p.start}-${p.end}`, description: 'KVM_MEMORY_ATTRIBUTE_PRIVATE', icon: 'lock' })),
  });
  // A replayed trace: what the capture rebuilt besides SPTEs (shadow pages from kvm_mmu_get_page, counts).
  if (Array.isArray(r?.shadowPages)) {
    const sps = r.shadowPages;
    out.push({
      kind: 'group',
      id: 'shadowPages',
      label: 'Shadow pages',
      description: `${sps.length}${sps.length >= 1000 ? '+' : ''} live`,
      icon: 'layers',
      children: sps.map((p, i) => ({ kind: 'row', id: `sp:${i}`, label: `gfn ${String(p.gfn)} L${String(p.level)}`, description: String(p.text ?? ''), icon: p.direct ? 'list-tree' : 'mirror', tooltip: mdTable('shadow page', p), children: fieldsOf(p, ['text']) })),
    });
  }
  if (r?.stats && typeof r.stats === 'object') {
    out.push({ kind: 'group', id: 'stats', label: 'Capture', description: String(r.stats.description ?? ''), icon: 'graph', children: fieldsOf(r.stats, ['description']).map((f) => ({ ...f, description: f.description?.replace(/^0x([0-9a-f]+)$/, (_, h: string) => String(parseInt(h, 16))) })) });
  }
  return out;
}

/** Rows per page of the RMP and Stage-2 lists: one request each, however long the list is. */
export const STATE_PAGE = 200;

const rmpLoader: PagedLoader = {
  view: 'rmp',
  pageSize: STATE_PAGE,
  noun: 'entries',
  empty: { kind: 'message', label: 'no RMP entry is assigned', icon: 'info' },
  async load(s, start, count) {
    const r = (await s.customRequest('kvmMmu/rmp', { start, count })) as { total?: number; rows?: Array<Record<string, unknown>> };
    const rows = Array.isArray(r?.rows) ? r.rows : [];
    const nodes: RowNode[] = rows.map((e, i) => {
      const pfn = typeof e.pfn === 'number' ? e.pfn : start + i;
      const flags = [e.validated ? 'Validated' : 'not validated', e.immutable ? 'Immutable' : '', e.vmsa ? 'VMSA' : ''].filter(Boolean).join(' ');
      return {
        kind: 'row' as const,
        id: `rmp:${pfn}`,
        label: `pfn 0x${pfn.toString(16)}${e.pages === 512 ? `-0x${(pfn + 511).toString(16)}` : ''}`,
        description: `${String(e.pagesize)} gpa ${String(e.gpa)} asid ${String(e.asid)}  ${flags}`,
        icon: e.validated ? 'verified-filled' : 'lock',
        tooltip: mdTable(`RMP entry of pfn 0x${pfn.toString(16)}`, e),
        children: fieldsOf(e),
        contextValue: 'rmp',
      };
    });
    return { nodes, total: typeof r?.total === 'number' ? r.total : nodes.length };
  },
};

const ownershipLoader: PagedLoader = {
  view: 'stage2',
  pageSize: STATE_PAGE,
  noun: 'ranges',
  empty: { kind: 'message', label: 'host stage-2: nothing mapped or annotated yet', icon: 'info' },
  async load(s, start, count) {
    const r = (await s.customRequest('kvmMmu/stage2Ownership', { start, count })) as { total?: number; rows?: Array<Record<string, unknown>> };
    const rows = Array.isArray(r?.rows) ? r.rows : [];
    const nodes: RowNode[] = rows.map((e) => {
      const owner = String(e.owner);
      return {
        kind: 'row',
        id: `s2:${String(e.start)}`,
        label: `${String(e.start)}-${String(e.end)}`,
        description: `${owner}  host ${String(e.host).replace(/^PKVM_(PAGE_)?/, '')}  hyp ${String(e.hyp).replace(/^PKVM_(PAGE_)?/, '')}  ${String(e.pages)} page${e.pages === 1 ? '' : 's'}`,
        icon: owner.startsWith('guest') ? 'vm' : owner === 'hyp' ? 'shield' : e.valid ? 'pass' : 'circle-slash',
        tooltip: mdTable(`host stage-2 ${String(e.start)}-${String(e.end)}`, e),
        children: fieldsOf(e),
        contextValue: 'ownership',
      };
    });
    return { nodes, total: typeof r?.total === 'number' ? r.total : nodes.length };
  },
};

export interface StateViews {
  memslots: RowsTree;
  rmp: RowsTree;
  ownership: RowsTree;
}

export function registerStateViews(context: vscode.ExtensionContext, events: SessionEvents): StateViews {
  const memslots = new RowsTree(loadMemslots);
  const rmp = new RowsTree(rmpLoader);
  const ownership = new RowsTree(ownershipLoader);
  const all = [memslots, rmp, ownership];
  context.subscriptions.push(
    vscode.window.createTreeView('kvmMmu.memslots', { treeDataProvider: memslots }),
    vscode.window.createTreeView('kvmMmu.rmp', { treeDataProvider: rmp }),
    vscode.window.createTreeView('kvmMmu.stage2', { treeDataProvider: ownership }),
    events.onStopped(() => all.forEach((t) => t.invalidate())),
    events.onSessionChanged(() => all.forEach((t) => t.invalidate())),
    vscode.commands.registerCommand('kvmMmu.state.refresh', () => all.forEach((t) => t.invalidate())),
    vscode.commands.registerCommand('kvmMmu.state.more', (view: unknown) => (view === 'rmp' ? rmp.more() : view === 'stage2' ? ownership.more() : undefined)),
  );
  return { memslots, rmp, ownership };
}
