/**
 * The views' custom requests answered for a replayed trace: the MMU rebuilt from the capture stands in
 * for the engine's, in the same shapes (kvmMmu/roots, kvmMmu/table, kvmMmu/memslots, kvmMmu/vm), so the
 * MMU Pages and Memslots trees show a capture the way they show a scenario.
 *
 * A capture has no page-table addresses, so tables are named by numbers handed out per rebuilt state
 * (root, level, first gfn); a table lists the SPTEs the capture set in it. Entries whose parent the
 * capture never showed (it started mid-run) are listed in their root's top table, as the Variables view
 * does. Memslots are never traced: they are inferred from the regions the SPTEs cover, and say so.
 */
import type { RebuildSummary, RebuiltSpte } from '../../trace/rebuild';
import { inferSlots } from '../../trace/model_check';
import { eptMasks, nptMasks } from '../../engine/x86/spte';
import { describeSpte } from '../../engine/x86/spte_decode';
import { role_trace_text } from '../../engine/x86/role';
import { hex0x } from '../../engine/bits/u64';
import { spteRowFields } from './spte_row';

/** What a trace program exposes of its rebuilt state (TraceProgram.rebuilt()). */
export interface RebuiltMmu {
  format: 'ept' | 'npt';
  levels: number;
  description: string;
  events: number;
  replayed: number;
  summary: RebuildSummary;
}

const SPAN = [0, 1, 512, 512 * 512, 512 * 512 * 512, 512 ** 4];

interface Table {
  id: number;
  root: number;
  asId: number;
  level: number;
  base: number;
  entries: RebuiltSpte[];
}

/** Tables of one rebuilt state, indexed once (O(SPTEs)); ids are stable for that state only. */
class TableIndex {
  readonly tables: Table[] = [];
  private readonly byKey = new Map<string, Table>();
  readonly rootTable = new Map<number, Table>();

  constructor(m: RebuiltMmu) {
    const s = m.summary;
    const rootLevel = new Map<number, number>();
    for (const r of s.roots) {
      const level = r.sp ? Number.parseInt(r.sp.role, 16) & 0xf : m.levels;
      rootLevel.set(r.id, level >= 1 && level <= 5 ? level : m.levels);
      this.rootTable.set(r.id, this.table(r.id, r.asId, level, 0));
    }
    // Per (root, level): the gfns that hold an entry (numbers, not strings: a million SPTEs stay cheap).
    const present = new Map<number, Set<number>>();
    const gfns = s.sptes.map((e) => Number.parseInt(e.gfn, 16));
    s.sptes.forEach((e, k) => {
      const key = e.root * 8 + e.level;
      let set = present.get(key);
      if (!set) present.set(key, (set = new Set()));
      set.add(gfns[k]!);
    });
    s.sptes.forEach((e, k) => {
      const gfn = gfns[k]!;
      const top = rootLevel.get(e.root) ?? m.levels;
      const up = e.level + 1;
      const parentGfn = gfn - (gfn % (SPAN[up] ?? 1));
      // The parent entry is one level up at the start of this table's range; without it, an orphan.
      const orphan = e.level < top && !present.get(e.root * 8 + up)?.has(parentGfn);
      const t = e.level >= top || orphan ? this.rootTable.get(e.root) : this.table(e.root, e.asId, e.level, parentGfn);
      t?.entries.push(e);
    });
  }

  private table(root: number, asId: number, level: number, base: number): Table {
    const key = `${root}:${level}:${base}`;
    let t = this.byKey.get(key);
    if (!t) {
      t = { id: this.tables.length, root, asId, level, base, entries: [] };
      this.tables.push(t);
      this.byKey.set(key, t);
    }
    return t;
  }

  childOf(e: RebuiltSpte): Table | undefined {
    const t = this.byKey.get(`${e.root}:${e.level - 1}:${Number.parseInt(e.gfn, 16)}`);
    return t && t.entries.length ? t : undefined;
  }
}

const indexes = new WeakMap<RebuildSummary, TableIndex>();

function indexOf(m: RebuiltMmu): TableIndex {
  let ix = indexes.get(m.summary);
  if (!ix) indexes.set(m.summary, (ix = new TableIndex(m)));
  return ix;
}

