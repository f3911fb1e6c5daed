/**
 * MMU Probes: every probe (a kernel function the engine can stop in) grouped as the registry groups them.
 * The checkbox of a probe is its function breakpoint: checking adds `vscode.FunctionBreakpoint(name)`,
 * unchecking removes it, and breakpoints added or removed elsewhere (Breakpoints view, console) show here.
 */
import * as vscode from 'vscode';
import { mergeProbes, parseProbeResponse, staticProbes, type ProbeEntry } from './probe_catalog';
import { activeKvmSession, type SessionEvents } from './session_events';

/** Groups in the order a KVM developer meets them; others follow alphabetically. */
const GROUP_ORDER = ['fault', 'tdp_mmu', 'shadow_mmu', 'walk', 'spte', 'rmp', 'private', 'stage2', 'pkvm'];

export type ProbeNode = { kind: 'group'; group: string; probes: ProbeEntry[] } | { kind: 'probe'; probe: ProbeEntry };

export function groupProbes(list: readonly ProbeEntry[]): Array<{ group: string; probes: ProbeEntry[] }> {
  const m = new Map<string, ProbeEntry[]>();
  for (const p of list) {
    const g = m.get(p.group);
    if (g) g.push(p);
    else m.set(p.group, [p]);
  }
  const rank = (g: string): number => {
    const i = GROUP_ORDER.indexOf(g);
    return i < 0 ? GROUP_ORDER.length : i;
  };
  return [...m.entries()]
    .sort(([a], [b]) => rank(a) - rank(b) || a.localeCompare(b))
    .map(([group, probes]) => ({ group, probes: probes.sort((a, b) => a.name.localeCompare(b.name)) }));
}

function functionBreakpoints(): Map<string, vscode.FunctionBreakpoint> {
  const m = new Map<string, vscode.FunctionBreakpoint>();
  for (const b of vscode.debug.breakpoints) if (b instanceof vscode.FunctionBreakpoint) m.set(b.functionName, b);
  return m;
}

export class ProbesTree implements vscode.TreeDataProvider<ProbeNode> {
  private readonly changed = new vscode.EventEmitter<ProbeNode | undefined>();
  readonly onDidChangeTreeData = this.changed.event;
  private probes: ProbeEntry[] = staticProbes();
  private fromSession = false;

  refresh(): void {
    this.changed.fire(undefined);
  }

  all(): readonly ProbeEntry[] {
    return this.probes;
  }

  /** Ask the running session for its registry (it knows every engine module it loaded). */
  async loadFromSession(session: vscode.DebugSession | undefined): Promise<void> {
    if (!session) {
      if (this.fromSession) {
        this.probes = staticProbes();
        this.fromSession = false;
        this.refresh();
      }
      return;
    }
    try {
      const extra = parseProbeResponse(await session.customRequest('kvmMmu/probes', {}));
      if (extra.length) {
        this.probes = mergeProbes(staticProbes(), extra);
        this.fromSession = true;
        this.refresh();
      }
    } catch {
      // A session that cannot list probes keeps the static registry.
    }
  }

  getTreeItem(n: ProbeNode): vscode.TreeItem {
    const bps = functionBreakpoints();
    if (n.kind === 'group') {
      const item = new vscode.TreeItem(n.group, vscode.TreeItemCollapsibleState.Expanded);
      const armed = n.probes.filter((p) => bps.has(p.name)).length;
      item.description = armed ? `${armed}/${n.probes.length}` : `${n.probes.length}`;
      item.iconPath = new vscode.ThemeIcon('folder-library');
      item.contextValue = 'probeGroup';
      item.id = `group:${n.group}`;
      return item;
    }
    const p = n.probe;
    const item = new vscode.TreeItem(p.name, vscode.TreeItemCollapsibleState.None);
    const bp = bps.get(p.name);
    item.id = `probe:${p.name}`;
    item.checkboxState = bp ? vscode.TreeItemCheckboxState.Checked : vscode.TreeItemCheckboxState.Unchecked;
    item.description = p.file;
    item.iconPath = new vscode.ThemeIcon(bp ? (bp.enabled ? 'debug-breakpoint-function' : 'debug-breakpoint-function-disabled') : 'symbol-function');
    const md = new vscode.MarkdownString();
    md.appendMarkdown(`**\`${p.name}\`** — ${p.group}\n\n`);
    if (p.doc) md.appendText(p.doc + '\n\n');
    if (p.file) md.appendMarkdown(`*${p.file}*\n\n`);
    if (p.args.length) md.appendMarkdown(`Arguments: ${p.args.map((a) => '`' + a + '`').join(', ')}\n\n`);
    md.appendMarkdown(bp ? 'Function breakpoint set: click to remove.' : 'Click to break in this function.');
    item.tooltip = md;
    item.contextValue = bp ? 'probe.armed' : 'probe';
    item.command = { command: 'kvmMmu.probes.toggle', title: 'Toggle Breakpoint', arguments: [p.name] };
    return item;
  }

  getChildren(n?: ProbeNode): ProbeNode[] {
    if (!n) return groupProbes(this.probes).map((g) => ({ kind: 'group', group: g.group, probes: g.probes }));
    if (n.kind === 'group') return n.probes.map((probe) => ({ kind: 'probe', probe }));
    return [];
  }

  getParent(n: ProbeNode): ProbeNode | undefined {
    if (n.kind === 'group') return undefined;
    const g = groupProbes(this.probes).find((x) => x.group === n.probe.group);
    return g ? { kind: 'group', group: g.group, probes: g.probes } : undefined;
  }
}

export function setProbeBreakpoint(name: string, on: boolean): void {
  const existing = functionBreakpoints().get(name);
  if (on && !existing) vscode.debug.addBreakpoints([new vscode.FunctionBreakpoint(name)]);
  else if (!on && existing) vscode.debug.removeBreakpoints([existing]);
}

export function registerProbesView(context: vscode.ExtensionContext, events: SessionEvents): ProbesTree {
  const tree = new ProbesTree();
  const view = vscode.window.createTreeView('kvmMmu.probes', { treeDataProvider: tree, manageCheckboxStateManually: true, showCollapseAll: true });
  context.subscriptions.push(
    view,
    view.onDidChangeCheckboxState((e) => {
      for (const [node, state] of e.items) {
        if (node.kind === 'probe') setProbeBreakpoint(node.probe.name, state === vscode.TreeItemCheckboxState.Checked);
      }
    }),
    vscode.debug.onDidChangeBreakpoints(() => tree.refresh()),
    events.onSessionChanged((s) => void tree.loadFromSession(s)),
    vscode.commands.registerCommand('kvmMmu.probes.toggle', (arg?: string | ProbeNode) => {
      const name = typeof arg === 'string' ? arg : arg?.kind === 'probe' ? arg.probe.name : undefined;
      if (!name) return;
      setProbeBreakpoint(name, !functionBreakpoints().has(name));
    }),
    vscode.commands.registerCommand('kvmMmu.probes.refresh', () => tree.loadFromSession(activeKvmSession())),
    vscode.commands.registerCommand('kvmMmu.probes.clearAll', () => {
      const names = new Set(tree.all().map((p) => p.name));
      const mine = [...functionBreakpoints().values()].filter((b) => names.has(b.functionName));
      if (mine.length) vscode.debug.removeBreakpoints(mine);
    }),
  );
  void tree.loadFromSession(activeKvmSession());
  return tree;
}
