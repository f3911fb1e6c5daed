/**
 * KVM_CAP_DISABLE_QUIRKS2 for the x86 bindings. The model has one quirk with MMU behaviour,
 * KVM_X86_QUIRK_SLOT_ZAP_ALL (memslot delete/move zaps every root, else only the slot's pages).
 */
import type { Kvm } from '../../engine/x86/vm';
import { CONSTANTS, NotSupportedYet, type Outcome } from '../engine_api';

const SLOT_ZAP_ALL = CONSTANTS['KVM_X86_QUIRK_SLOT_ZAP_ALL']!;

export function disableQuirks2(kvm: Kvm, args0: number): Outcome {
  // Other quirks concern the LAPIC, MSRs, PAT and instruction emulation, none of which is modelled.
  if ((args0 & ~SLOT_ZAP_ALL) !== 0) throw new NotSupportedYet(`KVM_CAP_DISABLE_QUIRKS2 of quirks other than KVM_X86_QUIRK_SLOT_ZAP_ALL (0x${args0.toString(16)})`);
  if (args0 & SLOT_ZAP_ALL) kvm.quirk_slot_zap_all = false;
  return { ret: 0 };
}