function masksOf(m: RebuiltMmu) {
  return m.format === 'ept' ? eptMasks({ maxphyaddr: 46 }) : nptMasks({ maxphyaddr: 46 });
}

function halves(spte: string): { lo: number; hi: number } {
  const v = BigInt(spte.startsWith('0x') ? spte : '0x' + spte);
  return { lo: Number(v & 0xffff_ffffn), hi: Number((v >> 32n) & 0xffff_ffffn) };
}

export function traceRoots(m: RebuiltMmu): Record<string, unknown> {
  const ix = indexOf(m);
  return {
    format: m.format,
    mmu: 'tdp',
    source: 'trace',
    roots: m.summary.roots.map((r) => {
      const role = r.sp ? Number.parseInt(r.sp.role, 16) >>> 0 : m.levels;
      const t = ix.rootTable.get(r.id)!;
      return {
        table: t.id,
        hpa: `#${r.id} (capture line ${r.line})`,
        role,
        roleText: r.sp ? role_trace_text(role) : `level ${m.levels} (role not in the capture)`,
        level: t.level,
        as_id: r.asId,
        mirror: false,
        invalid: r.invalid,
        // The capture shows the reference count only in kvm_mmu_get_page's text ("root N"); else unknown (0).
        root_count: Number(/\broot (\d+)/.exec(r.sp?.text ?? '')?.[1] ?? 0),
        entries: t.entries.length,
        sptes: r.sptes,
        gfn: 0,
        direct: true,
        obsolete: r.invalid,
        line: r.line,
      };
    }),
  };
}

export function traceTable(m: RebuiltMmu, id: number, start: number, count: number): Record<string, unknown> {
  const ix = indexOf(m);
  const t = ix.tables[id];
  if (!t || (!t.entries.length && !ix.rootTable.has(t.root))) throw new Error(`no page table ${id} in the state rebuilt from the capture`);
  const masks = masksOf(m);
  // Already in walk order: the summary lists SPTEs by root, level (top first), then gfn.
  const sorted = t.entries;
  const rows = sorted.slice(start, start + count).map((e, k) => {
    const gfn = Number.parseInt(e.gfn, 16);
    const { lo, hi } = halves(e.spte);
    const d = describeSpte(masks, lo, hi, e.level);
    const inRange = e.level === t.level;
    const row: Record<string, unknown> = {
      // Orphans listed in the top table have no slot in it: number them after the 512 entries.
      index: inRange ? Math.floor((gfn - t.base) / (SPAN[t.level] ?? 1)) % 512 : 512 + start + k,
      gfn,
      npages: SPAN[e.level] ?? 1,
      level: e.level,
      ...spteRowFields(d, lo, hi),
      sptep: `capture line ${e.line}`,
      line: e.line,
    };
    if (d.kind === 'nonleaf') {
      const child = ix.childOf(e);
      if (child) row.child = child.id;
    }
    return row;
  });
  return { format: m.format, table: t.id, level: t.level, gfn: t.base, role: 0, roleText: '', as_id: t.asId, total: sorted.length, empty: Math.max(0, 512 - sorted.length), rows };
}

/** Memslots inferred from the 2 MiB regions the rebuilt SPTEs cover (a capture never shows memslots). */
export function traceMemslots(m: RebuiltMmu): Record<string, unknown> {
  const regions = new Set<number>();
  const hugeAt = new Map<number, number>();
  for (const e of m.summary.sptes) {
    if (e.kind !== 'leaf') continue;
    const r = Math.floor(Number.parseInt(e.gfn, 16) / 512);
    regions.add(r);
    if (e.level > 1) hugeAt.set(r, Math.max(hugeAt.get(r) ?? 0, e.level));
  }
  const s = m.summary;
  return {
    arch: 'x86',
    source: 'trace',
    slots: inferSlots(regions, hugeAt).map((x) => ({
      as_id: 0,
      id: x.slot,
      base_gfn: x.gpa / 4096,
      npages: x.size / 4096,
      gpa: '0x' + x.gpa.toString(16),
      gpa_end: '0x' + (x.gpa + x.size - 1).toString(16),
      flags: 0,
      flagNames: [],
      backing: `${x.backing} (inferred from the capture)`,
      inferred: true,
    })),
    privateRanges: [],
    shadowPages: s.shadowPages.slice(0, 1000).map((p) => ({ gfn: '0x' + p.gfn, role: p.role, level: p.level, direct: p.direct, unsync: p.unsync, root_count: p.rootCount, mmu_valid_gen: p.gen, line: p.line, text: p.text })),
    stats: {
      description: m.description,
      events: m.events,
      replayed: m.replayed,
      sptes: s.sptesTotal,
      roots: s.roots.length,
      shadow_pages_live: s.shadowPageCounts.live,
      shadow_pages_created: s.shadowPageCounts.created,
      shadow_pages_zapped: s.shadowPageCounts.zapped,
      faults: s.faults.total,
      fast_page_faults: s.fastPageFaults.total,
      fast_page_faults_fixed: s.fastPageFaults.fixed,
      fast_page_faults_spurious: s.fastPageFaults.spurious,
      guest_walks: s.walks.total,
      findings: s.detectors.length,
    },
  };
}

