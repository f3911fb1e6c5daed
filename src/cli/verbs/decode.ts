/** `kvm-mmu decode <kind> VALUE ...`: routes to one module per kind of value. */
import type { VerbModule } from './index';
// static, like the verbs themselves (see ./index.ts: import() made esbuild wrap the engine's modules)
import * as pferr from './decode/pferr';
import * as role from './decode/role';
import * as s2pte from './decode/s2pte';
import * as spte from './decode/spte';

const KINDS: Record<string, { summary: string; load: () => Promise<VerbModule> }> = {
  spte: { summary: 'an SPTE (EPT or NPT/legacy format)', load: async () => spte },
  role: { summary: 'a kvm_mmu_page_role word', load: async () => role },
  pferr: { summary: 'a page-fault error code (incl. AMD #NPF and KVM synthetic bits)', load: async () => pferr },
  s2pte: { summary: 'an arm64 stage-2 descriptor (with pKVM owner annotations)', load: async () => s2pte },
};

function usage(): string {
  return ['usage: kvm-mmu decode <kind> VALUE [options] [--json]', '', 'kinds:',
    ...Object.entries(KINDS).map(([k, v]) => `  ${k.padEnd(6)} ${v.summary}`), '',
    "Run 'kvm-mmu decode <kind> --help' for the kind's options."].join('\n');
}

export async function run(argv: string[]): Promise<number> {
  const [kind, ...rest] = argv;
  if (!kind || kind === '--help' || kind === '-h') {
    process.stdout.write(usage() + '\n');
    return kind ? 0 : 2;
  }
  const k = Object.hasOwn(KINDS, kind) ? KINDS[kind] : undefined;
  if (!k) {
    process.stderr.write(`kvm-mmu decode: unknown kind '${kind}' (one of ${Object.keys(KINDS).join(', ')})\n`);
    return 2;
  }
  return (await k.load()).run(rest);
}
