/**
 * Custom requests the views use to read MMU state from a paused (or finished) session. Each answers
 * from the program's engine through `DebugProgram.query` (the same subjects `expect` uses), paged.
 */
import type { DebugProgram } from '../program';
import { configOf, loadScenario, nodeReader } from '../../scenario';
import type { Kvm, KvmMmuPage } from '../../engine/x86/index';
import { describeSpte } from '../../engine/x86/spte_decode';
import { classifySpte } from '../../engine/x86/spte';
import { to_kvm_sev_info, type SnpRmpTable } from '../../engine/x86/sev_snp';
import { role_trace_text } from '../../engine/x86/role';
import { hex0x } from '../../engine/bits/u64';
import { spteRowFields } from './spte_row';
import type { Arm64Vm } from '../../engine/arm64/mmu';
import { dirty_bitmap_test, host_pfn_mapping_level, kvm_slot_dirty_track_enabled, lpage_info_slot } from '../../engine/x86/memslot';
import { kvm_mmu_max_mapping_level } from '../../engine/x86/mmu';
import { KVM_PGTABLE_WALK_LEAF, kvm_pgtable_walk, type KvmPgtableVisitCtx } from '../../engine/arm64/pgtable';
import { pageStateName } from '../../engine/arm64/pkvm_mem_protect';
import { ownerName } from '../../engine/arm64/variants';
import { traceMemslots, traceRoots, traceTable, traceVm, traceWhere } from './trace_views';
import { currentFaultVcpu, explainFault, type WhyFault } from './why';
import { explainTraceFault } from './why_trace';
import type { KvmVcpu } from '../../engine/x86/vcpu';

export interface QueryContext {
  program: DebugProgram;
}

/** What the views need to know about the VM to choose which of them apply (context keys). */
export interface VmSummary {
  arch: string;
  vendor: string;
  tdp: boolean;
  tdpLevels: number;
  /** default | sw_protected | snp | tdx | protected */
  type: string;
  mode: string;
  vcpus: number;
}

const vmCache = new WeakMap<DebugProgram, VmSummary | null>();

function vmOf(program: DebugProgram): VmSummary | null {
  if (vmCache.has(program)) return vmCache.get(program) ?? null;
  let r: VmSummary | null = null;
  if (program.kind === 'scenario') {
    try {
      const loaded = loadScenario(program.file, nodeReader);
      const c = configOf(loaded.statements);
      r = { arch: c.arch, vendor: c.vendor, tdp: c.tdp, tdpLevels: c.tdpLevels, type: c.type, mode: c.mode, vcpus: c.vcpus };
    } catch {
      r = null;
    }
  }
  vmCache.set(program, r);
  return r;
}

function int(v: unknown, dflt: number, min = 0, max = Number.MAX_SAFE_INTEGER): number {
  const n = typeof v === 'number' ? v : typeof v === 'string' && v.trim() !== '' ? Number(v) : NaN;
  return Number.isInteger(n) ? Math.min(max, Math.max(min, n)) : dflt;
}

// ---------------------------------------------------------------------------------------------------
// MMU Pages: roots -> tables -> SPTEs, one table (at most 512 entries) per request, paged.

/** The x86 `Kvm` behind the scenario's engine binding, if this session runs the x86 model. */
function x86Kvm(program: DebugProgram): Kvm | undefined {
  const vm = (program.state() as { VM?: { vm?: { kvm?: Kvm } } }).VM?.vm;
  const kvm = vm?.kvm;
  return kvm && Array.isArray(kvm.arch?.tdp_mmu_roots) && kvm.pool && typeof kvm.pool.sp_of_pfn === 'function' ? kvm : undefined;
}

/**
 * The MMU a view walks: the TDP MMU's roots, or with shadow paging (tdp=off) the shadow MMU's root pages
 * (active_mmu_pages with a root_count). `spOf` resolves a table pfn the way spte_to_child_sp does.
 */
interface MmuView {
  kvm: Kvm;
  shadow: boolean;
  roots: KvmMmuPage[];
  spOf(pfn: number): KvmMmuPage | undefined;
}

function mmuOf(program: DebugProgram): MmuView | undefined {
  const kvm = x86Kvm(program);
  if (!kvm) return undefined;
  const sk = (program.state() as { VM?: { vm?: { sk?: { active_list?: () => KvmMmuPage[]; sp_of_pfn?: (pfn: number) => KvmMmuPage | undefined } } } }).VM?.vm?.sk;
  if (sk && typeof sk.active_list === 'function' && typeof sk.sp_of_pfn === 'function') {
    const roots = sk.active_list().filter((sp) => sp.root_count > 0 && !sp.freed);
    return { kvm, shadow: true, roots, spOf: (pfn) => sk.sp_of_pfn!(pfn) };
  }
  return { kvm, shadow: false, roots: kvm.arch.tdp_mmu_roots, spOf: (pfn) => kvm.pool.sp_of_pfn(pfn) };
}

