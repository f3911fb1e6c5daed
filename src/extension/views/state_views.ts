/**
 * Small state views read at each stop: Memslots & Attributes (every VM), RMP (SEV-SNP VMs) and Stage-2
 * Ownership (pKVM). Each is a list fetched by one custom request; rows expand into their fields.
 * Which of them is visible is decided by context keys (`kvmMmu.vm.snp`, `kvmMmu.vm.pkvm`).
 */
import * as vscode from 'vscode';
import { activeKvmSession, errorText, type SessionEvents } from './session_events';

export interface RowNode {
  kind: 'row' | 'field' | 'message' | 'group';
  label: string;
  description?: string;
  icon?: string;
  tooltip?: vscode.MarkdownString;
  children?: RowNode[];
  contextValue?: string;
  id?: string;
}

type Loader = (session: vscode.DebugSession) => Promise<RowNode[]>;

export class RowsTree implements vscode.TreeDataProvider<RowNode> {
  private readonly changed = new vscode.EventEmitter<RowNode | undefined>();
  readonly onDidChangeTreeData = this.changed.event;
  private cache: RowNode[] | undefined;

  constructor(private readonly load: Loader) {}

  invalidate(): void {
    this.cache = undefined;
    this.changed.fire(undefined);
  }

  getTreeItem(n: RowNode): vscode.TreeItem {
    const item = new vscode.TreeItem(n.label, n.children?.length ? (n.kind === 'group' ? vscode.TreeItemCollapsibleState.Expanded : vscode.TreeItemCollapsibleState.Collapsed) : vscode.TreeItemCollapsibleState.None);
    item.description = n.description;
    if (n.icon) item.iconPath = new vscode.ThemeIcon(n.icon);
    if (n.tooltip) item.tooltip = n.tooltip;
    if (n.contextValue) item.contextValue = n.contextValue;
    if (n.id) item.id = n.id;
    return item;
  }

  async getChildren(n?: RowNode): Promise<RowNode[]> {
    if (n) return n.children ?? [];
    const s = activeKvmSession();
    if (!s) return [];
    if (!this.cache) {
      try {
        this.cache = await this.load(s);
      } catch (e) {
        const msg = errorText(e);
        this.cache = [{ kind: 'message', label: /not available|cannot answer|unknown request/.test(msg) ? 'not available for this VM' : msg, icon: 'info' }];
      }
    }
    return this.cache;
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
  const r = (await s.customRequest('kvmMmu/memslots', {})) as { slots?: Array<Record<string, unknown>>; privateRanges?: Array<{ start: string; end: string }> };
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
  out.push({ kind: 'group', id: 'memslots', label: 'Memslots', description: `${slotNodes.length}`, icon: 'symbol-namespace', children: slotNodes.length ? slotNodes : [{ kind: 'message', label: 'no memslots yet', icon: 'info' }] });
  const priv = Array.isArray(r?.privateRanges) ? r.privateRanges : [];
  out.push({
    kind: 'group',
    id: 'attributes',
    label: 'Attributes',
    description: priv.length ? `${priv.length} private range${priv.length === 1 ? '' : 's'}` : 'all shared',
    icon: 'shield',
    children: priv.map((p, i) => ({ kind: 'row', id: `priv:${i}`, label: `${p.start}-${p.end}`, description: 'KVM_MEMORY_ATTRIBUTE_PRIVATE', icon: 'lock' })),
  });
  return out;
}

async function loadRmp(s: vscode.DebugSession): Promise<RowNode[]> {
  const r = (await s.customRequest('kvmMmu/rmp', { start: 0, count: 1000 })) as { total?: number; rows?: Array<Record<string, unknown>> };
  const rows = Array.isArray(r?.rows) ? r.rows : [];
  if (!rows.length) return [{ kind: 'message', label: 'no RMP entry is assigned', icon: 'info' }];
  const out: RowNode[] = rows.map((e, i) => {
    const pfn = typeof e.pfn === 'number' ? e.pfn : i;
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
  if ((r.total ?? 0) > rows.length) out.push({ kind: 'message', label: `${(r.total ?? 0) - rows.length} more entries`, icon: 'ellipsis' });
  return out;
}

async function loadOwnership(s: vscode.DebugSession): Promise<RowNode[]> {
  const r = (await s.customRequest('kvmMmu/stage2Ownership', { start: 0, count: 1000 })) as { total?: number; rows?: Array<Record<string, unknown>> };
  const rows = Array.isArray(r?.rows) ? r.rows : [];
  if (!rows.length) return [{ kind: 'message', label: 'host stage-2: nothing mapped or annotated yet', icon: 'info' }];
  const out: RowNode[] = rows.map((e) => {
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
  if ((r.total ?? 0) > rows.length) out.push({ kind: 'message', label: `${(r.total ?? 0) - rows.length} more ranges`, icon: 'ellipsis' });
  return out;
}

export interface StateViews {
  memslots: RowsTree;
  rmp: RowsTree;
  ownership: RowsTree;
}

export function registerStateViews(context: vscode.ExtensionContext, events: SessionEvents): StateViews {
  const memslots = new RowsTree(loadMemslots);
  const rmp = new RowsTree(loadRmp);
  const ownership = new RowsTree(loadOwnership);
  const all = [memslots, rmp, ownership];
  context.subscriptions.push(
    vscode.window.createTreeView('kvmMmu.memslots', { treeDataProvider: memslots }),
    vscode.window.createTreeView('kvmMmu.rmp', { treeDataProvider: rmp }),
    vscode.window.createTreeView('kvmMmu.stage2', { treeDataProvider: ownership }),
    events.onStopped(() => all.forEach((t) => t.invalidate())),
    events.onSessionChanged(() => all.forEach((t) => t.invalidate())),
    vscode.commands.registerCommand('kvmMmu.state.refresh', () => all.forEach((t) => t.invalidate())),
  );
  return { memslots, rmp, ownership };
}