export function traceVm(m: RebuiltMmu): Record<string, unknown> {
  const vcpus = Object.keys(m.summary.faults.byVcpu).length;
  const shadow = m.summary.shadowPages.some((p) => !p.direct);
  return {
    arch: 'x86',
    vendor: m.format === 'ept' ? 'intel' : 'amd',
    tdp: !shadow,
    tdpLevels: m.levels,
    type: 'default',
    mode: m.description,
    vcpus: Math.max(1, vcpus),
    source: 'trace',
  };
}

/** "Where is GFN X?" in a capture: the inferred memslot and the rebuilt SPTEs that map the gfn, per root. */
export function traceWhere(m: RebuiltMmu, gfn: number): Array<{ title: string; rows: Array<{ key: string; value: string; decode?: { kind: string; value: string; level: number } }>; note?: string }> {
  const masks = masksOf(m);
  const slots = (traceMemslots(m).slots as Array<{ id: number; base_gfn: number; npages: number; gpa: string; gpa_end: string; backing: string }>);
  const slot = slots.find((x) => gfn >= x.base_gfn && gfn < x.base_gfn + x.npages);
  const out: Array<{ title: string; rows: Array<{ key: string; value: string; decode?: { kind: string; value: string; level: number } }>; note?: string }> = [];
  out.push(slot
    ? { title: 'memslot (inferred from the capture)', rows: [{ key: 'slot', value: String(slot.id) }, { key: 'gpa range', value: `${slot.gpa}-${slot.gpa_end}` }, { key: 'host backing', value: slot.backing }], note: 'a capture never shows memslots: this is the range its SPTEs cover' }
    : { title: 'memslot (inferred from the capture)', rows: [], note: 'no rebuilt leaf covers this gfn' });
  const byRoot = new Map<number, RebuiltSpte[]>();
  for (const e of m.summary.sptes) {
    const span = SPAN[e.level] ?? 1;
    if (Number.parseInt(e.gfn, 16) !== gfn - (gfn % span)) continue;
    let l = byRoot.get(e.root);
    if (!l) byRoot.set(e.root, (l = []));
    l.push(e);
  }
  if (!m.summary.roots.length) out.push({ title: 'SPTEs', rows: [], note: 'no root rebuilt yet' });
  for (const r of m.summary.roots) {
    const rows = (byRoot.get(r.id) ?? []).map((e) => {
      const { lo, hi } = halves(e.spte);
      const d = describeSpte(masks, lo, hi, e.level);
      return { key: `level ${e.level}`, value: `${hex0x(lo, hi, 16)}  ${d.kind}${d.large ? ' (huge)' : ''}${d.kind === 'leaf' || d.kind === 'nonleaf' ? ` ${d.traceFlags} pfn ${d.pfn}` : ''}  (capture line ${e.line})`, decode: { kind: m.format === 'ept' ? 'ept-spte' : 'npt-spte', value: hex0x(lo, hi), level: e.level } };
    });
    out.push(rows.length
      ? { title: `SPTEs in root #${r.id} (as ${r.asId}${r.invalid ? ', invalid' : ''})`, rows }
      : { title: `SPTEs in root #${r.id} (as ${r.asId}${r.invalid ? ', invalid' : ''})`, rows, note: 'the capture set no SPTE for this gfn in this root' });
  }
  return out;
}