/** The first gfn entry `i` of `sp` maps: linear for direct pages, the shadowed translation otherwise. */
function entryGfn(sp: KvmMmuPage, i: number, level: number): number {
  if ((sp.role & 0x80) === 0 && sp.shadowed_translation) return Math.floor(sp.shadowed_translation[i]! / 4096);
  return sp.gfn + i * pagesPer(level);
}

/** Pages a level-`level` SPTE maps (KVM_PAGES_PER_HPAGE). */
function pagesPer(level: number): number {
  return Math.pow(512, level - 1);
}

/** SHADOW_NONPRESENT_VALUE of this VM's format: what an entry nothing was ever installed in holds. */
function isInitialNonPresent(kvm: Kvm, lo: number, hi: number): boolean {
  // EPT: SVE (bit 63) alone when #VE is possible, else 0; NPT: 0 (bit 63 alone reads the same way).
  return lo === 0 && (hi === 0 || hi === 0x8000_0000);
}

function rootRow(kvm: Kvm, r: KvmMmuPage): Record<string, unknown> {
  let present = 0;
  for (let i = 0; i < 1024; i += 2) if (!isInitialNonPresent(kvm, r.spt[i]!, r.spt[i + 1]!)) present++;
  return {
    table: r.spt_pfn,
    hpa: '0x' + (r.spt_pfn * 4096).toString(16),
    role: r.role >>> 0,
    roleText: role_trace_text(r.role),
    level: r.role & 0xf,
    as_id: r.role >>> 24 !== 0 ? 1 : 0,
    mirror: (r.role & 0x8_0000) !== 0,
    invalid: (r.role & 0x800) !== 0,
    root_count: r.root_count,
    scheduled_to_zap: r.tdp_mmu_scheduled_root_to_zap,
    external_spt: r.external_spt ? '0x' + r.external_spt.toString(16) : undefined,
    entries: present,
  };
}

function tableRows(mmu: MmuView, sp: KvmMmuPage, start: number, count: number, all: boolean): { total: number; empty: number; rows: Array<Record<string, unknown>> } {
  const kvm = mmu.kvm;
  const level = sp.role & 0xf;
  const idx: number[] = [];
  for (let i = 0; i < 512; i++) if (all || !isInitialNonPresent(kvm, sp.spt[2 * i]!, sp.spt[2 * i + 1]!)) idx.push(i);
  const rows: Array<Record<string, unknown>> = [];
  for (const i of idx.slice(start, start + count)) {
    const lo = sp.spt[2 * i]! >>> 0;
    const hi = sp.spt[2 * i + 1]! >>> 0;
    const d = describeSpte(kvm.masks, lo, hi, level);
    const gfn = entryGfn(sp, i, level);
    const row: Record<string, unknown> = {
      index: i,
      gfn,
      // An indirect page's entries map whatever the guest table says: one gfn each, no linear range.
      npages: (sp.role & 0x80) !== 0 ? pagesPer(level) : 1,
      level,
      ...spteRowFields(d, lo, hi),
      sptep: '0x' + sp.sptep_pa(i).toString(16),
    };
    if (d.kind === 'nonleaf') {
      const child = mmu.spOf(Number(BigInt(d.pfn)));
      if (child && !child.freed) row.child = child.spt_pfn;
    }
    rows.push(row);
  }
  return { total: idx.length, empty: 512 - idx.filter((i) => !isInitialNonPresent(kvm, sp.spt[2 * i]!, sp.spt[2 * i + 1]!)).length, rows };
}

/**
 * The page-table map of one root: every table reachable from it, breadth first (so by level), each with
 * one letter per entry: '.' never written (SHADOW_NONPRESENT_VALUE), 'n' other non-present, 'L' 4K leaf,
 * 'H' huge leaf, 'T' table, 'M' MMIO, 'F' frozen. Bounded by `maxTables`.
 */
function tableMap(mmu: MmuView, rootPfn: number, maxTables: number): Record<string, unknown> {
  const kvm = mmu.kvm;
  const root = mmu.roots.find((r) => r.spt_pfn === rootPfn) ?? mmu.roots[0];
  const roots = mmu.roots.map((r) => ({
    table: r.spt_pfn,
    label: `${(r.role & 0x8_0000) !== 0 ? 'mirror ' : ''}root 0x${(r.spt_pfn * 4096).toString(16)} as ${r.role >>> 24 !== 0 ? 1 : 0}${(r.role & 0x800) !== 0 ? ' invalid' : ''}`,
  }));
  if (!root) return { format: kvm.masks.is_ept ? 'ept' : 'npt', roots, root: -1, rootLevel: 0, tables: [], truncated: false };
  const tables: Array<{ pfn: number; level: number; gfn: number; parent: number; parentIndex: number; kinds: string }> = [];
  const queue: Array<{ sp: KvmMmuPage; parent: number; parentIndex: number }> = [{ sp: root, parent: -1, parentIndex: -1 }];
  let truncated = false;
  for (let q = 0; q < queue.length; q++) {
    if (tables.length >= maxTables) {
      truncated = true;
      break;
    }
    const { sp, parent, parentIndex } = queue[q]!;
    const level = sp.role & 0xf;
    let kinds = '';
    for (let i = 0; i < 512; i++) {
      const lo = sp.spt[2 * i]! >>> 0;
      const hi = sp.spt[2 * i + 1]! >>> 0;
      if (isInitialNonPresent(kvm, lo, hi)) {
        kinds += '.';
        continue;
      }
      const k = classifySpte(kvm.masks, lo, hi, level);
      if (k === 'nonleaf') {
        kinds += 'T';
        const child = mmu.spOf(Number(BigInt(describeSpte(kvm.masks, lo, hi, level).pfn)));
        if (child && !child.freed) queue.push({ sp: child, parent: tables.length, parentIndex: i });
      } else kinds += k === 'leaf' ? ((lo & 0x80) !== 0 && level > 1 ? 'H' : 'L') : k === 'mmio' ? 'M' : k === 'frozen' ? 'F' : 'n';
    }
    tables.push({ pfn: sp.spt_pfn, level, gfn: sp.gfn, parent, parentIndex, kinds });
  }
  return { format: kvm.masks.is_ept ? 'ept' : 'npt', roots, root: root.spt_pfn, rootLevel: root.role & 0xf, tables, truncated };
}

