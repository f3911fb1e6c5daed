/**
 * The verb table. A verb lands with the issue that makes it real; until then it says which.
 *
 * Verbs are imported statically: with `import()` esbuild wraps every module of the bundle in a lazy
 * initialiser, and the engine's module-level constants then live in closure variables that V8 no longer
 * treats as constants (the engine's fault paths ran about a fifth slower inside `kvm-mmu`).
 */
import * as bench from './bench';
import * as dap from './dap';
import * as decode from './decode';
import * as replay from './replay';
import * as run from './run';
import * as walk from './walk';

export interface VerbModule {
  run(argv: string[]): Promise<number>;
}

export interface Verb {
  name: string;
  summary: string;
  available: boolean;
  /** Why it is not available yet. */
  pending?: string;
  load?: () => Promise<VerbModule>;
}

export const VERBS: Verb[] = [
  { name: 'run', summary: 'run a scenario file and check its expectations', available: true, load: async () => run },
  { name: 'replay', summary: 'parse a real kvm/kvmmmu trace capture and rebuild the MMU state', available: true, load: async () => replay },
  { name: 'decode', summary: 'decode an SPTE, a role word, a page-fault error code or a stage-2 descriptor', available: true, load: async () => decode },
  { name: 'walk', summary: 'walk guest page tables as KVM does and explain the result', available: true, load: async () => walk },
  { name: 'dap', summary: 'serve the Debug Adapter Protocol on stdio (for nvim-dap, Emacs dap-mode, ...)', available: true, load: async () => dap },
  { name: 'bench', summary: 'measure the performance targets against same-run baselines', available: true, load: async () => bench },
];
