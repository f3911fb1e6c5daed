/**
 * MMU Pages: per address space, the TDP MMU roots (role, refcount, valid/invalid, mirror) -> page tables
 * -> SPTEs. Every table is fetched only when expanded (`kvmMmu/table`, one table of at most 512 entries
 * per request) and shown in pages of 256 with an "more…" node, so nothing is ever materialised whole.
 * Entries never written (SHADOW_NONPRESENT_VALUE) are left out; the table's description counts them.
 */
import * as vscode from 'vscode';
import { activeKvmSession, errorText, type SessionEvents } from './session_events';

export const PAGES_PAGE = 256;

export interface RootRow {
  table: number;
  hpa: string;
  role: number;
  roleText: string;
  level: number;
  as_id: number;
  mirror: boolean;
  invalid: boolean;
  root_count: number;
  scheduled_to_zap?: boolean;
  external_spt?: string;
  entries: number;
  /** is_obsolete_sp (shadow MMU: older mmu_valid_gen; TDP MMU: role.invalid). */
  obsolete?: boolean;
  mmu_valid_gen?: number;
}

export interface FieldRow {
  name: string;
  bits: string;
  hex: string;
  value: number;
  meaning: string;
}

export interface SpteRow {
  index: number;
  gfn: number;
  npages: number;
  level: number;
  value: string;
  kind: 'leaf' | 'nonleaf' | 'frozen' | 'mmio' | 'nonpresent';
  large: boolean;
  flags: string;
  pfn: string;
  sptep: string;
  fields: FieldRow[];
  child?: number;
  accessed?: boolean;
  dirty?: boolean;
  mmuWritable?: boolean;
  hostWritable?: boolean;
  mmio?: { gfn: string; generation: string; access: number };
}

export type PageNode =
  | { kind: 'as'; as_id: number; roots: RootRow[]; mmu: string }
  | { kind: 'root'; root: RootRow }
  | { kind: 'spte'; table: number; as_id: number; mirror: boolean; row: SpteRow }
  | { kind: 'more'; table: number; as_id: number; mirror: boolean; remaining: number }
  | { kind: 'message'; text: string; icon?: string };

interface TablePage {
  total: number;
  empty: number;
  rows: SpteRow[];
}

function isObj(v: unknown): v is Record<string, unknown> {
  return !!v && typeof v === 'object';
}

export function parseRoots(body: unknown): { format: string; mmu: string; roots: RootRow[] } | undefined {
  if (!isObj(body) || !Array.isArray(body.roots)) return undefined;
  const roots = body.roots.filter((r): r is RootRow => isObj(r) && typeof r.table === 'number' && typeof r.role === 'number' && typeof r.roleText === 'string');
  return { format: String(body.format ?? 'ept'), mmu: body.mmu === 'shadow' ? 'shadow' : 'tdp', roots };
}

export function parseTable(body: unknown): TablePage | undefined {
  if (!isObj(body) || !Array.isArray(body.rows) || typeof body.total !== 'number') return undefined;
  const rows = body.rows.filter((r): r is SpteRow => isObj(r) && typeof r.index === 'number' && typeof r.gfn === 'number' && typeof r.value === 'string' && typeof r.kind === 'string' && Array.isArray(r.fields));
  return { total: body.total, empty: typeof body.empty === 'number' ? body.empty : 0, rows };
}

const hex = (n: number): string => '0x' + n.toString(16);

function sizeOf(level: number): string {
  return level === 1 ? '4K' : level === 2 ? '2M' : level === 3 ? '1G' : level === 4 ? '512G' : '256T';
}

