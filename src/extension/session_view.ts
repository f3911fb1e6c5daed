import * as vscode from 'vscode';

/**
 * The Session view: what the running kvm-mmu debug session is (scenario or trace, state). With no
 * session it is empty, so VS Code shows the view's welcome content.
 */
class SessionTree implements vscode.TreeDataProvider<vscode.TreeItem> {
  private readonly changed = new vscode.EventEmitter<void>();
  readonly onDidChangeTreeData = this.changed.event;

  refresh(): void {
    this.changed.fire();
  }

  getTreeItem(item: vscode.TreeItem): vscode.TreeItem {
    return item;
  }

  getChildren(): vscode.TreeItem[] {
    const s = vscode.debug.activeDebugSession;
    if (!s || s.type !== 'kvm-mmu') return [];
    const c = s.configuration;
    const what = c.program ? `scenario ${c.program}` : `trace ${c.trace}`;
    const item = new vscode.TreeItem(s.name);
    item.description = what;
    item.iconPath = new vscode.ThemeIcon('debug-alt');
    item.tooltip = new vscode.MarkdownString(`**${s.name}**\n\n${what}`);
    return [item];
  }
}

export function registerSessionView(context: vscode.ExtensionContext): void {
  const tree = new SessionTree();
  const view = vscode.window.createTreeView('kvmMmu.session', { treeDataProvider: tree });
  context.subscriptions.push(
    view,
    vscode.debug.onDidStartDebugSession(() => tree.refresh()),
    vscode.debug.onDidTerminateDebugSession(() => tree.refresh()),
    vscode.debug.onDidChangeActiveDebugSession(() => tree.refresh()),
  );
}
