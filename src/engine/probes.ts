/**
 * Probes: the places a debugger can stop inside the engine, named after the kernel function they sit in.
 *
 * The engine calls `probes.hit(name, args)` only behind `if (probes.armed)`, so an unwatched probe costs
 * one property read. When armed, the listener (installed by the debug runtime) decides synchronously
 * whether to stop; it may block inside the call, which keeps the engine's JavaScript stack (and so the
 * chain of KVM functions) alive while the user inspects state.
 *
 * The KVM call stack a user sees is derived from the JavaScript stack at the stop: engine functions carry
 * the kernel's names (`kvm_mmu_page_fault`, `kvm_tdp_mmu_map`, ...), so no shadow stack is maintained on
 * the hot path. See `kvmStack()`.
 */

export type ProbeArgs = Record<string, unknown>;

export type ProbeListener = (name: string, args: ProbeArgs) => void;

export interface ProbeInfo {
  /** Kernel function (or operation) name. */
  name: string;
  /** Group used by the Probes view and exception filters: fault, tdp_mmu, shadow_mmu, rmp, stage2, ... */
  group: string;
  /** Kernel source file the function lives in, relative to the Linux tree (for kernelSource links). */
  file: string;
  /** One line: what happens here. */
  doc: string;
  /** Names of the arguments readable at this probe. */
  args: readonly string[];
}

class ProbeHub {
  /** True when any listener wants hits. Engine code tests this before building arguments. */
  armed = false;
  /** Number of hits since the hub was last reset; reverse execution counts on it being deterministic. */
  count = 0;
  private listener: ProbeListener | undefined;
  private readonly registry = new Map<string, ProbeInfo>();

  define(info: ProbeInfo): string {
    this.registry.set(info.name, info);
    return info.name;
  }

  info(name: string): ProbeInfo | undefined {
    return this.registry.get(name);
  }

  all(): ProbeInfo[] {
    return [...this.registry.values()].sort((a, b) => a.group.localeCompare(b.group) || a.name.localeCompare(b.name));
  }

  /** Install (or with undefined, remove) the single listener. */
  listen(listener: ProbeListener | undefined): void {
    this.listener = listener;
    this.armed = listener !== undefined;
  }

  hit(name: string, args: ProbeArgs): void {
    this.count++;
    const l = this.listener;
    if (l) l(name, args);
  }

  reset(): void {
    this.count = 0;
  }
}

export const probes = new ProbeHub();

/** Define a probe at module load; returns its name so call sites can keep it in a constant. */
export function defineProbe(name: string, group: string, file: string, doc: string, args: readonly string[] = []): string {
  return probes.define({ name, group, file, doc, args });
}

export interface KvmFrame {
  /** Kernel function name. */
  name: string;
  /** Engine source position of the frame (bundle or TypeScript file, 1-based line/column). */
  file: string | undefined;
  line: number;
  column: number;
}

/**
 * The chain of KVM functions on the JavaScript stack right now, innermost first. Only frames whose
 * function name is a defined probe count, so helpers and closures in between do not show.
 */
export function kvmStack(): KvmFrame[] {
  const saved = Error.prepareStackTrace;
  const savedLimit = Error.stackTraceLimit;
  let sites: NodeJS.CallSite[] = [];
  try {
    Error.stackTraceLimit = 200;
    Error.prepareStackTrace = (_e, s) => s;
    const holder: { stack?: unknown } = {};
    Error.captureStackTrace(holder, kvmStack);
    sites = holder.stack as NodeJS.CallSite[];
  } finally {
    Error.prepareStackTrace = saved;
    Error.stackTraceLimit = savedLimit;
  }
  const frames: KvmFrame[] = [];
  for (const s of sites) {
    const fn = s.getMethodName() ?? s.getFunctionName();
    if (!fn) continue;
    const name = fn.replace(/^.*\./, '');
    if (!probes.info(name)) continue;
    frames.push({ name, file: s.getFileName() ?? undefined, line: s.getLineNumber() ?? 0, column: s.getColumnNumber() ?? 0 });
  }
  return frames;
}