/** The kind as a KVM developer names it, with the icon and context value of its node. */
export function spteKind(row: SpteRow, mirror: boolean): { text: string; icon: string; color?: string; context: string } {
  switch (row.kind) {
    case 'leaf':
      return row.large
        ? { text: `huge leaf ${sizeOf(row.level)}`, icon: 'symbol-structure', color: 'charts.purple', context: 'spte.hugeLeaf' }
        : { text: 'leaf 4K', icon: 'symbol-constant', color: 'charts.blue', context: 'spte.leaf' };
    case 'nonleaf':
      return { text: mirror ? 'table (mirror)' : 'table', icon: mirror ? 'mirror' : 'list-tree', context: 'spte.table' };
    case 'mmio':
      return { text: 'MMIO', icon: 'plug', color: 'charts.orange', context: 'spte.mmio' };
    case 'frozen':
      return { text: 'FROZEN_SPTE', icon: 'lock', color: 'charts.red', context: 'spte.frozen' };
    default:
      return { text: 'non-present', icon: 'circle-outline', context: 'spte.nonpresent' };
  }
}

/** Data breakpoint id for an SPTE, as the adapter's data breakpoints name them (spte:AS:GFNHEX:LEVEL). */
export function spteDataId(as_id: number, gfn: number, level: number): string {
  return `spte:${as_id}:${gfn.toString(16)}:${level}`;
}

export class PagesTree implements vscode.TreeDataProvider<PageNode> {
  private readonly changed = new vscode.EventEmitter<PageNode | undefined>();
  readonly onDidChangeTreeData = this.changed.event;
  /** Per table pfn: the rows loaded so far and the total. Cleared at every stop. */
  private readonly tables = new Map<number, TablePage>();
  private rootsCache: { format: string; mmu: string; roots: RootRow[] } | undefined;
  private error: string | undefined;
  format = 'ept';
  /** Data ids of the SPTE watches the adapter holds (kvmMmu/dataBreakpoints), marked on their nodes. */
  watched = new Set<string>();
  private generation = 0;

  constructor(private readonly session: () => vscode.DebugSession | undefined) {}

  /** Forget everything read: the next expansion reads the engine again. */
  invalidate(): void {
    this.generation++;
    this.tables.clear();
    this.parents.clear();
    this.rootsCache = undefined;
    this.error = undefined;
    this.changed.fire(undefined);
  }

  /** Mirror the adapter's watches: a node shows it is watched however the watch was added. */
  async readWatches(s: vscode.DebugSession, gen = this.generation): Promise<void> {
    try {
      const r = (await s.customRequest('kvmMmu/dataBreakpoints', {})) as { breakpoints?: Array<{ dataId?: unknown }> };
      const ids = new Set((r?.breakpoints ?? []).map((b) => b.dataId).filter((d): d is string => typeof d === 'string' && d.startsWith('spte:')));
      const same = ids.size === this.watched.size && [...ids].every((d) => this.watched.has(d));
      if (gen !== this.generation || same) return;
      this.watched = ids;
      this.changed.fire(undefined);
    } catch {
      // An adapter without watches (or one that ended): nothing to mark.
    }
  }

  private async roots(): Promise<{ format: string; mmu: string; roots: RootRow[] } | undefined> {
    if (this.rootsCache) return this.rootsCache;
    const s = this.session();
    if (!s) return undefined;
    const gen = this.generation;
    try {
      const r = parseRoots(await s.customRequest('kvmMmu/roots', {}));
      if (!r) throw new Error('malformed kvmMmu/roots response');
      if (gen === this.generation) {
        this.rootsCache = r;
        void this.readWatches(s, gen);
        this.format = r.format;
        this.error = undefined;
      }
      return r;
    } catch (e) {
      const msg = errorText(e);
      this.error = /not available|cannot answer|unknown request/.test(msg) ? 'not available for this VM' : msg;
      return undefined;
    }
  }

  private async table(pfn: number, upTo: number): Promise<TablePage> {
    const have = this.tables.get(pfn);
    if (have && (have.rows.length >= upTo || have.rows.length >= have.total)) return have;
    const s = this.session();
    if (!s) return { total: 0, empty: 0, rows: [] };
    const start = have?.rows.length ?? 0;
    const page = parseTable(await s.customRequest('kvmMmu/table', { table: pfn, start, count: Math.max(PAGES_PAGE, upTo - start) }));
    if (!page) throw new Error('malformed kvmMmu/table response');
    const merged: TablePage = { total: page.total, empty: page.empty, rows: (have?.rows ?? []).concat(page.rows) };
    this.tables.set(pfn, merged);
    return merged;
  }

