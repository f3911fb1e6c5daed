/**
 * Every `kvm`/`kvmmmu` event we know, described once: its record fields (names, widths and signedness as in
 * the 6.18 tracefs `format` file) and its `print fmt` as a list of parts. The printer
 * (`formatTracepoint`) and the replay parser (src/trace) both walk the same parts, so the two directions
 * cannot drift apart.
 *
 * Source of truth: /work/shared/reference/tracefs-6.18/*.format and trace-text.md (older text generations).
 */

export interface FieldSpec {
  name: string;
  /** Width of the record field in bits (what C truncates the value to). */
  bits: 8 | 16 | 32 | 64;
  signed: boolean;
  /** `bool` record field. */
  bool?: boolean;
}

/**
 * Numeric conversions, named after the printf spec they model:
 * - `x`      `%x` / `%llx` / `%lx`          lower-case hex, no prefix, no padding
 * - `u`      `%u`                            unsigned decimal
 * - `d`      `%d`                            signed decimal of the field's width
 * - `x08`    `%08x`
 * - `x016`   `%016llx`
 * - `p`      `%p`: 16 zero-padded hex digits. tracefs's default (`hash-ptr` on) prints a hashed id there
 *            (the upper 32 bits of a siphash of the pointer, so `00000000xxxxxxxx`); with `hash-ptr` off it
 *            prints the pointer. The model prints its own pointer value, as with `hash-ptr` off; the parser
 *            reads either form (replay never uses the value).
 * - `x#`     `%#llx`   (`0x` prefix, also for 0: the kernel's vsprintf prints `0x0`)
 * - `x#016`  `%#016lx` (`0x` counts toward the width of 16, so 14 digits are zero-padded)
 */
export type Conv = 'x' | 'u' | 'd' | 'x08' | 'x016' | 'p' | 'x#' | 'x#016';

/**
 * Parts whose text is not a single printf conversion of one field:
 * - `pferr_flags`   `__print_flags(pferr, "|", P W U PK SS SGX RSVD F)` of field `field`
 * - `sp`            the shadow-page text (`sp gen G gfn X lL N-byte qQ[ direct] ACC[ invalid] [!]nxe [!]ad root R sync|unsync`)
 * - `sp_old`        the pre-5.10 shadow-page text (parse only): `[new ]sp gfn X L qQ[ direct] ACC[ invalid] pae|!pae [!]nxe [!]wp root R sync|unsync`
 * - `created`       `new` / `existing`
 * - `rwxu`          `kvm_mmu_set_spte`'s `%s%s%s%s` (r, bit 1 of spte, x, u with -1 meaning "no user mask")
 * - `exit_reason`   `kvm_exit`'s `%s%s%s` (symbolic reason, and for VMX the ` FAILED_VMENTRY` flags)
 * - `immediate_exit` `kvm_entry`'s trailing `[immediate exit]`
 * - `gen_valid`     `check_mmio_spte`'s `kvm_gen == spte_gen`
 * - `ret_spurious` / `ret_fixed`  `fast_page_fault`'s `ret == RET_PF_SPURIOUS` / `ret == RET_PF_FIXED`
 */
export type CustomKind =
  | 'pferr_flags'
  | 'sp'
  | 'sp_old'
  | 'created'
  | 'rwxu'
  | 'exit_reason'
  | 'immediate_exit'
  | 'gen_valid'
  | 'ret_spurious'
  | 'ret_fixed';

export type Part =
  | { t: 'lit'; s: string }
  | { t: 'conv'; field: number; conv: Conv }
  | { t: 'custom'; kind: CustomKind; field: number };

export interface EventSchema {
  system: 'kvm' | 'kvmmmu';
  name: string;
  fields: readonly FieldSpec[];
  /** Field index by name. */
  index: Readonly<Record<string, number>>;
  /** The 6.18 print fmt. */
  parts: readonly Part[];
  /** Older text generations, tried by the parser when `parts` does not match (never printed). */
  older: ReadonlyArray<readonly Part[]>;
}

/** RET_PF_* values as the 6.18 `fast_page_fault` print fmt compares them (`ret == 6`, `ret == 5`). */
export const RET_PF_SPURIOUS_6_18 = 6;
export const RET_PF_FIXED_6_18 = 5;

const u64 = (name: string): FieldSpec => ({ name, bits: 64, signed: false });
const u32 = (name: string): FieldSpec => ({ name, bits: 32, signed: false });
const s32 = (name: string): FieldSpec => ({ name, bits: 32, signed: true });
const u8 = (name: string): FieldSpec => ({ name, bits: 8, signed: false });
const s8 = (name: string): FieldSpec => ({ name, bits: 8, signed: true });
const bool = (name: string): FieldSpec => ({ name, bits: 8, signed: false, bool: true });

/**
 * A tiny template language so each print fmt reads like the format file:
 * `'addr %x(addr) pferr %x(pferr) %pferr_flags(pferr)'`. `%conv(field)` is a conversion, `%kind(field)` a
 * custom part; everything else is literal.
 */
