/**
 * arm64 stage-2 and pKVM model: the public surface for the scenario layer, the debugger and views.
 *
 * - pgtable_desc.ts: geometry (levels, start level, concatenated PGD), descriptor bits, prot flags, BitField tables
 * - pgtable.ts: struct kvm_pgtable, kvm_pgtable_walk and the stage-2 operations
 * - variants.ts: the `owner_encoding` design variant (set_owner_2021 | annotate_2026)
 * - decode.ts: one descriptor, field by field
 * - pkvm_mem_protect.ts: host stage-2 idmap, page states and share/donate transitions
 * - ptdump.ts: the stage2_page_tables / ipa_range / stage2_levels debugfs text
 * - mmu.ts: guest faults (kvm_handle_guest_abort -> user_mem_abort) and the Arm64Vm object
 */
export * from './pgtable_desc';
export * from './pgtable';
export * from './variants';
export * from './decode';
export * from './pkvm_mem_protect';
export * from './ptdump';
export * from './mmu';
export * from './page_alloc';
export { errnoName } from './errno';
