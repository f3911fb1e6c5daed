/**
 * The probe registry as the extension sees it without a session: importing the engine modules runs their
 * `defineProbe` calls. The scenario engine bindings pull in every engine they bind, so probes of engines
 * that land later appear without touching this list; the few x86 modules named here are the ones no
 * binding imports yet. A running session's `kvmMmu/probes` answer is authoritative and is merged over this.
 */
import { probes, type ProbeInfo } from '../../engine/probes';
import '../../scenario/engines';
import '../../engine/x86/spte';
import '../../engine/x86/paging_tmpl';
import '../../engine/x86/permission';
import '../../engine/arm64/mmu';
import '../../engine/arm64/pgtable';
import '../../engine/arm64/pkvm_mem_protect';
import '../../engine/arm64/ptdump';

export interface ProbeEntry {
  name: string;
  group: string;
  file: string;
  doc: string;
  args: readonly string[];
}

export function staticProbes(): ProbeEntry[] {
  return probes.all().map((p: ProbeInfo) => ({ name: p.name, group: p.group, file: p.file, doc: p.doc, args: p.args }));
}

/** Validates a `kvmMmu/probes` response body; unknown shapes yield nothing rather than a broken tree. */
export function parseProbeResponse(body: unknown): ProbeEntry[] {
  const list = (body as { probes?: unknown } | undefined)?.probes;
  if (!Array.isArray(list)) return [];
  const out: ProbeEntry[] = [];
  for (const p of list) {
    if (!p || typeof p !== 'object') continue;
    const r = p as Record<string, unknown>;
    if (typeof r.name !== 'string' || typeof r.group !== 'string') continue;
    out.push({
      name: r.name,
      group: r.group,
      file: typeof r.file === 'string' ? r.file : '',
      doc: typeof r.doc === 'string' ? r.doc : '',
      args: Array.isArray(r.args) ? r.args.filter((a): a is string => typeof a === 'string') : [],
    });
  }
  return out;
}

/** Merge: session entries replace static ones of the same name. Sorted by group, then name. */
export function mergeProbes(base: readonly ProbeEntry[], over: readonly ProbeEntry[]): ProbeEntry[] {
  const m = new Map<string, ProbeEntry>();
  for (const p of base) m.set(p.name, p);
  for (const p of over) m.set(p.name, p);
  return [...m.values()].sort((a, b) => a.group.localeCompare(b.group) || a.name.localeCompare(b.name));
}
