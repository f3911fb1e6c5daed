/**
 * What the scenario runner needs from an engine. Every operation is optional: a statement whose
 * operation an engine lacks is reported as "not supported yet by the engine" at its line, never
 * skipped silently. Operations take plain numbers (addresses below 2^53; 64-bit data as bigint, an
 * edge value), so an engine binding converts to its own lo/hi form once per call.
 */

export type FieldValue = number | bigint | string | boolean;
export type Fields = Record<string, FieldValue>;

export interface VmConfig {
  arch: 'x86' | 'arm64';
  vendor: 'intel' | 'amd';
  tdp: boolean;
  tdpLevels: number;
  maxphyaddr: number;
  /** default | sw_protected | snp | tdx | protected (arm64) */
  type: string;
  /** arm64 kvm-arm.mode: vhe | nvhe | protected. */
  mode: string;
  gpaw: number;
  ipaBits: number;
  vcpus: number;
  /** arm64: host PA size and DRAM range (pKVM host stage-2). */
  paBits: number;
  hostMemory: { start: number; end: number };
  /** Module parameters as written (`Y`, `off`, `60`), after `--set` overrides. */
  params: Record<string, string>;
  /** Design variants: `upstream` or `proposed`. */
  variants: Record<string, string>;
}

export interface Exit {
  /** `KVM_EXIT_MEMORY_FAULT`, `KVM_EXIT_MMIO`, ... */
  reason: string;
  vcpu: number;
  /** run->memory_fault {flags, gpa, size}, run->mmio {phys_addr as gpa, len, is_write, data}, ... */
  fields: Fields;
}

export interface GuestException {
  /** PF, VC, GP: delivered to the guest, no exit to userspace. */
  vector: 'PF' | 'VC' | 'GP';
  fields: Fields;
}

export interface Outcome {
  /** 0 or -errno, for ioctls and hypercalls. */
  ret?: number;
  /** Set when the vCPU returned to userspace. */
  exit?: Exit;
  /** Set when the access ended in an exception inside the guest instead. */
  exception?: GuestException;
}

export interface MemoryRegionOp {
  slot: number;
  asId: number;
  gpa: number;
  size: number;
  /** Undefined: the engine picks a host address. */
  hva: number | undefined;
  /** KVM_MEM_* bits. */
  flags: number;
  guestMemfd: string | undefined;
  guestMemfdOffset: number;
  /** Host page size backing the HVA range: 4096, 2 MiB or 1 GiB. */
  backing: number;
}

export interface AccessOp {
  vcpu: number;
  kind: 'read' | 'write' | 'fetch';
  space: 'gva' | 'gpa';
  /** Exact below 2^53; `lo`/`hi` always exact. */
  addr: number;
  lo: number;
  hi: number;
  user: boolean;
  /** undefined: the VM type decides (no C-bit / shared bit given). */
  private: boolean | undefined;
  value: bigint;
  /** The statement gave `value=` (a write then stores it in guest memory). */
  hasValue: boolean;
}

export interface RangeOp {
  space: 'hva' | 'gpa';
  start: number;
  end: number;
}

export interface ScenarioEngine {
  /** One line naming the engine (for --json and the debugger). */
  readonly name: string;

  setUserMemoryRegion2?(op: MemoryRegionOp): Outcome;
  createGuestMemfd?(op: { fd: string; size: number; flags: number }): Outcome;
  fallocate?(op: { fd: string; mode: number; offset: number; len: number }): Outcome;
  setMemoryAttributes?(op: { address: number; size: number; attributes: number }): Outcome;
  /** Returns the bitmap (one bit per page of the slot, bit i of byte i>>3) in `bitmap`. */
  getDirtyLog?(op: { slot: number; asId: number }): Outcome & { bitmap?: Uint8Array };
  clearDirtyLog?(op: { slot: number; asId: number; firstPage: number; numPages: number }): Outcome;
  enableCap?(op: { cap: string; args0: number }): Outcome;
  preFaultMemory?(op: { vcpu: number; gpa: number; size: number }): Outcome;