  /** Load the next page of a table (the "more…" node). */
  async more(pfn: number): Promise<void> {
    const have = this.tables.get(pfn);
    await this.table(pfn, (have?.rows.length ?? 0) + PAGES_PAGE);
    this.changed.fire(undefined);
  }

  getTreeItem(n: PageNode): vscode.TreeItem {
    const C = vscode.TreeItemCollapsibleState;
    switch (n.kind) {
      case 'message': {
        const item = new vscode.TreeItem(n.text, C.None);
        item.iconPath = new vscode.ThemeIcon(n.icon ?? 'info');
        return item;
      }
      case 'as': {
        const item = new vscode.TreeItem(n.as_id === 0 ? 'address space 0' : `address space ${n.as_id} (SMM)`, C.Expanded);
        item.id = `as:${n.as_id}`;
        item.description = `${n.roots.length} root${n.roots.length === 1 ? '' : 's'}${n.mmu === 'shadow' ? ' (shadow MMU)' : ''}`;
        item.iconPath = new vscode.ThemeIcon('server-environment');
        item.contextValue = 'addressSpace';
        return item;
      }
      case 'root': {
        const r = n.root;
        const state = r.invalid ? 'invalid' : r.obsolete ? 'obsolete' : 'valid';
        const item = new vscode.TreeItem(`${r.mirror ? 'mirror root' : 'root'} ${r.hpa}`, r.entries > 0 ? C.Collapsed : C.None);
        item.id = `root:${r.table}`;
        item.description = `${r.roleText}  refcount ${r.root_count}  ${state}${r.scheduled_to_zap ? ' (to zap)' : ''}`;
        item.iconPath = new vscode.ThemeIcon(r.mirror ? 'mirror' : 'root-folder', r.invalid || r.obsolete ? new vscode.ThemeColor('disabledForeground') : undefined);
        const md = new vscode.MarkdownString();
        md.appendMarkdown(`**${r.mirror ? 'Mirror root' : 'Root'}** at hpa \`${r.hpa}\` — as_id ${r.as_id}\n\n`);
        md.appendMarkdown(`| | |\n|---|---|\n| role | \`0x${r.role.toString(16)}\` ${r.roleText} |\n| tdp_mmu_root_count | ${r.root_count} |\n| role.invalid | ${r.invalid ? 1 : 0} |\n| entries in use | ${r.entries} of 512 |\n`);
        if (r.external_spt) md.appendMarkdown(`| external_spt | \`${r.external_spt}\` |\n`);
        if (r.mmu_valid_gen !== undefined) md.appendMarkdown(`| mmu_valid_gen | ${r.mmu_valid_gen}${r.obsolete ? ' (obsolete)' : ''} |\n`);
        item.tooltip = md;
        item.contextValue = r.invalid ? 'root.invalid' : r.obsolete ? 'root.obsolete' : 'root';
        return item;
      }
      case 'more': {
        const item = new vscode.TreeItem(`more… (${n.remaining} more entries)`, C.None);
        item.id = `more:${n.table}`;
        item.iconPath = new vscode.ThemeIcon('ellipsis');
        item.command = { command: 'kvmMmu.pages.more', title: 'Load more entries', arguments: [n.table] };
        item.contextValue = 'more';
        return item;
      }
      case 'spte': {
        const r = n.row;
        const k = spteKind(r, n.mirror);
        const last = r.gfn + r.npages - 1;
        const item = new vscode.TreeItem(`[${r.index}] gfn ${hex(r.gfn)}${r.npages > 1 ? `-${hex(last)}` : ''}`, r.child !== undefined ? C.Collapsed : C.None);
        item.id = `spte:${n.table}:${r.index}`;
        const bits = r.kind === 'leaf' || r.kind === 'nonleaf' ? `${r.flags} pfn ${r.pfn}${r.accessed ? ' A' : ''}${r.dirty ? ' D' : ''}${r.kind === 'leaf' && r.mmuWritable ? ' mmu-w' : ''}` : r.kind === 'mmio' && r.mmio ? `gen ${r.mmio.generation}` : '';
        item.description = `L${r.level} ${k.text}  ${bits}`.trimEnd();
        item.iconPath = new vscode.ThemeIcon(k.icon, k.color ? new vscode.ThemeColor(k.color) : undefined);
        const md = new vscode.MarkdownString();
        md.appendMarkdown(`**${k.text}** \`${r.value}\` — level ${r.level}, index ${r.index}, sptep \`${r.sptep}\`\n\n`);
        md.appendMarkdown(`gfn \`${hex(r.gfn)}\`${r.npages > 1 ? `..\`${hex(last)}\` (${r.npages} pages)` : ''}\n\n`);
        md.appendMarkdown('| field | bits | value | meaning |\n|---|---|---|---|\n');
        for (const f of [...r.fields].sort((a, b) => (a.bits < b.bits ? 1 : -1))) {
          if (f.value === 0 && r.kind !== 'mmio') continue;
          md.appendMarkdown(`| ${f.name} | ${f.bits} | ${f.hex} | ${f.meaning.replace(/\|/g, '\\|')} |\n`);
        }
        item.tooltip = md;
        item.contextValue = k.context;
        if (this.watched.has(spteDataId(n.as_id, r.gfn, r.level))) {
          item.description = `${item.description}  (watched)`;
          item.contextValue = `${k.context}.watched`;
        }
        return item;
      }
    }
  }

  /** Parents of the nodes handed out so far (reveal walks up through getParent). */
  private readonly parents = new Map<string, PageNode | undefined>();

  getParent(n: PageNode): PageNode | undefined {
    return this.parents.get(nodeKey(n));
  }

  async getChildren(n?: PageNode): Promise<PageNode[]> {
    const kids = await this.children(n);
    for (const k of kids) this.parents.set(nodeKey(k), n);
    return kids;
  }

  private async children(n?: PageNode): Promise<PageNode[]> {
    if (!n) {
      if (!this.session()) return [];
      const r = await this.roots();
      if (!r) return [{ kind: 'message', text: this.error ?? 'no MMU state yet' }];
      if (r.roots.length === 0) return [{ kind: 'message', text: 'no roots yet: the first fault allocates one' }];
      const ases = [...new Set(r.roots.map((x) => x.as_id))].sort();
      return ases.map((as_id) => ({ kind: 'as', as_id, mmu: r.mmu, roots: r.roots.filter((x) => x.as_id === as_id) }));
    }
    if (n.kind === 'as') return n.roots.map((root) => ({ kind: 'root', root }));
    let pfn: number | undefined;
    let as_id = 0;
    let mirror = false;
    if (n.kind === 'root') {
      pfn = n.root.table;
      as_id = n.root.as_id;
      mirror = n.root.mirror;
    } else if (n.kind === 'spte' && n.row.child !== undefined) {
      pfn = n.row.child;
      as_id = n.as_id;
      mirror = n.mirror;
    }
    if (pfn === undefined) return [];
    try {
      const t = await this.table(pfn, PAGES_PAGE);
      const out: PageNode[] = t.rows.map((row) => ({ kind: 'spte', table: pfn!, as_id, mirror, row }));
      if (t.total > t.rows.length) out.push({ kind: 'more', table: pfn, as_id, mirror, remaining: t.total - t.rows.length });
      if (out.length === 0) out.push({ kind: 'message', text: 'all 512 entries are SHADOW_NONPRESENT_VALUE', icon: 'circle-outline' });
      return out;
    } catch (e) {
      return [{ kind: 'message', text: errorText(e), icon: 'warning' }];
    }
  }
}

function nodeKey(n: PageNode): string {
  switch (n.kind) {
    case 'as':
      return `as:${n.as_id}`;
    case 'root':
      return `root:${n.root.table}`;
    case 'spte':
      return `spte:${n.table}:${n.row.index}`;
    case 'more':
      return `more:${n.table}`;
    default:
      return `msg:${n.text}`;
  }
}

export function registerPagesView(context: vscode.ExtensionContext, events: SessionEvents): { tree: PagesTree; view: vscode.TreeView<PageNode> } {
  const tree = new PagesTree(activeKvmSession);
  const view = vscode.window.createTreeView('kvmMmu.pages', { treeDataProvider: tree, showCollapseAll: true });
  const spteOf = (n?: PageNode): (PageNode & { kind: 'spte' }) | undefined => {
    const x = n ?? view.selection[0];
    return x?.kind === 'spte' ? x : undefined;
  };
  context.subscriptions.push(
    view,
    events.onStopped(() => tree.invalidate()),
    events.onSessionChanged(() => tree.invalidate()),
    vscode.commands.registerCommand('kvmMmu.pages.refresh', () => tree.invalidate()),
    vscode.commands.registerCommand('kvmMmu.pages.more', (pfn: number) => (typeof pfn === 'number' ? tree.more(pfn) : undefined)),
    vscode.commands.registerCommand('kvmMmu.pages.decode', (n?: PageNode) => {
      const s = spteOf(n);
      if (!s) return undefined;
      return vscode.commands.executeCommand('kvmMmu.decodeValue', { kind: tree.format === 'npt' ? 'npt-spte' : 'ept-spte', value: s.row.value, level: s.row.level });
    }),
    vscode.commands.registerCommand('kvmMmu.pages.whereIsGfn', (n?: PageNode) => {
      const s = spteOf(n);
      return s ? vscode.commands.executeCommand('kvmMmu.whereIsGfn', { gfn: s.row.gfn }) : undefined;
    }),
    vscode.commands.registerCommand('kvmMmu.pages.copyValue', async (n?: PageNode) => {
      const s = spteOf(n);
      if (!s) return undefined;
      await vscode.env.clipboard.writeText(s.row.value);
      return s.row.value;
    }),
    vscode.commands.registerCommand('kvmMmu.pages.breakOnChange', async (n?: PageNode) => {
      const s = spteOf(n);
      const session = activeKvmSession();
      if (!s || !session) return undefined;
      const dataId = spteDataId(s.as_id, s.row.gfn, s.row.level);
      try {
        // Additive: DAP setDataBreakpoints would replace the data breakpoints VS Code already holds.
        const r = (await session.customRequest('kvmMmu/addDataBreakpoint', { dataId })) as { breakpoint?: { verified?: boolean; message?: string } };
        const mine = r?.breakpoint;
        if (!mine || mine.verified === false) throw new Error(mine?.message ?? 'refused');
        await tree.readWatches(session);
        void vscode.window.showInformationMessage(`Breaks when the SPTE of gfn ${hex(s.row.gfn)} at level ${s.row.level} changes (${dataId}).`);
        return dataId;
      } catch (e) {
        void vscode.window.showErrorMessage(`Cannot watch ${dataId}: ${errorText(e)}`);
        return undefined;
      }
    }),
    vscode.commands.registerCommand('kvmMmu.pages.unwatch', async (n?: PageNode) => {
      const s = spteOf(n);
      const session = activeKvmSession();
      if (!s || !session) return undefined;
      const dataId = spteDataId(s.as_id, s.row.gfn, s.row.level);
      try {
        const r = (await session.customRequest('kvmMmu/removeDataBreakpoint', { dataId })) as { removed?: boolean };
        await tree.readWatches(session);
        return r?.removed ? dataId : undefined;
      } catch (e) {
        void vscode.window.showErrorMessage(`Cannot stop watching ${dataId}: ${errorText(e)}`);
        return undefined;
      }
    }),
  );
  return { tree, view };
}