// ---------------------------------------------------------------------------------------------------
// Memslots & attributes, stage-2 ownership.

function arm64Vm(program: DebugProgram): Arm64Vm | undefined {
  const vm = (program.state() as { VM?: { vm?: Arm64Vm } }).VM?.vm;
  return vm && Array.isArray(vm.memslots) && vm.pgt && typeof vm.descriptorAt === 'function' ? vm : undefined;
}

const X86_SLOT_FLAGS: ReadonlyArray<[number, string]> = [[1, 'KVM_MEM_LOG_DIRTY_PAGES'], [2, 'KVM_MEM_READONLY'], [4, 'KVM_MEM_GUEST_MEMFD']];

function memslotRows(program: DebugProgram): { arch: string; slots: Array<Record<string, unknown>>; privateRanges: Array<{ start: string; end: string }> } {
  const kvm = x86Kvm(program);
  if (kvm) {
    const slots: Array<Record<string, unknown>> = [];
    for (let as = 0; as < kvm.nr_as_ids; as++) {
      for (const s of kvm.kvm_memslots(as).slots) {
        slots.push({
          as_id: as,
          id: s.id,
          base_gfn: s.base_gfn,
          npages: s.npages,
          gpa: '0x' + (s.base_gfn * 4096).toString(16),
          gpa_end: '0x' + ((s.base_gfn + s.npages) * 4096 - 1).toString(16),
          userspace_addr: '0x' + s.userspace_addr.toString(16),
          flags: s.flags,
          flagNames: X86_SLOT_FLAGS.filter(([m]) => (s.flags & m) !== 0).map(([, n]) => n),
          guest_memfd: (s.flags & 4) !== 0 ? s.guest_memfd : undefined,
          guest_memfd_offset: (s.flags & 4) !== 0 ? s.guest_memfd_offset : undefined,
          backing: s.host_backing,
          dirty_logging: s.dirty_bitmap !== undefined,
        });
      }
    }
    const privateRanges = kvm.private_ranges_snapshot().map(([a, b]) => ({ start: '0x' + (a * 4096).toString(16), end: '0x' + (b * 4096 - 1).toString(16) }));
    return { arch: 'x86', slots, privateRanges };
  }
  const vm = arm64Vm(program);
  if (vm) {
    return {
      arch: 'arm64',
      slots: vm.memslots.map((m) => ({
        as_id: 0,
        id: m.id,
        base_gfn: Math.floor(m.gpa / vm.pageSize),
        npages: m.size / vm.pageSize,
        gpa: '0x' + m.gpa.toString(16),
        gpa_end: '0x' + (m.gpa + m.size - 1).toString(16),
        userspace_addr: '0x' + m.hva.toString(16),
        flags: (m.logDirty ? 1 : 0) | (m.readonly ? 2 : 0),
        flagNames: [...(m.logDirty ? ['KVM_MEM_LOG_DIRTY_PAGES'] : []), ...(m.readonly ? ['KVM_MEM_READONLY'] : [])],
        backing: `${m.hugetlb ? 'hugetlb' : m.backingPageSize > vm.pageSize ? 'THP' : 'pages'} ${m.backingPageSize / 1024}K${m.device ? ', VM_PFNMAP device' : ''}`,
        pa: '0x' + m.pa.toString(16),
        dirty_logging: m.logDirty,
      })),
      privateRanges: [],
    };
  }
  throw new Error('not available for this VM');
}

