/**
 * The scenario language, described once as a table. The parser, the diagnostics' suggestions, the
 * hover/completion data of the editor and the statement reference in docs/scenario-language.md all
 * come from (or are checked against) this table.
 *
 * A statement is one line: a keyword (one word such as `KVM_SET_USER_MEMORY_REGION2`, or two such as
 * `guest write`), then arguments. An argument is `name=value`, `name value` (for arguments that take
 * a value), or a bare word that belongs to a word group (`user`, `write`, `private`). `expect`
 * statements add checks, `field OP value` with OP one of = == != < <= > >=.
 */

export type ArgType =
  /** A 64-bit number: hex (`0x1f`), decimal, with an optional K/M/G/T/P suffix (powers of 1024). */
  | 'u64'
  /** Like u64; a byte count. */
  | 'size'
  /** `A..B` (B excluded), `A+SIZE`, or a single address. */
  | 'range'
  /** A small decimal integer. */
  | 'int'
  /** One word of `values`. */
  | 'enum'
  /** Words of `values` joined by `|` or `,`, or a number. */
  | 'flags'
  /** on/off, Y/N, yes/no, true/false, 1/0. */
  | 'bool'
  /** A name chosen by the scenario (a guest_memfd handle such as `gmem0`). */
  | 'ident'
  /** A double-quoted string. */
  | 'string'
  /** A number (0, 1 for "young", -22), or a negative errno name (`-EINVAL`). */
  | 'errno'
  /** Anything a check compares with: number, word, string or boolean. */
  | 'value';

export interface ArgSpec {
  name: string;
  type: ArgType;
  doc: string;
  required?: boolean;
  /** Legal words for enum and flags. Matching is case-insensitive; the table's spelling is kept. */
  values?: readonly string[];
  /** Other accepted names (e.g. the kernel struct member `guest_phys_addr` for `gpa`). */
  aliases?: readonly string[];
  /** The words in `values` may stand alone, without `name=`. */
  bare?: boolean;
  /** The first free-standing word or string that is nothing else fills this argument. */
  positional?: boolean;
  /** Bounds for int. */
  min?: number;
  max?: number;
  /** For address arguments: which space bounds them (checked against MAXPHYADDR / 57 bits). */
  space?: 'gpa' | 'gva' | 'hva' | 'pa';
}

export type Group = 'setup' | 'userspace' | 'host' | 'guest' | 'pkvm' | 'expect' | 'meta';

export interface StmtSpec {
  /** Canonical keyword, one or two words. */
  keyword: string;
  group: Group;
  doc: string;
  args: readonly ArgSpec[];
  /** For expect/param/variant: names accepted on the left of a check. `prefix.*` admits a family. */
  checks?: readonly string[];
  /** Checks may use comparison operators (expect); otherwise only `=`. */
  compare?: boolean;
  /** One complete example line. */
  example: string;
  /** At least one of these argument names must be present. */
  oneOf?: readonly string[];
}

const SIZES_X86 = ['4K', '2M', '1G'] as const;

const vcpu: ArgSpec = { name: 'vcpu', type: 'int', min: 0, max: 1023, doc: 'vCPU index (default 0)' };

/** Module parameters a scenario may set, with their legal values (`*` = any integer). */
export const PARAMS: Readonly<Record<string, readonly string[]>> = {
  tdp_mmu: ['Y', 'N'],
  eager_page_split: ['Y', 'N'],
  nx_huge_pages: ['auto', 'off', 'force', 'never', 'Y', 'N'],
  nx_huge_pages_recovery_ratio: ['*'],
  nx_huge_pages_recovery_period_ms: ['*'],
  mmio_caching: ['Y', 'N'],
  ept: ['Y', 'N'],
  eptad: ['Y', 'N'],
  pml: ['Y', 'N'],
  npt: ['Y', 'N'],
  tdp_root_level: ['*'],
  flush_on_reuse: ['Y', 'N'],
  // Model option, NOT a kernel parameter: apply the nested-MMU eager split to L1 shadow pages (tdp=off),
  // since scenarios have no nested guest. Upstream splits only guest_mode shadow pages, under the TDP MMU.
  shadow_eager_split_l1: ['Y', 'N'],
};

/**
 * Design variants argued on kvm@ (see shared/seeds): `upstream` is what Linux has now, `proposed` the
 * alternative from the thread; engine-specific names are accepted as synonyms.
 */
export const VARIANTS: Readonly<Record<string, readonly string[]>> = {
  // upstream = role.is_mirror + mirror roots; proposed = sp->gfn_stolen_bits (2021 RFC)
  tdx_stolen_bits: ['upstream', 'proposed', 'mirror_role', 'sp_field'],
  // upstream = access bits cached in shadowed_translation; proposed = propagate and repair
  split_access: ['upstream', 'proposed', 'cached', 'propagate'],
  // upstream = special PAE root (mmu->pae_root); proposed = a shadow page with a pae_root role bit
  pae_root: ['upstream', 'proposed', 'special', 'shadow_page'],
  // upstream = private at guest_memfd prepare; proposed = private at fault, at the mapping size
  gmem_prepare: ['upstream', 'proposed', 'on_alloc', 'on_fault'],
  // upstream = today's typed annotations (2026); proposed = the 2021 set_owner layout (bits 9:2)
  owner_encoding: ['upstream', 'proposed', 'annotate_2026', 'set_owner_2021'],
};

/** Statistics (`/sys/kernel/debug/kvm/...`, KVM_GET_STATS_FD) the model counts. */
export const STATS: readonly string[] = [
  // per VM
  'mmu_shadow_zapped', 'mmu_pte_write', 'mmu_pde_zapped', 'mmu_flooded', 'mmu_recycled', 'mmu_cache_miss',
  'mmu_unsync', 'pages_4k', 'pages_2m', 'pages_1g', 'nx_lpage_splits', 'max_mmu_page_hash_collisions',
  'max_mmu_rmap_size', 'remote_tlb_flush', 'remote_tlb_flush_requests',
  // per vCPU (summed over vCPUs)
  'pf_taken', 'pf_fixed', 'pf_emulate', 'pf_spurious', 'pf_fast', 'pf_mmio_spte_created', 'pf_guest',
  'tlb_flush', 'invlpg', 'exits', 'mmio_exits', 'hypercalls',
  // arm64
  'mmio_exit_user', 'mmio_exit_kernel',
  // model counters, not KVM stats (SEV-SNP VMs): assigned RMP entries by size (a 2M entry counts once),
  // PSMASHes and successful RMPUPDATEs so far
  'rmp_assigned_2m', 'rmp_assigned_4k', 'rmp_psmash', 'rmp_rmpupdate',
  // KVM_HC_MAP_GPA_RANGE exits page-state changes raised so far (SEV-SNP)
  'psc_exits',
];

