/**
 * Registers the KVM MMU views and panels (Probes, Events, MMU Pages, Bit Decoder, ...) and keeps the
 * context keys their `when` clauses read in step with the active kvm-mmu session.
 */
import * as vscode from 'vscode';
import { SessionEvents, activeKvmSession } from './session_events';
import { registerProbesView, type ProbesTree } from './probes_view';
import { registerEventsView, type EventsTree, type EventNode } from './events_view';
import { registerDecoderPanel, DecoderPanel } from '../panels/decoder_panel';
import { registerPagesView, type PagesTree, type PageNode } from './pages_view';
import { registerStateViews, type StateViews } from './state_views';
import { registerWherePanel, WherePanel } from '../panels/where_panel';
import { registerPtMapPanel, PtMapPanel } from '../panels/ptmap_panel';
import { registerTimelinePanel, TimelinePanel } from '../panels/timeline_panel';
import { registerWhyCommand } from './why_command';

export interface VmContext {
  arch: string;
  vendor: string;
  type: string;
  mode: string;
  tdp: boolean;
}

export interface KvmMmuViews {
  readonly events: SessionEvents;
  readonly probes: ProbesTree;
  readonly eventsTree: EventsTree;
  readonly eventsView: vscode.TreeView<EventNode>;
  readonly pages: PagesTree;
  readonly pagesView: vscode.TreeView<PageNode>;
  readonly state: StateViews;
  /** The open Bit Decoder panel, if any. */
  decoder(): DecoderPanel | undefined;
  /** The open "Where is GFN X?" panel, if any. */
  where(): WherePanel | undefined;
  /** The open Page-Table Map panel, if any. */
  ptmap(): PtMapPanel | undefined;
  /** The open Timeline panel, if any. */
  timeline(): TimelinePanel | undefined;
  /** VM facts of the active session (undefined without one). */
  vm(): VmContext | undefined;
}

function setContext(key: string, value: unknown): void {
  void vscode.commands.executeCommand('setContext', key, value);
}

export function registerViews(context: vscode.ExtensionContext): KvmMmuViews {
  let vm: VmContext | undefined;
  const events = new SessionEvents();
  context.subscriptions.push(events);
  const probes = registerProbesView(context, events);
  const { tree: eventsTree, view: eventsView } = registerEventsView(context, events);
  registerDecoderPanel(context, () => (!vm || vm.arch !== 'x86' ? undefined : vm.vendor === 'intel' && vm.tdp ? 'ept-spte' : 'npt-spte'));
  const { tree: pages, view: pagesView } = registerPagesView(context, events);
  const state = registerStateViews(context, events);
  registerWherePanel(context, events);
  registerWhyCommand(context);
  registerPtMapPanel(context, events);
  registerTimelinePanel(context, events);

  const applyVm = (v: VmContext | undefined): void => {
    vm = v;
    setContext('kvmMmu.vm.arch', v?.arch ?? '');
    setContext('kvmMmu.vm.type', v?.type ?? '');
    setContext('kvmMmu.vm.snp', v?.type === 'snp');
    setContext('kvmMmu.vm.pkvm', v?.arch === 'arm64' && (v.mode === 'protected' || v.type === 'protected'));
    setContext('kvmMmu.vm.x86', v?.arch === 'x86');
  };
  const refreshVm = async (s: vscode.DebugSession | undefined): Promise<void> => {
    setContext('kvmMmu.sessionActive', !!s);
    if (!s) return applyVm(undefined);
    try {
      const r = (await s.customRequest('kvmMmu/vm', {})) as { vm?: Partial<VmContext> | null };
      const v = r?.vm;
      applyVm(v && typeof v.arch === 'string'
        ? { arch: v.arch, vendor: String(v.vendor ?? ''), type: String(v.type ?? ''), mode: String(v.mode ?? ''), tdp: !!v.tdp }
        : undefined);
    } catch {
      applyVm(undefined);
    }
  };
  context.subscriptions.push(events.onSessionChanged((s) => void refreshVm(s)));
  // The first stop means the worker is up and the program loaded.
  context.subscriptions.push(events.onStopped(({ session }) => {
    if (!vm && session === activeKvmSession()) void refreshVm(session);
  }));
  applyVm(undefined);
  setContext('kvmMmu.sessionActive', false);

  return { events, probes, eventsTree, eventsView, pages, pagesView, state, decoder: () => DecoderPanel.current, where: () => WherePanel.current, ptmap: () => PtMapPanel.current, timeline: () => TimelinePanel.current, vm: () => vm };
}