/** The host stage-2 under pKVM as ranges of one owner and state each (leaf walk, adjacent runs merged). */
function stage2Ownership(program: DebugProgram, start: number, count: number): { total: number; rows: Array<Record<string, unknown>> } {
  const h = arm64Vm(program)?.pkvm;
  if (!h) throw new Error('not available for this VM (no pKVM host stage-2)');
  const pgt = h.host_pgt;
  const runs: Array<{ start: number; end: number; level: number; valid: boolean; owner: string; host: string; hyp: string; desc: string }> = [];
  kvm_pgtable_walk(pgt, 0, Math.pow(2, pgt.ia_bits), {
    flags: KVM_PGTABLE_WALK_LEAF,
    arg: undefined,
    cb: (ctx: KvmPgtableVisitCtx) => {
      const size = Math.pow(2, (Math.log2(h.pageSize) - 3) * (3 - ctx.level) + Math.log2(h.pageSize));
      const valid = (ctx.oldLo & 1) !== 0;
      if (!valid && ctx.oldLo === 0 && ctx.oldHi === 0) return 0;
      const own = h.ownerOf(ctx.addr);
      const r = {
        start: ctx.addr,
        end: ctx.addr + size,
        level: ctx.level,
        valid,
        owner: own.handle !== undefined ? `${ownerName(own.owner)} handle 0x${own.handle.toString(16)}` : ownerName(own.owner),
        host: pageStateName(own.hostState),
        hyp: pageStateName(own.hypState),
        desc: hex0x(ctx.oldLo, ctx.oldHi, 16),
      };
      const last = runs[runs.length - 1];
      if (last && last.end === r.start && last.valid === r.valid && last.owner === r.owner && last.host === r.host && last.hyp === r.hyp && last.level === r.level) last.end = r.end;
      else runs.push(r);
      return 0;
    },
  });
  return {
    total: runs.length,
    rows: runs.slice(start, start + count).map((r) => ({ ...r, start: '0x' + r.start.toString(16), end: '0x' + (r.end - 1).toString(16), pages: (r.end - r.start) / h.pageSize })),
  };
}

// ---------------------------------------------------------------------------------------------------
// "Where is GFN X?": everything the model knows about one guest frame, in one answer.

export interface WhereRow {
  key: string;
  value: string;
  /** Raw 64-bit value a view can decode (SPTEs, descriptors). */
  decode?: { kind: string; value: string; level: number };
}
export interface WhereSection {
  title: string;
  rows: WhereRow[];
  note?: string;
}

function whereX86(kvm: Kvm, gfn: number): WhereSection[] {
  const out: WhereSection[] = [];
  const fmt = kvm.masks.is_ept ? 'ept-spte' : 'npt-spte';
  for (let as = 0; as < kvm.nr_as_ids; as++) {
    const slot = kvm.kvm_memslots(as).lookup(gfn);
    const title = `memslot (address space ${as})`;
    if (!slot) {
      if (as === 0) out.push({ title, rows: [], note: 'no memslot covers this gfn: an access is emulated MMIO (KVM_EXIT_MMIO) or a fault to userspace' });
      continue;
    }
    const rel = gfn - slot.base_gfn;
    const rows: WhereRow[] = [
      { key: 'slot', value: `${slot.id}` },
      { key: 'base_gfn / npages', value: `0x${slot.base_gfn.toString(16)} / 0x${slot.npages.toString(16)}` },
      { key: 'hva', value: '0x' + (slot.userspace_addr + rel * 4096).toString(16) },
      { key: 'flags', value: X86_SLOT_FLAGS.filter(([m]) => (slot.flags & m) !== 0).map(([, n]) => n).join(' | ') || '0' },
      { key: 'host backing', value: slot.host_backing },
    ];
    if (slot.dirty_bitmap) rows.push({ key: 'dirty_bitmap', value: dirty_bitmap_test(slot.dirty_bitmap, rel) ? 'set (dirty since the last GET/CLEAR_DIRTY_LOG)' : 'clear' });
    for (const level of [2, 3]) {
      try {
        const v = lpage_info_slot(gfn, slot, level) >>> 0;
        rows.push({ key: `lpage_info[${level === 2 ? '2M' : '1G'}].disallow_lpage`, value: `0x${v.toString(16)}${(v & 0x8000_0000) !== 0 ? ' (KVM_LPAGE_MIXED_FLAG)' : ''}${v === 0 ? ' (huge page allowed)' : ''}` });
      } catch {
        // No lpage_info at this level for this slot.
      }
    }
    out.push({ title, rows });
  }
  out.push({ title: 'attributes', rows: [{ key: 'KVM_MEMORY_ATTRIBUTE_PRIVATE', value: kvm.kvm_mem_is_private(gfn) ? 'set: private (guest_memfd)' : 'clear: shared' }] });
  if (kvm.arch.tdp_mmu_roots.length === 0) out.push({ title: 'SPTEs', rows: [], note: 'no TDP MMU root yet' });
  for (const root of kvm.arch.tdp_mmu_roots) {
    const rows: WhereRow[] = [];
    let sp: KvmMmuPage | undefined = root;
    while (sp) {
      const level: number = sp.role & 0xf;
      const idx = Math.floor(gfn / pagesPer(level)) % 512;
      const lo = sp.spt[2 * idx]! >>> 0;
      const hi = sp.spt[2 * idx + 1]! >>> 0;
      const d = describeSpte(kvm.masks, lo, hi, level);
      const extra = d.kind === 'leaf' || d.kind === 'nonleaf' ? ` ${d.traceFlags} pfn ${d.pfn}` : '';
      const nx = sp.nx_huge_page_disallowed ? ' (sp: nx_huge_page_disallowed)' : '';
      rows.push({ key: `level ${level} [${idx}]`, value: `${hex0x(lo, hi, 16)}  ${d.kind}${d.large ? ' (huge)' : ''}${extra}${nx}`, decode: { kind: fmt, value: hex0x(lo, hi), level } });
      sp = d.kind === 'nonleaf' ? kvm.pool.sp_of_pfn(Number(BigInt(d.pfn))) : undefined;
    }
    const as = root.role >>> 24 !== 0 ? 1 : 0;
    out.push({ title: `SPTEs in ${(root.role & 0x8_0000) !== 0 ? 'mirror ' : ''}root 0x${(root.spt_pfn * 4096).toString(16)} (as ${as}${(root.role & 0x800) !== 0 ? ', invalid' : ''}): ${role_trace_text(root.role)}`, rows });
  }
  out.push(whyLevel(kvm, gfn, out));
  out.push({ title: 'rmap', rows: [], note: 'the TDP MMU keeps no rmaps: SPTEs are found by walking each root' });
  return out;
}

