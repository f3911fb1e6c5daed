/**
 * Hex text of 64-bit halves for the replay's summary, which formats every rebuilt SPTE (hundreds of
 * thousands on a large capture). Number#toString(16) is a runtime call per piece; a table of the 65536
 * four-digit groups (about 2 MB, built on first use) makes a value one concatenation, about 4x faster
 * with far less garbage.
 */
import { hexHalves } from '../engine/tracepoints/index';

let groups: string[] | null = null;

function group4(): string[] {
  if (!groups) {
    groups = new Array<string>(65536);
    for (let i = 0; i < 65536; i++) groups[i] = (i | 0x1_0000).toString(16).slice(1);
  }
  return groups;
}

let lastHi = -1;
let lastHiText = '';

/** Lower-case hex of halves, no prefix, no leading zeros (as hexHalves). */
export function hexOfHalves(lo: number, hi: number): string {
  hi >>>= 0;
  lo >>>= 0;
  if (hi === 0) return hexHalves(lo, 0);
  // consecutive SPTEs mostly share their high half (attribute and software bits)
  if (hi !== lastHi) {
    lastHi = hi;
    lastHiText = hexHalves(hi, 0);
  }
  const g = group4();
  return lastHiText + g[lo >>> 16]! + g[lo & 0xffff]!;
}