function compile(fields: readonly FieldSpec[], tpl: string): Part[] {
  const idx = (n: string): number => {
    if (n === '') return -1;
    const i = fields.findIndex((f) => f.name === n);
    if (i < 0) throw new Error(`tracepoint template names unknown field ${n}`);
    return i;
  };
  const convs = new Set<string>(['x', 'u', 'd', 'x08', 'x016', 'p', 'x#', 'x#016']);
  const parts: Part[] = [];
  let lit = '';
  let i = 0;
  while (i < tpl.length) {
    const c = tpl[i]!;
    if (c === '%' && tpl[i + 1] !== '%') {
      const open = tpl.indexOf('(', i);
      const close = tpl.indexOf(')', open);
      const kind = tpl.slice(i + 1, open);
      const field = idx(tpl.slice(open + 1, close));
      if (lit) parts.push({ t: 'lit', s: lit });
      lit = '';
      if (convs.has(kind)) parts.push({ t: 'conv', field, conv: kind as Conv });
      else parts.push({ t: 'custom', kind: kind as CustomKind, field });
      i = close + 1;
    } else if (c === '%') {
      lit += '%';
      i += 2;
    } else {
      lit += c;
      i++;
    }
  }
  if (lit) parts.push({ t: 'lit', s: lit });
  return parts;
}

function ev(system: EventSchema['system'], name: string, fields: FieldSpec[], tpl: string, older: string[] = []): EventSchema {
  const index: Record<string, number> = {};
  fields.forEach((f, i) => (index[f.name] = i));
  return { system, name, fields, index, parts: compile(fields, tpl), older: older.map((t) => compile(fields, t)) };
}

const SP_FIELDS = (): FieldSpec[] => [u8('mmu_valid_gen'), u64('gfn'), u32('role'), u32('root_count'), bool('unsync')];