const LEVEL_NAME = ['', '4K', '2M', '1G', '512G', '256T'];

/**
 * "Why this mapping level?": the predicates kvm_mmu_hugepage_adjust and __kvm_mmu_max_mapping_level
 * consult for a fault on gfn now, with their values, next to the leaf level the roots hold.
 */
function whyLevel(kvm: Kvm, gfn: number, sections: WhereSection[]): WhereSection {
  const title = 'why this mapping level?';
  const slot = kvm.kvm_memslots(0).lookup(gfn);
  if (!slot) return { title, rows: [], note: 'no memslot: nothing is mapped (MMIO or a fault to userspace)' };
  const rows: WhereRow[] = [];
  let max: number | undefined;
  try {
    max = kvm_mmu_max_mapping_level(kvm, slot, gfn);
  } catch {
    max = undefined;
  }
  if (max !== undefined) rows.push({ key: 'kvm_mmu_max_mapping_level', value: LEVEL_NAME[max] ?? String(max) });
  const host = host_pfn_mapping_level(slot, gfn);
  rows.push({ key: 'host_pfn_mapping_level', value: `${LEVEL_NAME[host]} (host backing ${slot.host_backing})` });
  const dirty = kvm_slot_dirty_track_enabled(slot);
  rows.push({ key: 'kvm_slot_dirty_track_enabled', value: dirty ? 'yes: kvm_mmu_hugepage_adjust leaves new faults at 4K' : 'no' });
  const nx = kvm.is_nx_huge_page_enabled();
  rows.push({ key: 'is_nx_huge_page_enabled', value: nx ? 'yes: an exec fault maps 4K (huge_page_disallowed)' : 'no' });
  const leaf = sections.find((x) => x.title.startsWith('SPTEs in root'))?.rows.filter((r) => / leaf/.test(r.value)).pop();
  const leafLevel = leaf ? Number(/^level (\d)/.exec(leaf.key)?.[1]) : undefined;
  rows.push({ key: 'leaf now', value: leafLevel ? LEVEL_NAME[leafLevel]! : 'none (not mapped)' });
  let note: string | undefined;
  if (leafLevel && max !== undefined && leafLevel < max) {
    note = dirty
      ? 'smaller than the maximum: dirty logging splits huge leaves (eager split) and faults map 4K'
      : 'smaller than the maximum: mapped while a restriction held (NX mitigation, a mixed range, dirty logging) or split since';
  } else if (leafLevel && max !== undefined && leafLevel > max) {
    note = 'larger than a fault would map now: the restriction came after the mapping (the leaf is zapped or split when it applies)';
  }
  return note ? { title, rows, note } : { title, rows };
}

function whereArm64(vm: Arm64Vm, gfn: number): WhereSection[] {
  const ipa = gfn * vm.pageSize;
  const out: WhereSection[] = [];
  const slot = vm.memslotFor(ipa);
  out.push(slot
    ? { title: 'memslot', rows: [
        { key: 'slot', value: String(slot.id) },
        { key: 'ipa range', value: `0x${slot.gpa.toString(16)}-0x${(slot.gpa + slot.size - 1).toString(16)}` },
        { key: 'hva', value: '0x' + (slot.hva + ipa - slot.gpa).toString(16) },
        { key: 'pa (host)', value: '0x' + (slot.pa + ipa - slot.gpa).toString(16) },
        { key: 'dirty logging', value: slot.logDirty ? (slot.dirty.has(gfn) ? 'on, page dirty' : 'on, page clean') : 'off' },
      ] }
    : { title: 'memslot', rows: [], note: 'no memslot covers this IPA: an access is an MMIO exit (io_mem_abort)' });
  const d = vm.descriptorAt(ipa);
  out.push({
    title: 'guest stage-2',
    rows: d ? [
      { key: `level ${d.level}`, value: `${d.kind}${d.outputAddress ? ` -> ${d.outputAddress}` : ''}${d.owner ? ` owner ${d.owner.name}` : ''}` },
      ...d.fields.filter((f) => f.value !== 0).map((f) => ({ key: f.name + ' ' + f.bits, value: f.hex + ' ' + f.meaning })),
    ] : [],
    note: d ? undefined : 'not mapped',
  });
  if (vm.pkvm && slot) {
    const pa = slot.pa + ipa - slot.gpa;
    const own = vm.pkvm.ownerOf(pa);
    out.push({ title: 'pKVM ownership of the backing page', rows: [
      { key: 'owner', value: ownerName(own.owner) + (own.handle !== undefined ? ` handle 0x${own.handle.toString(16)}` : '') },
      { key: 'host state', value: pageStateName(own.hostState) },
      { key: 'hyp state', value: pageStateName(own.hypState) },
    ] });
  }
  return out;
}