export const SPTE_FIELDS: readonly string[] = [
  'kind', 'level', 'value', 'pfn', 'present', 'r', 'w', 'x', 'u', 'a', 'd', 'ps', 'nx', 'mmu_writable',
  'host_writable', 'ad', 'access_tracked', 'memtype', 'ipat', 'sve', 'mmio_gen', 'sptep', 'bit.*',
];

export const ROLE_FIELDS: readonly string[] = [
  'role', 'role.level', 'role.has_4_byte_gpte', 'role.quadrant', 'role.direct', 'role.access', 'role.invalid',
  'role.efer_nx', 'role.cr0_wp', 'role.smep_andnot_wp', 'role.smap_andnot_wp', 'role.ad_disabled',
  'role.guest_mode', 'role.passthrough', 'role.is_mirror', 'role.smm',
];

const ERRNO = ['EPERM', 'ENOENT', 'EINTR', 'EIO', 'E2BIG', 'EAGAIN', 'ENOMEM', 'EFAULT', 'EBUSY', 'EEXIST', 'EINVAL',
  'ENOSPC', 'ERANGE', 'EOPNOTSUPP', 'EHWPOISON', 'ENXIO', 'ENODEV'] as const;

/** errno numbers of the names above (Linux generic values). */
export const ERRNO_VALUES: Readonly<Record<string, number>> = {
  EPERM: 1, ENOENT: 2, EINTR: 4, EIO: 5, E2BIG: 7, ENXIO: 6, EAGAIN: 11, ENOMEM: 12, EFAULT: 14, EBUSY: 16,
  EEXIST: 17, ENODEV: 19, EINVAL: 22, ENOSPC: 28, ERANGE: 34, EOPNOTSUPP: 95, EHWPOISON: 133,
};
export const ERRNO_NAMES: readonly string[] = ERRNO;

export const EXIT_REASONS = ['KVM_EXIT_MEMORY_FAULT', 'KVM_EXIT_MMIO', 'KVM_EXIT_HYPERCALL', 'KVM_EXIT_INTERNAL_ERROR',
  'KVM_EXIT_SHUTDOWN', 'KVM_EXIT_FAIL_ENTRY', 'none'] as const;

const pfn: ArgSpec = { name: 'pfn', type: 'u64', required: true, doc: 'host page frame number', space: 'pa' };
const nrPages: ArgSpec = { name: 'nr_pages', type: 'int', min: 1, max: 1 << 20, doc: 'number of pages (default 1)' };
const gfnArg: ArgSpec = { name: 'gfn', type: 'u64', required: true, doc: 'guest frame number (IPA >> 12)' };

/** INVPCID's types in the order of their register value (0-3), as the kernel's INVPCID_TYPE_* names. */
export const INVPCID_TYPES: readonly string[] = ['indiv_addr', 'single_ctxt', 'all_incl_global', 'all_non_global'];