export const EVENTS: readonly EventSchema[] = [
  // kvmmmu (arch/x86/kvm/mmu/mmutrace.h and the walker events of paging_tmpl.h)
  ev('kvmmmu', 'kvm_mmu_pagetable_walk', [u64('addr'), u32('pferr')], 'addr %x(addr) pferr %x(pferr) %pferr_flags(pferr)'),
  ev('kvmmmu', 'kvm_mmu_paging_element', [u64('pte'), u32('level')], 'pte %x(pte) level %u(level)'),
  ev('kvmmmu', 'kvm_mmu_set_accessed_bit', [u64('gpa')], 'gpa %x(gpa)'),
  ev('kvmmmu', 'kvm_mmu_set_dirty_bit', [u64('gpa')], 'gpa %x(gpa)'),
  ev('kvmmmu', 'kvm_mmu_walker_error', [u32('pferr')], 'pferr %x(pferr) %pferr_flags(pferr)'),
  ev('kvmmmu', 'kvm_mmu_get_page', [...SP_FIELDS(), bool('created')], '%sp(role) %created(created)', ['%sp_old(role)']),
  ev('kvmmmu', 'kvm_mmu_sync_page', SP_FIELDS(), '%sp(role)', ['%sp_old(role)']),
  ev('kvmmmu', 'kvm_mmu_unsync_page', SP_FIELDS(), '%sp(role)', ['%sp_old(role)']),
  ev('kvmmmu', 'kvm_mmu_prepare_zap_page', SP_FIELDS(), '%sp(role)', ['%sp_old(role)']),
  ev('kvmmmu', 'mark_mmio_spte', [u64('sptep'), u64('gfn'), u32('access'), u32('gen')], 'sptep:%p(sptep) gfn %x(gfn) access %x(access) gen %x(gen)'),
  ev('kvmmmu', 'handle_mmio_page_fault', [u64('addr'), u64('gfn'), u32('access')], 'addr:%x(addr) gfn %x(gfn) access %x(access)'),
  ev(
    'kvmmmu',
    'fast_page_fault',
    [s32('vcpu_id'), u64('cr2_or_gpa'), u64('error_code'), u64('sptep'), u64('old_spte'), u64('new_spte'), s32('ret')],
    'vcpu %d(vcpu_id) gva %x(cr2_or_gpa) error_code %pferr_flags(error_code) sptep %p(sptep) old %x#(old_spte) new %x(new_spte) spurious %ret_spurious(ret) fixed %ret_fixed(ret)',
  ),
  ev('kvmmmu', 'kvm_mmu_zap_all_fast', [u8('mmu_valid_gen'), u32('mmu_used_pages')], 'kvm-mmu-valid-gen %u(mmu_valid_gen) used_pages %x(mmu_used_pages)'),
  ev('kvmmmu', 'check_mmio_spte', [u32('kvm_gen'), u32('spte_gen'), u64('spte')], 'spte %x(spte) kvm_gen %x(kvm_gen) spte-gen %x(spte_gen) valid %gen_valid()'),
  ev(
    'kvmmmu',
    'kvm_mmu_set_spte',
    [u64('gfn'), u64('spte'), u64('sptep'), u8('level'), bool('r'), bool('x'), s8('u')],
    'gfn %x(gfn) spte %x(spte) (%rwxu(spte)) level %d(level) at %x(sptep)',
  ),
  ev('kvmmmu', 'kvm_mmu_spte_requested', [u64('gfn'), u64('pfn'), u8('level')], 'gfn %x(gfn) pfn %x(pfn) level %d(level)'),
  ev(
    'kvmmmu',
    'kvm_tdp_mmu_spte_changed',
    [u64('gfn'), u64('old_spte'), u64('new_spte'), u8('level'), u8('as_id')],
    'as id %d(as_id) gfn %x(gfn) level %d(level) old_spte %x(old_spte) new_spte %x(new_spte)',
  ),
  ev('kvmmmu', 'kvm_mmu_split_huge_page', [u64('gfn'), u64('spte'), s32('level'), s32('errno')], 'gfn %x(gfn) spte %x(spte) level %d(level) errno %d(errno)'),
  // kvm (arch/x86/kvm/trace.h, include/trace/events/kvm.h)
  ev(
    'kvm',
    'kvm_page_fault',
    [u32('vcpu_id'), u64('guest_rip'), u64('fault_address'), u64('error_code')],
    'vcpu %u(vcpu_id) rip 0x%x(guest_rip) address 0x%x016(fault_address) error_code 0x%x(error_code)',
    // before 6.1: no vcpu/rip, `address %lx error_code %x`
    ['address %x(fault_address) error_code %x(error_code)'],
  ),
  ev(
    'kvm',
    'kvm_exit',
    [u32('exit_reason'), u64('guest_rip'), u32('isa'), u64('info1'), u64('info2'), u32('intr_info'), u32('error_code'), u32('vcpu_id'), u64('requests')],
    'vcpu %u(vcpu_id) reason %exit_reason(exit_reason) rip 0x%x(guest_rip) info1 0x%x016(info1) info2 0x%x016(info2) intr_info 0x%x08(intr_info) error_code 0x%x08(error_code) requests 0x%x016(requests)',
  ),
  ev(
    'kvm',
    'kvm_entry',
    [u32('vcpu_id'), u64('rip'), bool('immediate_exit'), u32('intr_info'), u32('error_code')],
    'vcpu %u(vcpu_id), rip 0x%x(rip) intr_info 0x%x08(intr_info) error_code 0x%x08(error_code)%immediate_exit(immediate_exit)',
  ),
  ev(
    'kvm',
    'kvm_rmp_fault',
    [u32('vcpu_id'), u64('gpa'), u64('pfn'), u64('error_code'), s32('rmp_level'), s32('psmash_ret')],
    'vcpu %u(vcpu_id) gpa %x016(gpa) pfn 0x%x(pfn) error_code 0x%x(error_code) rmp_level %d(rmp_level) psmash_ret %d(psmash_ret)',
  ),
  ev('kvm', 'kvm_age_hva', [u64('start'), u64('end')], 'mmu notifier age hva: %x#016(start) -- %x#016(end)'),
  // Async #PF events fired from __kvm_mmu_faultin_pfn (include/trace/events/kvm.h). Not among the 6.18
  // format files in the reference set: the text is the event class's `gva = %#llx, gfn = %#llx` as read in
  // the kernel source (kvm-x86-mmu.md 9.2 names the events).
  ev('kvm', 'kvm_try_async_get_page', [u64('gva'), u64('gfn')], 'gva = %x#(gva), gfn = %x#(gfn)'),
  ev('kvm', 'kvm_async_pf_repeated_fault', [u64('gva'), u64('gfn')], 'gva = %x#(gva), gfn = %x#(gfn)'),
  ev('kvm', 'kvm_unmap_hva_range', [u64('start'), u64('end')], 'mmu notifier unmap range: %x#016(start) -- %x#016(end)'),
];

export const EVENT_BY_NAME: ReadonlyMap<string, EventSchema> = new Map(EVENTS.map((e) => [e.name, e]));

/** `__print_flags` table of the page-fault error code, in the order the print fmt lists it. */
export const PFERR_FLAG_NAMES: ReadonlyArray<readonly [number, string]> = [
  [0, 'P'],
  [1, 'W'],
  [2, 'U'],
  [5, 'PK'],
  [6, 'SS'],
  [15, 'SGX'],
  [3, 'RSVD'],
  [4, 'F'],
];

/** `access_str[]` of the shadow-page text, indexed by role.access (ACC_EXEC 1, ACC_WRITE 2, ACC_USER 4). */
export const SP_ACCESS_STR: readonly string[] = ['---', '--x', 'w--', 'w-x', '-u-', '-ux', 'wu-', 'wux'];

/** Role-word bits the shadow-page text shows (ref 1.1): level, has_4_byte_gpte, quadrant, direct, access, invalid, efer_nx, ad_disabled. */
export const SP_TEXT_ROLE_MASK = 0x0000_000f | 0x10 | 0x60 | 0x80 | 0x700 | 0x800 | 0x1000 | 0x1_0000;
/** Role-word bits the pre-5.10 text shows: level, has_4_byte_gpte (as !pae), quadrant, direct, access, invalid, efer_nx, cr0_wp. */
export const SP_OLD_TEXT_ROLE_MASK = 0x0000_000f | 0x10 | 0x60 | 0x80 | 0x700 | 0x800 | 0x1000 | 0x2000;
