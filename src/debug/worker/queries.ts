/**
 * Custom requests the views use to read MMU state from a paused (or finished) session. Each answers
 * from the program's engine through `DebugProgram.query` (the same subjects `expect` uses), paged.
 */
import type { DebugProgram } from '../program';
import { configOf, loadScenario, nodeReader } from '../../scenario';
import type { Kvm, KvmMmuPage } from '../../engine/x86/index';
import { describeSpte } from '../../engine/x86/spte_decode';
import { role_trace_text } from '../../engine/x86/role';
import { hex0x } from '../../engine/bits/u64';

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

function tableRows(kvm: Kvm, sp: KvmMmuPage, start: number, count: number, all: boolean): { total: number; empty: number; rows: Array<Record<string, unknown>> } {
  const level = sp.role & 0xf;
  const idx: number[] = [];
  for (let i = 0; i < 512; i++) if (all || !isInitialNonPresent(kvm, sp.spt[2 * i]!, sp.spt[2 * i + 1]!)) idx.push(i);
  const rows: Array<Record<string, unknown>> = [];
  for (const i of idx.slice(start, start + count)) {
    const lo = sp.spt[2 * i]! >>> 0;
    const hi = sp.spt[2 * i + 1]! >>> 0;
    const d = describeSpte(kvm.masks, lo, hi, level);
    const gfn = sp.gfn + i * pagesPer(level);
    const row: Record<string, unknown> = {
      index: i,
      gfn,
      npages: pagesPer(level),
      level,
      value: hex0x(lo, hi, 16),
      kind: d.kind,
      large: d.large,
      flags: d.traceFlags,
      pfn: d.pfn,
      sptep: '0x' + sp.sptep_pa(i).toString(16),
      fields: d.fields.map((f) => ({ name: f.name, bits: f.bits, hex: f.hex, value: f.value, meaning: f.meaning })),
    };
    if (d.kind === 'leaf' || d.kind === 'nonleaf') {
      row.accessed = d.accessed;
      row.dirty = d.dirty;
      row.mmuWritable = d.mmuWritable;
      row.hostWritable = d.hostWritable;
    }
    if (d.mmio) row.mmio = d.mmio;
    if (d.kind === 'nonleaf') {
      const child = kvm.pool.sp_of_pfn(Number(BigInt(d.pfn)));
      if (child && !child.freed) row.child = child.spt_pfn;
    }
    rows.push(row);
  }
  return { total: idx.length, empty: 512 - idx.filter((i) => !isInitialNonPresent(kvm, sp.spt[2 * i]!, sp.spt[2 * i + 1]!)).length, rows };
}

export function handleQuery(name: string, args: Record<string, unknown>, ctx: QueryContext): unknown {
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
      const kvm = x86Kvm(ctx.program);
      if (!kvm) throw new Error('not available for this VM (no x86 TDP MMU)');
      return { format: kvm.masks.is_ept ? 'ept' : 'npt', roots: kvm.arch.tdp_mmu_roots.map((r) => rootRow(kvm, r)) };
    }
    case 'kvmMmu/table': {
      // One page-table page by the pfn of its spt, entries paged; `all` includes never-used entries.
      const kvm = x86Kvm(ctx.program);
      if (!kvm) throw new Error('not available for this VM (no x86 TDP MMU)');
      const sp = kvm.pool.sp_of_pfn(int(args.table, -1, -1));
      if (!sp || sp.freed) throw new Error(`no page table at pfn ${String(args.table)} (freed or zapped since)`);
      const t = tableRows(kvm, sp, int(args.start, 0, 0, 512), int(args.count, 256, 0, 512), args.all === true);
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
    case 'kvmMmu/vm':
      return { kind: ctx.program.kind, file: ctx.program.file, vm: vmOf(ctx.program) };
    default:
      throw new Error(`unknown request ${name}`);
  }
}