export const STATEMENTS: readonly StmtSpec[] = [
  // ---------------------------------------------------------------- set-up
  {
    keyword: 'vm', group: 'setup',
    doc: 'Describe the VM and host before anything else happens (KVM_CREATE_VM runs at the first non-set-up line).',
    args: [
      { name: 'arch', type: 'enum', values: ['x86', 'arm64'], bare: true, doc: 'architecture (default x86)' },
      { name: 'vendor', type: 'enum', values: ['intel', 'amd'], bare: true, doc: 'x86 vendor: EPT (intel) or NPT (amd); default intel' },
      { name: 'tdp', type: 'bool', doc: 'two-dimensional paging (EPT/NPT); off = shadow paging (default on)' },
      { name: 'tdp_levels', type: 'int', min: 4, max: 5, doc: 'host TDP levels (max_tdp_level), 4 or 5 (default 4)' },
      { name: 'maxphyaddr', type: 'int', min: 32, max: 52, doc: 'guest MAXPHYADDR (CPUID 0x80000008 EAX[7:0]); default 46' },
      { name: 'type', type: 'enum', values: ['default', 'sw_protected', 'snp', 'tdx', 'protected'], doc: 'VM type: KVM_X86_DEFAULT_VM, KVM_X86_SW_PROTECTED_VM, KVM_X86_SNP_VM, KVM_X86_TDX_VM; arm64 KVM_VM_TYPE_ARM_PROTECTED (needs mode=protected)' },
      { name: 'mode', type: 'enum', values: ['vhe', 'nvhe', 'protected'], doc: 'arm64 kvm-arm.mode: protected runs pKVM (guest stage-2 at EL2, host stage-2 ownership); default vhe' },
      { name: 'gpaw', type: 'int', min: 48, max: 52, doc: 'TDX guest physical address width (shared bit = 47 or 51)' },
      { name: 'ipa_bits', type: 'int', min: 32, max: 52, doc: 'arm64 IPA size (VTCR_EL2.T0SZ = 64 - ipa_bits); default 40' },
      { name: 'vcpus', type: 'int', min: 1, max: 1024, doc: 'number of vCPUs (default 1)' },
      { name: 'pa_bits', type: 'int', min: 32, max: 52, doc: 'arm64 host physical address size (host stage-2 IPA size); default 40' },
      { name: 'host_memory', type: 'range', doc: 'arm64 host DRAM (memblock) range; default 0x80000000+2G', space: 'pa' },
    ],
    example: 'vm arch=x86 vendor=intel tdp=on tdp_levels=4 maxphyaddr=46 type=default vcpus=1',
  },
  {
    keyword: 'param', group: 'setup',
    doc: 'Set a KVM module parameter (kvm.tdp_mmu, kvm.eager_page_split, kvm.nx_huge_pages, kvm.mmio_caching, ...) before the VM exists. `--set NAME=VALUE` overrides it.',
    args: [], checks: Object.keys(PARAMS),
    example: 'param tdp_mmu=Y eager_page_split=N nx_huge_pages=off',
  },
  {
    keyword: 'variant', group: 'setup',
    doc: 'Choose a design variant: upstream (what Linux merged) or proposed (the alternative argued on kvm@). `--set NAME=VALUE` overrides it.',
    args: [], checks: Object.keys(VARIANTS),
    example: 'variant tdx_stolen_bits=upstream',
  },
  // ---------------------------------------------------------------- userspace (ioctls)
  {
    keyword: 'KVM_SET_USER_MEMORY_REGION2', group: 'userspace',
    doc: 'Create, modify (flags), move or delete (size=0) a memslot, as struct kvm_userspace_memory_region2.',
    args: [
      { name: 'slot', type: 'int', required: true, min: 0, max: 32767, doc: 'slot id (bits 15:0 of kvm_userspace_memory_region2.slot)' },
      { name: 'as_id', type: 'int', min: 0, max: 1, doc: 'address space (1 = SMM), bits 31:16 of .slot' },
      { name: 'gpa', type: 'u64', aliases: ['guest_phys_addr'], doc: 'guest_phys_addr', space: 'gpa' },
      { name: 'size', type: 'size', required: true, aliases: ['memory_size'], doc: 'memory_size; 0 deletes the slot' },
      { name: 'hva', type: 'u64', aliases: ['userspace_addr'], doc: 'userspace_addr (default: chosen by the model)', space: 'hva' },
      { name: 'flags', type: 'flags', values: ['KVM_MEM_LOG_DIRTY_PAGES', 'KVM_MEM_READONLY', 'KVM_MEM_GUEST_MEMFD'], doc: 'memslot flags' },
      { name: 'guest_memfd', type: 'ident', doc: 'guest_memfd handle from KVM_CREATE_GUEST_MEMFD' },
      { name: 'guest_memfd_offset', type: 'u64', aliases: ['offset'], doc: 'offset into the guest_memfd' },
      { name: 'backing', type: 'enum', values: SIZES_X86, doc: 'host page size backing the HVA range (THP 2M, hugetlbfs 1G); default 4K' },
    ],
    example: 'KVM_SET_USER_MEMORY_REGION2 slot=0 gpa=0 size=1G backing=2M',
  },
  {
    keyword: 'KVM_CREATE_GUEST_MEMFD', group: 'userspace',
    doc: 'Create a guest_memfd file and name it for later lines.',
    args: [
      { name: 'fd', type: 'ident', required: true, doc: 'name of the new file (e.g. gmem0)' },
      { name: 'size', type: 'size', required: true, doc: 'file size, page aligned' },
      { name: 'flags', type: 'flags', values: ['GUEST_MEMFD_FLAG_MMAP', 'GUEST_MEMFD_FLAG_INIT_SHARED'], doc: 'creation flags' },
      {
        name: 'folio', type: 'enum', values: ['4K', '2M'],
        doc: 'model option, not uapi: folio size guest_memfd allocates (default 4K). Upstream 6.18 guest_memfd allocates order-0 (4K) folios only; 2M stands for the proposed huge-page guest_memfd (PMD-order folios where an aligned 2M range of the file is free)',
      },
    ],
    example: 'KVM_CREATE_GUEST_MEMFD fd=gmem0 size=1G',
  },
  {
    keyword: 'fallocate', group: 'userspace',
    doc: 'fallocate(2) on a guest_memfd: allocate, or punch a hole (zaps private mappings, returns pages to shared).',
    args: [
      { name: 'fd', type: 'ident', required: true, doc: 'guest_memfd name' },
      { name: 'mode', type: 'flags', values: ['FALLOC_FL_PUNCH_HOLE', 'FALLOC_FL_KEEP_SIZE'], bare: true, doc: 'fallocate mode; PUNCH_HOLE needs KEEP_SIZE' },
      { name: 'offset', type: 'u64', required: true, doc: 'file offset' },
      { name: 'len', type: 'size', required: true, doc: 'length' },
    ],
    example: 'fallocate fd=gmem0 mode=FALLOC_FL_PUNCH_HOLE|FALLOC_FL_KEEP_SIZE offset=0 len=2M',
  },
  {
    keyword: 'KVM_SET_MEMORY_ATTRIBUTES', group: 'userspace',
    doc: 'Set attributes of a GPA range (struct kvm_memory_attributes).',
    args: [
      { name: 'address', type: 'u64', required: true, aliases: ['gpa'], doc: 'first GPA', space: 'gpa' },
      { name: 'size', type: 'size', required: true, doc: 'bytes' },
      { name: 'attributes', type: 'flags', values: ['KVM_MEMORY_ATTRIBUTE_PRIVATE'], doc: 'attributes (0 = shared)' },
    ],
    example: 'KVM_SET_MEMORY_ATTRIBUTES address=0x100000000 size=2M attributes=KVM_MEMORY_ATTRIBUTE_PRIVATE',
  },
  {
    keyword: 'KVM_GET_DIRTY_LOG', group: 'userspace',
    doc: 'Fetch (and, without manual protect, clear and write-protect) the dirty bitmap of a slot.',
    args: [{ name: 'slot', type: 'int', required: true, min: 0, max: 32767, doc: 'slot id' }],
    example: 'KVM_GET_DIRTY_LOG slot=0',
  },
  {
    keyword: 'KVM_CLEAR_DIRTY_LOG', group: 'userspace',
    doc: 'Clear dirty bits and re-protect pages (KVM_CAP_MANUAL_DIRTY_LOG_PROTECT2).',
    args: [
      { name: 'slot', type: 'int', required: true, min: 0, max: 32767, doc: 'slot id' },
      { name: 'first_page', type: 'u64', doc: 'first page, relative to the slot (multiple of 64)' },
      { name: 'num_pages', type: 'u64', required: true, doc: 'number of pages' },
    ],
    example: 'KVM_CLEAR_DIRTY_LOG slot=0 first_page=0 num_pages=512',
  },
  {
    keyword: 'KVM_ENABLE_CAP', group: 'userspace',
    doc: 'Enable a VM capability.',
    args: [
      { name: 'cap', type: 'enum', required: true, positional: true, values: ['KVM_CAP_MANUAL_DIRTY_LOG_PROTECT2', 'KVM_CAP_EXIT_HYPERCALL', 'KVM_CAP_DISABLE_QUIRKS2'], doc: 'capability' },
      {
        name: 'args0', type: 'flags', aliases: ['arg'], values: ['KVM_DIRTY_LOG_MANUAL_PROTECT_ENABLE', 'KVM_DIRTY_LOG_INITIALLY_SET', 'KVM_EXIT_HYPERCALL_VALID_MASK', 'KVM_X86_QUIRK_SLOT_ZAP_ALL'],
        doc: 'args[0] (KVM_CAP_EXIT_HYPERCALL: the hypercalls to forward, 1 << KVM_HC_MAP_GPA_RANGE; KVM_CAP_DISABLE_QUIRKS2: the quirks to disable)',
      },
    ],
    example: 'KVM_ENABLE_CAP KVM_CAP_MANUAL_DIRTY_LOG_PROTECT2 args0=KVM_DIRTY_LOG_MANUAL_PROTECT_ENABLE|KVM_DIRTY_LOG_INITIALLY_SET',
  },
  {
    keyword: 'KVM_PRE_FAULT_MEMORY', group: 'userspace',
    doc: 'Map a GPA range ahead of the guest (struct kvm_pre_fault_memory), on a vCPU.',
    args: [
      { name: 'gpa', type: 'u64', required: true, doc: 'first GPA', space: 'gpa' },
      { name: 'size', type: 'size', required: true, doc: 'bytes' },
      vcpu,
    ],
    example: 'KVM_PRE_FAULT_MEMORY gpa=0 size=2M',
  },
  {
    keyword: 'KVM_SEV_SNP_LAUNCH_START', group: 'userspace',
    doc: 'SEV-SNP: create the firmware context with a guest policy (KVM_MEMORY_ENCRYPT_OP, struct kvm_sev_snp_launch_start).',
    args: [
      { name: 'policy', type: 'u64', required: true, doc: 'guest policy: bit 16 (SMT allowed) and bit 17 (must be one) set, bit 20 (single socket) clear' },
      { name: 'flags', type: 'u64', doc: 'must be 0' },
    ],
    example: 'KVM_SEV_SNP_LAUNCH_START policy=0x30000',
  },
  {
    keyword: 'KVM_SEV_SNP_LAUNCH_UPDATE', group: 'userspace',
    doc: 'SEV-SNP: populate initial private pages through guest_memfd (struct kvm_sev_snp_launch_update); the firmware leaves them assigned and validated.',
    args: [
      { name: 'gfn_start', type: 'u64', doc: 'first gfn' },
      { name: 'gpa', type: 'u64', doc: 'or the first GPA (page-aligned)', space: 'gpa' },
      { name: 'len', type: 'size', required: true, doc: 'bytes (a page multiple)' },
      { name: 'type', type: 'enum', values: ['NORMAL', 'ZERO', 'UNMEASURED', 'SECRETS', 'CPUID'], doc: 'KVM_SEV_SNP_PAGE_TYPE_* (default NORMAL)' },
      { name: 'flags', type: 'u64', doc: 'must be 0' },
    ],
    oneOf: ['gfn_start', 'gpa'],
    example: 'KVM_SEV_SNP_LAUNCH_UPDATE gpa=0x100000 len=16K type=NORMAL',
  },
  {
    keyword: 'KVM_SEV_SNP_LAUNCH_FINISH', group: 'userspace',
    doc: 'SEV-SNP: measure every vCPU VMSA and finish the launch (struct kvm_sev_snp_launch_finish); KVM_PRE_FAULT_MEMORY works from now on.',
    args: [{ name: 'flags', type: 'u64', doc: 'must be 0' }],
    example: 'KVM_SEV_SNP_LAUNCH_FINISH',
  },
  {
    keyword: 'memslot delete', group: 'userspace',
    doc: 'Delete a memslot (KVM_SET_USER_MEMORY_REGION2 with memory_size 0).',
    args: [{ name: 'slot', type: 'int', required: true, min: 0, max: 32767, doc: 'slot id' }],
    example: 'memslot delete slot=1',
  },
  {
    keyword: 'memslot move', group: 'userspace',
    doc: 'Move a memslot to a new GPA (KVM_SET_USER_MEMORY_REGION2 with a new guest_phys_addr).',
    args: [
      { name: 'slot', type: 'int', required: true, min: 0, max: 32767, doc: 'slot id' },
      { name: 'gpa', type: 'u64', required: true, doc: 'new guest_phys_addr', space: 'gpa' },
    ],
    example: 'memslot move slot=1 gpa=0x200000000',
  },
  {
    keyword: 'dirty_log enable', group: 'userspace',
    doc: 'Set KVM_MEM_LOG_DIRTY_PAGES on a slot (KVM_SET_USER_MEMORY_REGION2 with the flag added).',
    args: [{ name: 'slot', type: 'int', required: true, min: 0, max: 32767, doc: 'slot id' }],
    example: 'dirty_log enable slot=0',
  },
  {
    keyword: 'dirty_log disable', group: 'userspace',
    doc: 'Clear KVM_MEM_LOG_DIRTY_PAGES on a slot (huge pages are recovered).',
    args: [{ name: 'slot', type: 'int', required: true, min: 0, max: 32767, doc: 'slot id' }],
    example: 'dirty_log disable slot=0',
  },
  // ---------------------------------------------------------------- host
  {
    keyword: 'host invalidate', group: 'host',
    doc: 'An mmu-notifier invalidation of a host range (invalidate_range_start/end).',
    args: [
      { name: 'hva', type: 'range', doc: 'host virtual range', space: 'hva' },
      { name: 'gpa', type: 'range', doc: 'or: the GPA range of a memslot, translated to its HVA', space: 'gpa' },
      { name: 'reason', type: 'enum', bare: true, values: ['reclaim', 'migration', 'numa', 'munmap', 'mprotect', 'soft_dirty', 'ksm'], doc: 'why (sets the mmu_notifier_event)' },
      { name: 'event', type: 'enum', values: ['MMU_NOTIFY_UNMAP', 'MMU_NOTIFY_CLEAR', 'MMU_NOTIFY_PROTECTION_VMA', 'MMU_NOTIFY_PROTECTION_PAGE', 'MMU_NOTIFY_SOFT_DIRTY', 'MMU_NOTIFY_RELEASE', 'MMU_NOTIFY_MIGRATE', 'MMU_NOTIFY_EXCLUSIVE'], doc: 'mmu_notifier_event, if given explicitly' },
    ],
    oneOf: ['hva', 'gpa'],
    example: 'host invalidate gpa 0x0..0x200000 reason=migration',
  },
  {
    keyword: 'host age', group: 'host',
    doc: 'Page aging: the clear_young (or test_young) notifier over a range.',
    args: [
      { name: 'hva', type: 'range', doc: 'host virtual range', space: 'hva' },
      { name: 'gpa', type: 'range', doc: 'or: a GPA range', space: 'gpa' },
      { name: 'op', type: 'enum', bare: true, values: ['clear_young', 'test_young', 'clear_flush_young'], doc: 'which notifier (default clear_young)' },
    ],
    oneOf: ['hva', 'gpa'],
    example: 'host age gpa 0x0..0x40000000',
  },
  {
    keyword: 'host nx_recovery', group: 'host',
    doc: 'One pass of the kvm-nx-lpage-recovery worker.',
    args: [],
    example: 'host nx_recovery',
  },
  {
    keyword: 'host stage2_fault', group: 'host',
    doc: 'arm64 pKVM: the host touches a physical address and takes a host stage-2 abort (handle_host_mem_abort).',
    args: [
      { name: 'addr', type: 'u64', required: true, doc: 'host physical address', space: 'pa' },
      { name: 'access', type: 'enum', bare: true, values: ['read', 'write', 'exec'], doc: 'access type (default read)' },
    ],
    example: 'host stage2_fault addr=0x80000000 write',
  },
  // ---------------------------------------------------------------- guest
  {
    keyword: 'guest set', group: 'guest',
    doc: 'Load control registers on a vCPU (as the guest would with MOV to CR / WRMSR EFER).',
    args: [
      { name: 'cr0', type: 'u64', doc: 'CR0' },
      { name: 'cr3', type: 'u64', doc: 'CR3' },
      { name: 'cr4', type: 'u64', doc: 'CR4' },
      { name: 'efer', type: 'u64', doc: 'IA32_EFER' },
      vcpu,
    ],
    oneOf: ['cr0', 'cr3', 'cr4', 'efer'],
    example: 'guest set cr0=0x80010011 cr4=0x20 efer=0xd00 cr3=0x10000',
  },
  {
    keyword: 'guest map', group: 'guest',
    doc: 'Build guest page tables under a CR3 mapping a GVA range to GPAs (written into guest memory, like the selftests\' virt_map).',
    args: [
      { name: 'cr3', type: 'u64', required: true, doc: 'root table GPA', space: 'gpa' },
      { name: 'gva', type: 'range', required: true, doc: 'virtual range', space: 'gva' },
      { name: 'gpa', type: 'u64', required: true, doc: 'first physical address', space: 'gpa' },
      { name: 'page', type: 'enum', values: SIZES_X86, doc: 'guest page size (default 4K)' },
      { name: 'flags', type: 'flags', values: ['rw', 'user', 'nx', 'accessed', 'dirty', 'global', 'pwt', 'pcd', 'ro'], doc: 'leaf flags; present is implied (default rw)' },
      { name: 'mode', type: 'enum', values: ['32bit', 'pae', '4level', '5level'], doc: 'paging format (default 4level)' },
      { name: 'pool', type: 'range', doc: 'GPAs the builder may take for new tables (default: pages after CR3)', space: 'gpa' },
    ],
    example: 'guest map cr3=0x10000 gva 0x400000..0x800000 gpa=0x200000 page=4K flags=rw,user',
  },
  {
    keyword: 'guest write_pte', group: 'guest',
    doc: 'The guest stores a new value in the page-table entry that maps a GVA at a level (a guest write: write-protection and unsync apply).',
    args: [
      { name: 'gva', type: 'u64', required: true, doc: 'virtual address whose walk selects the entry', space: 'gva' },
      { name: 'level', type: 'int', required: true, min: 1, max: 5, doc: '1 = PTE, 2 = PDE, 3 = PDPTE, 4 = PML4E, 5 = PML5E' },
      { name: 'value', type: 'u64', required: true, doc: 'new entry' },
      { name: 'cr3', type: 'u64', doc: 'table root (default: the vCPU\'s CR3)', space: 'gpa' },
      { name: 'via', type: 'u64', doc: 'shadow paging: the GVA at which the guest has that page table mapped (its store goes through it)', space: 'gva' },
      vcpu,
    ],
    example: 'guest write_pte gva=0x400000 level=1 value=0x200063',
  },
  ...(['read', 'write', 'fetch'] as const).map((a): StmtSpec => ({
    keyword: `guest ${a}`, group: 'guest',
    doc: `The guest ${a === 'fetch' ? 'executes from' : a + 's'} memory at a GVA (through its page tables) or a GPA/IPA, once per step over a range.`,
    args: [
      { name: 'gva', type: 'range', doc: 'virtual address or range', space: 'gva' },
      { name: 'gpa', type: 'range', aliases: ['ipa'], doc: 'physical address or range (x86 paging off / TDP fault; arm64 IPA)', space: 'gpa' },
      { name: 'step', type: 'size', doc: 'stride over a range (default 4K)' },
      { name: 'cpl', type: 'enum', bare: true, values: ['user', 'supervisor'], doc: 'privilege of the access (default supervisor)' },
      { name: 'visibility', type: 'enum', bare: true, values: ['private', 'shared'], doc: 'SNP C-bit / TDX shared bit / SW-protected private access' },
      ...(a === 'write' ? [{ name: 'value', type: 'u64', doc: 'data written (default 0)' } as ArgSpec] : []),
      { name: 'repeat', type: 'int', min: 1, max: 1 << 20, doc: 'do the whole access this many times' },
      vcpu,
    ],
    oneOf: ['gva', 'gpa'],
    example: a === 'write' ? 'guest write gpa 0x0..0x40000000 step 4K' : `guest ${a} gva=0x400000 user`,
  })),
  {
    keyword: 'guest invlpg', group: 'guest',
    doc: 'INVLPG: the guest flushes one GVA.',
    args: [{ name: 'gva', type: 'u64', required: true, doc: 'virtual address', space: 'gva' }, vcpu],
    example: 'guest invlpg gva=0x400000',
  },
  {
    keyword: 'guest invpcid', group: 'guest',
    doc: 'INVPCID: the guest flushes one address of a PCID, one PCID, or every PCID. Intercepted only with TDP off.',
    args: [
      {
        name: 'type', type: 'enum', required: true, values: [...INVPCID_TYPES],
        doc: 'INVPCID type 0-3 (INVPCID_TYPE_INDIV_ADDR, _SINGLE_CTXT, _ALL_INCL_GLOBAL, _ALL_NON_GLOBAL)',
      },
      { name: 'pcid', type: 'u64', doc: "descriptor's PCID quadword (default 0; bits above 11 set: #GP)" },
      { name: 'gva', type: 'u64', doc: "descriptor's linear address, for indiv_addr (default 0; non-canonical: #GP)", space: 'gva' },
      vcpu,
    ],
    example: 'guest invpcid type=single_ctxt pcid=2',
  },
  {
    keyword: 'guest pvalidate', group: 'guest',
    doc: 'SEV-SNP PVALIDATE: validate or rescind a page in the RMP.',
    args: [
      { name: 'gva', type: 'u64', doc: 'virtual address (rAX)', space: 'gva' },
      { name: 'gpa', type: 'u64', doc: 'or, with paging off, the physical address', space: 'gpa' },
      { name: 'size', type: 'enum', values: ['4K', '2M'], doc: 'page size (rCX; default 4K)' },
      { name: 'validate', type: 'bool', required: true, doc: '1 = validate, 0 = rescind (rDX)' },
      vcpu,
    ],
    oneOf: ['gva', 'gpa'],
    example: 'guest pvalidate gpa=0x100000000 size=4K validate=1',
  },
  {
    keyword: 'guest psc', group: 'guest',
    doc: 'Page-state change request (GHCB PSC / KVM_HC_MAP_GPA_RANGE): exits to userspace asking for private or shared.',
    args: [
      { name: 'gpa', type: 'range', required: true, doc: 'range to convert', space: 'gpa' },
      { name: 'to', type: 'enum', bare: true, required: true, values: ['private', 'shared', 'psmash', 'unsmash'], doc: 'requested state, or a PSMASH/UNSMASH hint' },
      { name: 'via', type: 'enum', values: ['ghcb', 'msr'], doc: 'GHCB PSC NAE buffer (default; 2M entries where aligned) or the GHCB MSR protocol (one 4K page per request)' },
      { name: 'serve', type: 'bool', doc: 'the VMM serves each exit (KVM_SET_MEMORY_ATTRIBUTES; to shared also punches the guest_memfd hole) until the guest resumes' },
      vcpu,
    ],
    example: 'guest psc gpa 0x100000000+2M private',
  },
  {
    keyword: 'guest map_gpa', group: 'guest',
    doc: 'TDX TDG.VP.VMCALL<MapGPA>: ask to convert a GPA range (R12/R13); KVM forwards it as KVM_HC_MAP_GPA_RANGE exits of at most 2M.',
    args: [
      { name: 'gpa', type: 'range', required: true, doc: 'range to convert, without the shared bit', space: 'gpa' },
      { name: 'to', type: 'enum', bare: true, required: true, values: ['private', 'shared'], doc: 'requested state (shared sets the shared bit in R12)' },
      { name: 'serve', type: 'bool', doc: 'the VMM serves each exit (KVM_SET_MEMORY_ATTRIBUTES; to shared also punches the guest_memfd hole) until the TD resumes' },
      vcpu,
    ],
    example: 'guest map_gpa gpa 0x200000+4M shared serve=1',
  },
  // ---------------------------------------------------------------- pKVM (arm64)
  ...pkvmCalls(),
  // ---------------------------------------------------------------- expectations
  {
    keyword: 'expect spte', group: 'expect',
    doc: 'Check the SPTE (x86) that maps a GPA: the leaf, or the entry at `at_level`.',
    args: [
      { name: 'gpa', type: 'u64', doc: 'guest physical address', space: 'gpa' },
      { name: 'gfn', type: 'u64', doc: 'or a gfn' },
      { name: 'gva', type: 'u64', doc: 'or (shadow paging) a guest virtual address', space: 'gva' },
      { name: 'at_level', type: 'int', min: 1, max: 5, doc: 'look at the entry of this level instead of the last one reached' },
      { name: 'root', type: 'enum', values: ['direct', 'mirror'], doc: 'TDX: which root (default direct)' },
      vcpu,
    ],
    oneOf: ['gpa', 'gfn', 'gva'],
    checks: SPTE_FIELDS, compare: true,
    example: 'expect spte gpa=0x1000 kind=leaf level=1 w=1 pfn=0x12341',
  },
  {
    keyword: 'expect sp', group: 'expect',
    doc: 'Check shadow pages (struct kvm_mmu_page) with a gfn and level: `count`, or that one of them has the given fields.',
    args: [
      { name: 'gfn', type: 'u64', doc: 'sp->gfn' },
      { name: 'level', type: 'int', min: 1, max: 5, doc: 'role.level' },
      { name: 'root', type: 'enum', values: ['direct', 'mirror'], doc: 'only pages under this kind of root' },
    ],
    checks: [...ROLE_FIELDS, 'count', 'unsync', 'unsync_children', 'parent_count', 'pae_root', 'nx_huge_page_disallowed', 'root_count', 'tdp_mmu_page', 'mmu_valid_gen', 'present_sptes'],
    compare: true,
    example: 'expect sp gfn=0 level=4 role.direct=1 role.access=7',
  },
  {
    keyword: 'expect roots', group: 'expect',
    doc: "Check the set of roots (tdp_mmu_roots / active_mmu_pages roots); under shadow paging a vCPU's current root (cached=0) and prev_roots (cached=1) with the CR3 (pgd) each is cached under.",
    args: [vcpu, { name: 'type', type: 'enum', values: ['direct', 'mirror', 'shadow'], doc: 'only roots of this kind' }],
    checks: ['count', 'valid', 'invalid', ...ROLE_FIELDS, 'gfn', 'root_count', 'pgd', 'cached'], compare: true,
    example: 'expect roots count=1 invalid=0',
  },
  {
    keyword: 'expect root', group: 'expect',
    doc: 'Check the current root of a vCPU (mmu->root); under shadow paging `kind` is sp, pae, pml4, pml5 or dummy.',
    args: [vcpu, { name: 'root', type: 'enum', values: ['direct', 'mirror'], doc: 'which root (default direct)' }],
    checks: [...ROLE_FIELDS, 'kind', 'hpa', 'pgd', 'root_count'], compare: true,
    example: 'expect root role.level=4 role.direct=1',
  },
  {
    keyword: 'expect exit', group: 'expect',
    doc: 'Check the exit to userspace made by the last statement (or `none`).',
    args: [
      { name: 'reason', type: 'enum', positional: true, required: true, values: EXIT_REASONS, doc: 'exit_reason' },
      vcpu,
    ],
    checks: ['gpa', 'size', 'flags', 'is_write', 'len', 'data', 'nr', 'args0', 'args1', 'args2', 'ret', 'exits'], compare: true,
    example: 'expect exit KVM_EXIT_MEMORY_FAULT gpa=0x100000000 size=4K flags=KVM_MEMORY_EXIT_FLAG_PRIVATE',
  },
  {
    keyword: 'expect exception', group: 'expect',
    doc: 'Check the exception the last statement raised inside the guest (no exit to userspace): a #PF from the guest\'s own tables, a #VC for an unvalidated SEV-SNP page, or none.',
    args: [
      { name: 'vector', type: 'enum', positional: true, required: true, values: ['none', 'PF', 'VC', 'GP'], doc: 'exception vector (without #)' },
      vcpu,
    ],
    checks: ['error_code', 'address'], compare: true,
    example: 'expect exception PF error_code=5 address=0x401000',
  },
  {
    keyword: 'expect ret', group: 'expect',
    doc: 'Check the return value of the last statement (0, -errno, or a count such as the notifier\'s "young").',
    args: [{ name: 'value', type: 'errno', positional: true, required: true, doc: '0, 1, -EINVAL, -EPERM, ...' }],
    example: 'expect ret -EPERM',
  },
  {
    keyword: 'expect stat', group: 'expect',
    doc: 'Compare KVM statistics counters.',
    args: [], checks: STATS, compare: true,
    example: 'expect stat pf_fixed >= 1 pages_2m=512',
  },
  {
    keyword: 'expect rmp', group: 'expect',
    doc: 'Check an SEV-SNP RMP entry, by host pfn or by the GPA that maps it.',
    args: [
      { name: 'pfn', type: 'u64', doc: 'host pfn', space: 'pa' },
      { name: 'gpa', type: 'u64', doc: 'or a guest physical address (resolved through the memslot/guest_memfd)', space: 'gpa' },
    ],
    oneOf: ['pfn', 'gpa'],
    checks: ['assigned', 'pagesize', 'immutable', 'gpa', 'asid', 'validated', 'vmsa', 'level'], compare: true,
    example: 'expect rmp gpa=0x100000000 assigned=1 validated=0 pagesize=0',
  },
  {
    keyword: 'expect stage2', group: 'expect',
    doc: 'Check an arm64 stage-2 descriptor (guest stage-2 by IPA, or host stage-2 by PA).',
    args: [
      { name: 'ipa', type: 'u64', doc: 'guest IPA', space: 'gpa' },
      { name: 'pa', type: 'u64', doc: 'or a host physical address (host stage-2, pKVM)', space: 'pa' },
      { name: 'at_level', type: 'int', min: -1, max: 3, doc: 'look at this level instead of the last one reached' },
    ],
    oneOf: ['ipa', 'pa'],
    checks: ['valid', 'type', 'level', 'value', 'oa', 'pfn', 'r', 'w', 'x', 'xn', 'af', 'sh', 'memattr', 'sw', 'state', 'owner', 'annotation', 'bit.*'],
    compare: true,
    example: 'expect stage2 ipa=0x80000000 valid=1 type=page level=3 w=1',
  },
  {
    keyword: 'expect page_state', group: 'expect',
    doc: 'Check pKVM ownership of a physical page: host, hyp and guest states.',
    args: [
      { name: 'pfn', type: 'u64', doc: 'host pfn', space: 'pa' },
      { name: 'phys', type: 'u64', doc: 'or a physical address', space: 'pa' },
      { name: 'gfn', type: 'u64', doc: 'or the guest gfn (guest state only)' },
    ],
    oneOf: ['pfn', 'phys', 'gfn'],
    checks: ['host', 'hyp', 'guest', 'refcount', 'host_share_guest_count', 'owner'], compare: true,
    example: 'expect page_state pfn=0x80000 host=SHARED_OWNED hyp=SHARED_BORROWED',
  },
  {
    keyword: 'expect trace', group: 'expect',
    doc: 'Check the tracepoint lines the last statement emitted: an event name, a text pattern (`*` matches anything), record fields (`level=1`), a count.',
    args: [
      { name: 'event', type: 'ident', positional: true, doc: 'tracepoint name (kvm_mmu_set_spte, ...)' },
      { name: 'text', type: 'string', positional: true, doc: 'payload pattern; `*` is a wildcard' },
      { name: 'scope', type: 'enum', values: ['last', 'all'], doc: 'events of the last statement (default) or of the whole run' },
    ],
    // `*`: any record field of the event (checked against its tracefs format at parse time).
    checks: ['count', '*'], compare: true,
    example: 'expect trace kvm_mmu_set_spte "gfn 1 spte * level 1 at *" count=1',
  },
  {
    keyword: 'expect dirty', group: 'expect',
    doc: 'Check the bitmap returned by the last KVM_GET_DIRTY_LOG of a slot.',
    args: [
      { name: 'slot', type: 'int', required: true, min: 0, max: 32767, doc: 'slot id' },
      { name: 'gfn', type: 'u64', doc: 'a gfn in the slot (for `dirty`)' },
    ],
    checks: ['dirty', 'count'], compare: true,
    example: 'expect dirty slot=0 count=512',
  },
  {
    keyword: 'expect attributes', group: 'expect',
    doc: 'Check the memory attributes of a GPA.',
    args: [{ name: 'gpa', type: 'u64', required: true, doc: 'guest physical address', space: 'gpa' }],
    checks: ['private', 'attributes'], compare: true,
    example: 'expect attributes gpa=0x100000000 private=1',
  },
  {
    keyword: 'expect lpage', group: 'expect',
    doc: 'Check kvm_lpage_info of the huge page containing a gfn: disallow_lpage and the KVM_LPAGE_MIXED_FLAG.',
    args: [
      { name: 'gfn', type: 'u64', required: true, doc: 'a gfn' },
      { name: 'level', type: 'int', required: true, min: 2, max: 3, doc: '2 = 2M, 3 = 1G' },
    ],
    checks: ['disallow_lpage', 'mixed'], compare: true,
    example: 'expect lpage gfn=0x100000 level=2 mixed=1',
  },
  {
    keyword: 'expect memslot', group: 'expect',
    doc: 'Check a memslot.',
    args: [{ name: 'slot', type: 'int', required: true, min: 0, max: 32767, doc: 'slot id' }, { name: 'as_id', type: 'int', min: 0, max: 1, doc: 'address space' }],
    checks: ['exists', 'base_gfn', 'npages', 'flags', 'userspace_addr', 'dirty_logging'], compare: true,
    example: 'expect memslot slot=0 npages=262144',
  },
  {
    keyword: 'expect walk', group: 'expect',
    doc: 'Walk the guest page tables as KVM does (gva_to_gpa) and check the outcome.',
    args: [
      { name: 'gva', type: 'u64', required: true, doc: 'virtual address', space: 'gva' },
      { name: 'access', type: 'enum', bare: true, values: ['read', 'write', 'fetch'], doc: 'access (default read)' },
      { name: 'cpl', type: 'enum', bare: true, values: ['user', 'supervisor'], doc: 'privilege (default supervisor)' },
      vcpu,
    ],
    checks: ['gpa', 'fault', 'error_code', 'level', 'pte_access'], compare: true,
    example: 'expect walk gva=0x400000 write gpa=0x200000 fault=0',
  },
  // ---------------------------------------------------------------- meta
  {
    keyword: 'include', group: 'meta',
    doc: 'Read another scenario file here (path relative to this file).',
    args: [{ name: 'path', type: 'string', positional: true, required: true, doc: 'file name in double quotes' }],
    example: 'include "common/x86-4level.kvmmmu"',
  },
];