/** The current fault (the most recent one, or vCPU `vcpu`'s) explained, or undefined before any fault. */
function whyFault(program: DebugProgram, vcpuArg?: number): WhyFault | undefined {
  const kvm = x86Kvm(program);
  if (!kvm) throw new Error('not available for this VM (the fault explanation covers the x86 MMU)');
  const total = program.events ? program.events(0, 0).total : 0;
  const events = program.events ? program.events(Math.max(0, total - 4000), 4000).events : [];
  const id = vcpuArg ?? currentFaultVcpu(events) ?? 0;
  const vcpu = (kvm.vcpus as unknown as KvmVcpu[]).find((v) => v.vcpu_id === id);
  return vcpu ? explainFault(kvm, vcpu, events) : undefined;
}

function whySection(w: WhyFault): WhereSection {
  return { title: `why ${w.ret_pf}? (vCPU ${w.vcpu}, gpa ${w.gpa})`, rows: w.chain.map((d) => ({ key: d.key, value: d.value })), note: w.summary };
}

/** The current fault of a capture, from the events replayed so far (the next one tells if it is done). */
function whyTrace(program: DebugProgram, replayed: number, vcpu?: number): ReturnType<typeof explainTraceFault> {
  if (!program.events) return undefined;
  const events = program.events(Math.max(0, replayed - 4000), Math.min(4000, replayed)).events;
  return explainTraceFault(events, vcpu, program.events(replayed, 1).events[0]);
}

function whereIsGfn(program: DebugProgram, gfn: number): { gfn: string; gpa: string; sections: WhereSection[] } {
  const rebuilt = program.rebuilt?.();
  if (rebuilt) {
    const sections: WhereSection[] = traceWhere(rebuilt, gfn);
    const w = whyTrace(program, rebuilt.replayed);
    if (w && w.gfn === gfn) sections.push({ title: `why ${w.ret_pf}? (vCPU ${w.vcpu}, gpa ${w.gpa})`, rows: w.chain, note: w.summary });
    return { gfn: '0x' + gfn.toString(16), gpa: '0x' + (gfn * 4096).toString(16), sections };
  }
  const kvm = x86Kvm(program);
  if (kvm) {
    const sections = whereX86(kvm, gfn);
    const w = whyFault(program);
    // The current fault's decisions belong with its gfn, next to why this mapping level.
    if (w && w.gfn === gfn) sections.splice(sections.length - 1, 0, whySection(w));
    return { gfn: '0x' + gfn.toString(16), gpa: '0x' + (gfn * 4096).toString(16), sections };
  }
  const vm = arm64Vm(program);
  if (vm) return { gfn: '0x' + gfn.toString(16), gpa: '0x' + (gfn * vm.pageSize).toString(16), sections: whereArm64(vm, gfn) };
  throw new Error('not available for this VM (the engine has not started yet)');
}

// ---------------------------------------------------------------------------------------------------
// Timeline: the event window bucketed by event index, one lane per tracepoint, so a view of any zoom
// costs lanes x buckets numbers however many events there are.

function timeline(program: DebugProgram, fromArg: unknown, toArg: unknown, bucketsArg: unknown): Record<string, unknown> {
  if (!program.events) throw new Error('this program records no events');
  const all = program.events(0, Number.MAX_SAFE_INTEGER);
  const evs = all.events;
  const first = evs.length ? evs[0]!.index : 0;
  const end = evs.length ? evs[evs.length - 1]!.index + 1 : 0;
  const from = Math.max(first, int(fromArg, first));
  const to = Math.min(end, Math.max(from + 1, int(toArg, end)));
  const buckets = int(bucketsArg, 400, 1, 4000);
  const laneOf = new Map<string, number>();
  const lanes: Array<{ name: string; total: number }> = [];
  for (const e of evs) {
    let l = laneOf.get(e.name);
    if (l === undefined) {
      l = lanes.length;
      laneOf.set(e.name, l);
      lanes.push({ name: e.name, total: 0 });
    }
    lanes[l]!.total++;
  }
  const counts = lanes.map(() => new Array<number>(buckets).fill(0));
  const stepAt = new Array<number>(buckets).fill(-1);
  const firstAt = new Array<number>(buckets).fill(-1);
  const width = (to - from) / buckets;
  // Events are in index order: binary search the first one in range.
  let lo = 0;
  let hi = evs.length;
  while (lo < hi) {
    const mid = (lo + hi) >> 1;
    if (evs[mid]!.index < from) lo = mid + 1;
    else hi = mid;
  }
  for (let i = lo; i < evs.length && evs[i]!.index < to; i++) {
    const e = evs[i]!;
    const b = Math.min(buckets - 1, Math.floor((e.index - from) / width));
    counts[laneOf.get(e.name)!]![b]!++;
    if (firstAt[b] === -1) {
      firstAt[b] = e.index;
      stepAt[b] = e.step;
    }
  }
  const steps: Array<{ step: number; index: number; line: number }> = [];
  let prev = -1;
  for (let i = lo; i < evs.length && evs[i]!.index < to; i++) {
    const e = evs[i]!;
    if (e.step !== prev) {
      prev = e.step;
      if (steps.length < 2000) steps.push({ step: e.step, index: e.index, line: program.locationOf(e.step).line });
    }
  }
  return { first, end, from, to, buckets, lanes, counts, stepAt, firstAt, steps };
}