  invalidateRange?(op: RangeOp & { event: string }): Outcome;
  ageRange?(op: RangeOp & { op: string }): Outcome;
  nxRecovery?(): Outcome;
  hostStage2Fault?(op: { addr: number; access: 'read' | 'write' | 'exec' }): Outcome;

  setRegs?(op: { vcpu: number; cr0?: bigint; cr3?: bigint; cr4?: bigint; efer?: bigint }): Outcome;
  guestMap?(op: { cr3: number; gvaStart: bigint; gvaEnd: bigint; gpa: number; pageSize: number; flags: string[]; mode: string; pool?: { start: number; end: number } }): Outcome;
  guestWritePte?(op: { vcpu: number; gva: bigint; level: number; value: bigint; cr3?: number; via?: bigint }): Outcome;
  /** One access; the runner loops over ranges and stops at the first exit. */
  access?(op: AccessOp): Outcome;
  invlpg?(op: { vcpu: number; gva: bigint }): Outcome;
  /** INVPCID; `type` is the instruction's register operand (0-3), `pcid`/`gva` the descriptor. */
  invpcid?(op: { vcpu: number; type: number; pcid: bigint; gva: bigint }): Outcome;
  pvalidate?(op: { vcpu: number; gva?: bigint; gpa?: number; size: number; validate: boolean }): Outcome;
  psc?(op: { vcpu: number; start: number; end: number; to: 'private' | 'shared' | 'psmash' | 'unsmash'; via?: 'ghcb' | 'msr'; serve?: boolean }): Outcome;
  mapGpa?(op: { vcpu: number; start: number; end: number; to: 'private' | 'shared'; serve: boolean }): Outcome;
  snpLaunchStart?(op: { policy: number; flags: number }): Outcome;
  snpLaunchUpdate?(op: { gfnStart: number; len: number; type: string; flags: number }): Outcome;
  snpLaunchFinish?(op: { flags: number }): Outcome;

  /** pKVM hypercalls by their kernel names (`__pkvm_host_share_hyp`, ...). */
  pkvm?(call: string, args: { pfn?: number; gfn?: number; nrPages: number; prot?: string[]; vcpu: number; phys?: number }): Outcome;

  /**
   * State a user can see, for `expect`. Subjects: spte, sp, roots, root, rmp, stage2, page_state,
   * attributes, lpage, memslot, walk. Returns the matching objects (empty: none match), or
   * undefined when the engine cannot answer that subject yet.
   */
  query?(subject: string, selector: Fields): Fields[] | undefined;
  /** Statistics, named as in KVM's stats (`pf_fixed`, `pages_2m`, ...), vCPU stats summed. */
  stats?(): Record<string, number>;
  dispose?(): void;
}

/** An engine binding throws this for an operation (or a variant of one) its engine cannot do yet. */
export class NotSupportedYet extends Error {}

/** Named constants a scenario may use where a number is expected (flags, attributes). */
export const CONSTANTS: Readonly<Record<string, number>> = {
  KVM_MEM_LOG_DIRTY_PAGES: 1 << 0,
  KVM_MEM_READONLY: 1 << 1,
  KVM_MEM_GUEST_MEMFD: 1 << 2,
  KVM_MEMORY_ATTRIBUTE_PRIVATE: 1 << 3,
  KVM_MEMORY_EXIT_FLAG_PRIVATE: 1 << 3,
  GUEST_MEMFD_FLAG_MMAP: 1 << 0,
  GUEST_MEMFD_FLAG_INIT_SHARED: 1 << 1,
  FALLOC_FL_KEEP_SIZE: 0x01,
  FALLOC_FL_PUNCH_HOLE: 0x02,
  KVM_DIRTY_LOG_MANUAL_PROTECT_ENABLE: 1 << 0,
  KVM_DIRTY_LOG_INITIALLY_SET: 1 << 1,
  KVM_EXIT_HYPERCALL_VALID_MASK: 1 << 12,
  KVM_X86_QUIRK_SLOT_ZAP_ALL: 1 << 7,
};