function pkvmCalls(): StmtSpec[] {
  const prot: ArgSpec = { name: 'prot', type: 'flags', values: ['R', 'W', 'X'], doc: 'KVM_PGTABLE_PROT_* (default RWX)' };
  const mk = (keyword: string, doc: string, args: ArgSpec[], example: string): StmtSpec => ({ keyword, group: 'pkvm', doc, args, example });
  return [
    mk('__pkvm_host_share_hyp', 'Host shares a page with the hypervisor.', [pfn], '__pkvm_host_share_hyp pfn=0x80000'),
    mk('__pkvm_host_unshare_hyp', 'Host takes back a page shared with the hypervisor.', [pfn], '__pkvm_host_unshare_hyp pfn=0x80000'),
    mk('__pkvm_host_donate_hyp', 'Host donates pages to the hypervisor.', [pfn, nrPages], '__pkvm_host_donate_hyp pfn=0x80000 nr_pages=1'),
    mk('__pkvm_hyp_donate_host', 'Hypervisor gives pages back to the host.', [pfn, nrPages], '__pkvm_hyp_donate_host pfn=0x80000 nr_pages=1'),
    mk('__pkvm_host_share_ffa', 'Host shares pages with FF-A (TrustZone).', [pfn, nrPages], '__pkvm_host_share_ffa pfn=0x80000'),
    mk('__pkvm_host_unshare_ffa', 'Host ends an FF-A share.', [pfn, nrPages], '__pkvm_host_unshare_ffa pfn=0x80000'),
    mk('hyp_pin_shared_mem', 'Hypervisor pins a page the host shared with it (first pin maps it at EL2).', [pfn], 'hyp_pin_shared_mem pfn=0x80000'),
    mk('hyp_unpin_shared_mem', 'Hypervisor unpins a shared page (last unpin unmaps it).', [pfn], 'hyp_unpin_shared_mem pfn=0x80000'),
    mk('__pkvm_host_share_guest', 'Host shares pages with a (non-protected) guest at a gfn.', [pfn, gfnArg, nrPages, prot, vcpu], '__pkvm_host_share_guest pfn=0x80000 gfn=0x100 prot=R|W'),
    mk('__pkvm_host_unshare_guest', 'Host unshares pages from a guest.', [gfnArg, nrPages], '__pkvm_host_unshare_guest gfn=0x100'),
    mk('__pkvm_host_donate_guest', 'Host donates a page to a protected guest at a gfn.', [pfn, gfnArg, vcpu], '__pkvm_host_donate_guest pfn=0x80000 gfn=0x100'),
    mk('__pkvm_guest_share_host', 'A protected guest shares one of its pages back with the host.', [gfnArg, vcpu], '__pkvm_guest_share_host gfn=0x100'),
    mk('__pkvm_guest_unshare_host', 'A protected guest takes back a page it shared with the host.', [gfnArg, vcpu], '__pkvm_guest_unshare_host gfn=0x100'),
    mk('__pkvm_host_reclaim_page_guest', 'Host reclaims a guest page after teardown or unshare.', [gfnArg], '__pkvm_host_reclaim_page_guest gfn=0x100'),
    mk('__pkvm_host_force_reclaim_page_guest', 'Host forcibly reclaims a donated page (the guest PTE becomes POISONED).',
      [{ name: 'phys', type: 'u64', required: true, doc: 'physical address', space: 'pa' }], '__pkvm_host_force_reclaim_page_guest phys=0x80000000'),
  ];
}

/** Keyword lookup: first word -> specs starting with it. */
export const BY_FIRST_WORD: ReadonlyMap<string, readonly StmtSpec[]> = (() => {
  const m = new Map<string, StmtSpec[]>();
  for (const s of STATEMENTS) {
    const w = s.keyword.split(' ')[0]!;
    const l = m.get(w) ?? [];
    l.push(s);
    m.set(w, l);
  }
  return m;
})();

export const KEYWORDS: readonly string[] = STATEMENTS.map((s) => s.keyword);

export function specOf(keyword: string): StmtSpec | undefined {
  return STATEMENTS.find((s) => s.keyword === keyword);
}

/** Upper bound on the number of accesses one statement may make (range / step × repeat). */
export const MAX_ITERATIONS = 1 << 24;
/** KVM_MEM_MAX_NR_PAGES: the largest memslot in pages, (1 << 31) - 1; larger slots get -EINVAL. */
export const KVM_MEM_MAX_NR_PAGES = 2 ** 31 - 1;