// ---------------------------------------------------------------------------------------------------
// RMP (SEV-SNP): assigned entries of the host RMP, 2M entries as one row, paged.

function rmpRows(program: DebugProgram, start: number, count: number): { total: number; asid?: number; rows: Array<Record<string, unknown>> } {
  const kvm = x86Kvm(program);
  const sev = kvm ? to_kvm_sev_info(kvm as unknown as Parameters<typeof to_kvm_sev_info>[0]) : undefined;
  if (!sev) throw new Error('not available for this VM (not an SEV-SNP VM)');
  const rmp: SnpRmpTable = sev.rmp;
  // The table keeps written 2M regions in a private map (region -> chunk); regions never written are zero.
  const regions = (rmp as unknown as { region?: Map<number, number> }).region;
  if (!(regions instanceof Map)) throw new Error('this RMP model cannot be enumerated');
  // Only the requested page becomes objects: the rest is counted from the flag bytes (bit 0 Assigned,
  // bit 1 Page_Size, as in the entry), so a million assigned entries cost one pass, not a million rows.
  const out: Array<Record<string, unknown>> = [];
  let total = 0;
  const end = start + count;
  for (const r of [...regions.keys()].sort((a, b) => a - b)) {
    const base = regions.get(r)! * 512;
    for (let k = 0; k < 512; k++) {
      const f = rmp.flags[base + k]!;
      if ((f & 1) === 0) continue;
      const big = (f & 2) !== 0;
      if (total >= start && total < end) {
        const pfn = r * 512 + k;
        const e = rmp.entry(pfn);
        const raw = rmp.raw(pfn);
        out.push({ pfn, pages: big ? 512 : 1, pagesize: big ? '2M' : '4K', gpa: '0x' + e.gpa.toString(16), asid: e.asid, validated: e.validated, immutable: e.immutable, vmsa: e.vmsa, raw: hex0x(raw.lo, raw.hi, 16) });
      }
      total++;
      // A 2M entry: the 511 entries after it carry the same state; show it once.
      if (big && k === 0) k = 511;
    }
  }
  return { total, asid: sev.asid, rows: out };
}

/** Requests a replayed trace answers from the MMU rebuilt from the capture. */
const TRACE_ANSWERS = new Set(['kvmMmu/roots', 'kvmMmu/table', 'kvmMmu/memslots', 'kvmMmu/vm']);

