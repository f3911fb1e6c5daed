/**
 * `kvm-mmu`: the engine without an editor. Each verb is a module under ./verbs exporting `run(argv)`.
 * Exit codes: 0 success, 1 a check failed (run: an expect; bench: a target), 2 bad input or usage.
 */
import { VERBS, type Verb } from './verbs';

function usage(): string {
  const lines = [
    'usage: kvm-mmu <verb> [arguments]',
    '',
    'A model of the Linux 6.18 KVM MMU, from the command line.',
    '',
    'verbs:',
  ];
  for (const v of VERBS) {
    lines.push(`  ${v.name.padEnd(8)} ${v.summary}${v.available ? '' : `  [not available yet: ${v.pending}]`}`);
  }
  lines.push('', "Run 'kvm-mmu <verb> --help' for a verb's arguments.");
  return lines.join('\n');
}

export async function main(argv: string[]): Promise<number> {
  const [name, ...rest] = argv;
  if (!name || name === '--help' || name === '-h' || name === 'help') {
    process.stdout.write(usage() + '\n');
    return name ? 0 : 2;
  }
  if (name === '--version') {
    process.stdout.write(`kvm-mmu ${VERSION}\n`);
    return 0;
  }
  const verb: Verb | undefined = VERBS.find((v) => v.name === name);
  if (!verb) {
    process.stderr.write(`kvm-mmu: unknown verb '${name}'; see 'kvm-mmu --help'\n`);
    return 2;
  }
  if (!verb.available || !verb.load) {
    process.stderr.write(`kvm-mmu: '${name}' is not available yet (${verb.pending})\n`);
    return 2;
  }
  const mod = await verb.load();
  return mod.run(rest);
}

declare const __VERSION__: string | undefined;
const VERSION = typeof __VERSION__ === 'string' ? __VERSION__ : 'dev';
