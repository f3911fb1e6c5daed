/**
 * Raw tracefs `trace` text for the events of a model run, so that a model trace can be diffed with a
 * real capture or fed to `kvm-mmu replay`. Everything that a real capture varies by (pids, clock) is
 * fixed here, so two runs of one scenario give byte-identical files.
 */
import type { TraceEvent } from '../engine/trace_sink';

/** The VMM's pid; vCPU n is thread VMM_PID + 1 + n, named `CPU n/KVM` as QEMU names its threads. */
export const VMM_PID = 1234;
/** Seconds on the trace clock at the first event; each event is one microsecond after the previous. */
export const START_SECONDS = 12;

/**
 * One line as the kernel's default output prints it: comm right-aligned in 16 columns, `-pid`
 * left-aligned in 7, `[cpu]` in 3 digits, 5 flag characters, `seconds.micros`, event name, payload.
 * `seq` is the 0-based position of the event in the run; `task` the vCPU whose thread ran it (-1: the
 * VMM thread, unless the event names a vCPU).
 */
export function formatTraceLine(e: TraceEvent, seq: number, vmmComm = 'qemu-system-x86', task = e.vcpu): string {
  const t = task >= 0 ? task : e.vcpu;
  const onVcpu = t >= 0;
  const comm = onVcpu ? `CPU ${t}/KVM` : vmmComm;
  const pid = onVcpu ? VMM_PID + 1 + t : VMM_PID;
  const cpu = onVcpu ? t : 0;
  const micros = START_SECONDS * 1_000_000 + seq + 1;
  const secs = Math.floor(micros / 1_000_000);
  const frac = String(micros % 1_000_000).padStart(6, '0');
  return `${comm.padStart(16)}-${String(pid).padEnd(7)} [${String(cpu).padStart(3, '0')}] ..... ${String(secs).padStart(5)}.${frac}: ${e.name}: ${e.text}`;
}