export function handleQuery(name: string, args: Record<string, unknown>, ctx: QueryContext): unknown {
  const rebuilt = TRACE_ANSWERS.has(name) ? ctx.program.rebuilt?.() : undefined;
  if (rebuilt) {
    switch (name) {
      case 'kvmMmu/roots':
        return traceRoots(rebuilt);
      case 'kvmMmu/table':
        return traceTable(rebuilt, int(args.table, -1, -1), int(args.start, 0), int(args.count, 256, 0, 100_000));
      case 'kvmMmu/memslots':
        return traceMemslots(rebuilt);
      case 'kvmMmu/vm':
        return { kind: ctx.program.kind, file: ctx.program.file, vm: traceVm(rebuilt) };
    }
  }
  switch (name) {
    case 'kvmMmu/query': {
      const subject = String(args.subject ?? '');
      const selector = (args.selector ?? {}) as Record<string, string | number | boolean>;
      if (!ctx.program.query) throw new Error('this program cannot answer queries');
      const rows = ctx.program.query(subject, selector);
      if (rows === undefined) throw new Error(`the engine cannot answer '${subject}' yet`);
      const start = int(args.start, 0);
      const count = int(args.count, 500, 0, 100_000);
      return { total: rows.length, rows: rows.slice(start, start + count) };
    }
    case 'kvmMmu/events': {
      const start = int(args.start, 0);
      const count = int(args.count, 200, 0, 10_000);
      return ctx.program.events ? ctx.program.events(start, count, typeof args.filter === 'string' && args.filter !== '' ? args.filter : undefined) : { total: 0, first: 0, events: [] };
    }
    case 'kvmMmu/stepLocation': {
      // Where a step (statement or trace line) is, for views that reveal the source of an event.
      const step = int(args.step, -1, -1);
      if (step < 0 || step >= ctx.program.length()) throw new Error(`no step ${String(args.step)}`);
      const loc = ctx.program.locationOf(step);
      return { step, file: loc.file, line: loc.line, column: loc.column ?? 1, label: ctx.program.labelOf(step) };
    }
    case 'kvmMmu/roots': {
      const mmu = mmuOf(ctx.program);
      if (!mmu) throw new Error('not available for this VM (no x86 MMU)');
      const kvm = mmu.kvm;
      // is_obsolete_sp: a shadow page of an older mmu_valid_gen (the TDP MMU marks roots role.invalid instead).
      return {
        format: kvm.masks.is_ept ? 'ept' : 'npt',
        mmu: mmu.shadow ? 'shadow' : 'tdp',
        roots: mmu.roots.map((r) => ({ ...rootRow(kvm, r), gfn: r.gfn, direct: (r.role & 0x80) !== 0, obsolete: mmu.shadow ? r.mmu_valid_gen !== kvm.arch.mmu_valid_gen : (r.role & 0x800) !== 0, mmu_valid_gen: mmu.shadow ? r.mmu_valid_gen : undefined })),
      };
    }
    case 'kvmMmu/table': {
      // One page-table page by the pfn of its spt, entries paged; `all` includes never-used entries.
      const mmu = mmuOf(ctx.program);
      if (!mmu) throw new Error('not available for this VM (no x86 MMU)');
      const kvm = mmu.kvm;
      const sp = mmu.spOf(int(args.table, -1, -1));
      if (!sp || sp.freed) throw new Error(`no page table at pfn ${String(args.table)} (freed or zapped since)`);
      const t = tableRows(mmu, sp, int(args.start, 0, 0, 512), int(args.count, 256, 0, 512), args.all === true);
      return {
        format: kvm.masks.is_ept ? 'ept' : 'npt',
        table: sp.spt_pfn,
        level: sp.role & 0xf,
        gfn: sp.gfn,
        role: sp.role >>> 0,
        roleText: role_trace_text(sp.role),
        as_id: sp.role >>> 24 !== 0 ? 1 : 0,
        ...t,
      };
    }
    case 'kvmMmu/memslots':
      return memslotRows(ctx.program);
    case 'kvmMmu/stage2Ownership':
      return stage2Ownership(ctx.program, int(args.start, 0), int(args.count, 500, 0, 10_000));
    case 'kvmMmu/tableMap': {
      const mmu = mmuOf(ctx.program);
      if (!mmu) throw new Error('not available for this VM (no x86 MMU)');
      return tableMap(mmu, int(args.root, -1, -1), int(args.maxTables, 4096, 1, 65536));
    }
    case 'kvmMmu/rmp':
      return rmpRows(ctx.program, int(args.start, 0), int(args.count, 500, 0, 10_000));
    case 'kvmMmu/timeline':
      return timeline(ctx.program, args.from, args.to, args.buckets);
    case 'kvmMmu/whereIsGfn': {
      const gfn = int(args.gfn, -1, -1, 2 ** 52);
      if (gfn < 0) throw new Error('gfn must be a non-negative integer');
      return whereIsGfn(ctx.program, gfn);
    }
    case 'kvmMmu/vm':
      return { kind: ctx.program.kind, file: ctx.program.file, vm: vmOf(ctx.program) };
    case 'kvmMmu/why': {
      const vcpuArg = args.vcpu === undefined ? undefined : int(args.vcpu, 0, 0, 4096);
      const rebuiltNow = ctx.program.rebuilt?.();
      if (rebuiltNow) {
        // A capture: the events replayed so far (the current one not yet) are all there is to go on.
        const t = whyTrace(ctx.program, rebuiltNow.replayed, vcpuArg);
        if (!t) return { fault: null, sections: [{ title: 'why?', rows: [], note: 'no fault replayed yet: nothing to explain' }] };
        return { fault: { ...t, gfn: '0x' + t.gfn.toString(16) }, sections: [{ title: `why ${t.ret_pf}? (vCPU ${t.vcpu}, gpa ${t.gpa})`, rows: t.chain, note: t.summary }] };
      }
      // "Why?" for the current fault: its decisions, then why this mapping level for its gfn.
      const w = whyFault(ctx.program, vcpuArg);
      if (!w) return { fault: null, sections: [{ title: 'why?', rows: [], note: 'no fault yet: nothing to explain' }] };
      const kvm = x86Kvm(ctx.program)!;
      const level = whereX86(kvm, w.gfn).find((x) => x.title === 'why this mapping level?');
      return { fault: { ...w, gfn: '0x' + w.gfn.toString(16) }, sections: [whySection(w), ...(level && w.path !== 'mmio' && w.path !== 'memory-fault' ? [level] : [])] };
    }
    default:
      throw new Error(`unknown request ${name}`);
  }
}
