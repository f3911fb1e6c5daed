/**
 * Messages of the Page-Table Map panel. The map travels as one string of kind letters per table, one per
 * entry (see KIND_LETTERS), which keeps a 500-table root near 300 KB of JSON. x86 tables (kvmMmu/tableMap)
 * have 512 entries; arm64 stage-2 tables (kvmMmu/stage2Map) 512, 2048 or 8192 by granule, and under pKVM
 * one ownership letter per entry too (OWNER_LETTERS).
 */

export const KIND_LETTERS = {
  '.': 'never written (SHADOW_NONPRESENT_VALUE)',
  n: 'non-present',
  L: 'leaf 4K',
  H: 'huge leaf',
  T: 'table (non-leaf)',
  M: 'MMIO SPTE',
  F: 'FROZEN_SPTE',
} as const;
export type KindLetter = keyof typeof KIND_LETTERS;

/** The same letters as the arm64 stage-2 reads them (M never occurs there). */
export const STAGE2_KIND_LETTERS: Record<KindLetter, string> = {
  '.': 'invalid, zero',
  n: 'invalid, owner annotation',
  L: 'page',
  H: 'block',
  T: 'table',
  M: 'MMIO',
  F: 'KVM_INVALID_PTE_LOCKED',
};

/** pKVM page states (enum pkvm_page_state) and owners (enum pkvm_component_id) of stage-2 entries. */
export const OWNER_LETTERS = {
  '-': 'no state',
  o: 'PKVM_PAGE_OWNED',
  s: 'PKVM_PAGE_SHARED_OWNED',
  b: 'PKVM_PAGE_SHARED_BORROWED',
  y: 'owner PKVM_ID_HYP',
  g: 'owner PKVM_ID_GUEST',
  p: 'PKVM_POISON',
  m: 'block of pages in several states',
} as const;
export type OwnerLetter = keyof typeof OWNER_LETTERS;

export interface MapTable {
  pfn: number;
  level: number;
  gfn: number;
  /** Index of the parent in `tables` (-1 for the root) and the entry there that points here. */
  parent: number;
  parentIndex: number;
  kinds: string;
  /** Under pKVM: one OWNER_LETTERS letter per entry. */
  owners?: string;
}

export interface MapData {
  format: string;
  roots: Array<{ table: number; label: string }>;
  root: number;
  rootLevel: number;
  tables: MapTable[];
  truncated: boolean;
  at?: string;
  /** Absent for x86 maps. */
  arch?: 'x86' | 'arm64';
  granule?: string;
  lpa2?: boolean;
  /** What the entries translate: guest IPAs, or host PAs (the pKVM host stage-2). */
  space?: 'ipa' | 'pa';
  /** Entries per table (512 unless told). */
  entries?: number;
  /** Level of the entries that map single pages (x86 1, arm64 3), and index bits per level. */
  leafLevel?: number;
  bitsPerLevel?: number;
  pageShift?: number;
  /** Whose page states `owners` gives: the guest's (guest stage-2) or the host's (host stage-2). */
  ownership?: 'none' | 'guest' | 'host';
  /** The page of the current fault, whose walk the map highlights. */
  walk?: { gfn: number; label: string };
}

export type ToMap = { type: 'map'; map: MapData } | { type: 'error'; message: string };

export type FromMap =
  | { type: 'ready'; root?: number }
  | { type: 'selectRoot'; root: number }
  | { type: 'where'; gfn: number }
  | { type: 'rendered'; tables: number; drawn: number };

const KIND_RE = /^[.nLHTMF]+$/;
const OWNER_RE = /^[-osbygpm]+$/;

function int(v: unknown, min = 0): v is number {
  return typeof v === 'number' && Number.isInteger(v) && v >= min;
}

export function parseToMap(m: unknown): ToMap | undefined {
  if (!m || typeof m !== 'object') return undefined;
  const o = m as Record<string, unknown>;
  if (o.type === 'error' && typeof o.message === 'string') return { type: 'error', message: o.message };
  if (o.type !== 'map' || !o.map || typeof o.map !== 'object') return undefined;
  const d = o.map as Record<string, unknown>;
  if (typeof d.format !== 'string' || !int(d.root, -1) || !int(d.rootLevel, -1) || !Array.isArray(d.tables) || !Array.isArray(d.roots)) return undefined;
  const entries = d.entries === undefined ? 512 : d.entries;
  if (entries !== 512 && entries !== 2048 && entries !== 8192) return undefined;
  const leafLevel = d.leafLevel === undefined ? 1 : d.leafLevel;
  const bitsPerLevel = d.bitsPerLevel === undefined ? 9 : d.bitsPerLevel;
  if ((leafLevel !== 1 && leafLevel !== 3) || (bitsPerLevel !== 9 && bitsPerLevel !== 11 && bitsPerLevel !== 13)) return undefined;
  const roots: MapData['roots'] = [];
  for (const r of d.roots) {
    if (!r || typeof r !== 'object' || !int((r as Record<string, unknown>).table) || typeof (r as Record<string, unknown>).label !== 'string') return undefined;
    roots.push({ table: (r as { table: number }).table, label: (r as { label: string }).label });
  }
  const tables: MapTable[] = [];
  for (const raw of d.tables) {
    if (!raw || typeof raw !== 'object') return undefined;
    const x = raw as Record<string, unknown>;
    if (!int(x.pfn) || !int(x.level, -1) || !int(x.gfn) || !int(x.parent, -1) || !int(x.parentIndex, -1) || typeof x.kinds !== 'string' || x.kinds.length !== entries || !KIND_RE.test(x.kinds)) return undefined;
    const t: MapTable = { pfn: x.pfn, level: x.level, gfn: x.gfn, parent: x.parent, parentIndex: x.parentIndex, kinds: x.kinds };
    if (x.owners !== undefined) {
      if (typeof x.owners !== 'string' || x.owners.length !== entries || !OWNER_RE.test(x.owners)) return undefined;
      t.owners = x.owners;
    }
    tables.push(t);
  }
  const map: MapData = { format: d.format, roots, root: d.root, rootLevel: d.rootLevel, tables, truncated: d.truncated === true, at: typeof d.at === 'string' ? d.at : undefined };
  if (d.arch === 'arm64' || d.arch === 'x86') map.arch = d.arch;
  if (typeof d.granule === 'string' && /^(4k|16k|64k)$/.test(d.granule)) map.granule = d.granule;
  if (typeof d.lpa2 === 'boolean') map.lpa2 = d.lpa2;
  if (d.space === 'ipa' || d.space === 'pa') map.space = d.space;
  if (d.entries !== undefined) map.entries = entries;
  if (d.leafLevel !== undefined) map.leafLevel = leafLevel;
  if (d.bitsPerLevel !== undefined) map.bitsPerLevel = bitsPerLevel;
  if (int(d.pageShift) && d.pageShift >= 12 && d.pageShift <= 16) map.pageShift = d.pageShift;
  if (d.ownership === 'none' || d.ownership === 'guest' || d.ownership === 'host') map.ownership = d.ownership;
  const w = d.walk as Record<string, unknown> | undefined;
  if (w && typeof w === 'object' && int(w.gfn) && w.gfn < 2 ** 52 && typeof w.label === 'string' && w.label.length <= 300) map.walk = { gfn: w.gfn, label: w.label };
  return { type: 'map', map };
}

export function parseFromMap(m: unknown): FromMap | undefined {
  if (!m || typeof m !== 'object') return undefined;
  const o = m as Record<string, unknown>;
  if (o.type === 'ready') return int(o.root) ? { type: 'ready', root: o.root } : { type: 'ready' };
  if (o.type === 'selectRoot' && int(o.root)) return { type: 'selectRoot', root: o.root };
  if (o.type === 'where' && int(o.gfn) && o.gfn < 2 ** 52) return { type: 'where', gfn: o.gfn };
  if (o.type === 'rendered' && int(o.tables) && int(o.drawn)) return { type: 'rendered', tables: o.tables, drawn: o.drawn };
  return undefined;
}

/** Levels between `level` and the leaf level: x86 counts up from 1 to the root, arm64 down from 0 (or -1) to 3. */
export function levelsAboveLeaf(level: number, leafLevel = 1): number {
  return Math.abs(level - leafLevel);
}

/** Pages one entry of a level-`level` table maps (512^(level-1) on x86). */
export function pagesPerEntry(level: number, leafLevel = 1, bitsPerLevel = 9): number {
  return Math.pow(2, bitsPerLevel * levelsAboveLeaf(level, leafLevel));
}

/**
 * Layout in world units (one unit per entry): one column per level (root on the left), each table a
 * block of entries (32x16 for 512, 64x32 for 2048, 128x64 for 8192), stacked top to bottom in
 * breadth-first order. Children are placed in their parent's order, so a column reads in address order.
 */
export const BLOCK_W = 32;
export const BLOCK_H = 16;
export const BLOCK_GAP = 4;
export const COLUMN_GAP = 16;

export function blockSize(entries: number): { w: number; h: number } {
  const w = Math.pow(2, Math.ceil(Math.log2(entries) / 2));
  return { w, h: entries / w };
}

export interface BlockPos {
  x: number;
  y: number;
}

export function layout(map: MapData): BlockPos[] {
  const { w, h } = blockSize(map.entries ?? 512);
  const rows = new Map<number, number>();
  return map.tables.map((t) => {
    const col = Math.abs(map.rootLevel - t.level);
    const row = rows.get(col) ?? 0;
    rows.set(col, row + 1);
    return { x: col * (w + COLUMN_GAP), y: row * (h + BLOCK_GAP) };
  });
}

/**
 * The entries a walk for `gfn` goes through, root first: in each table the entry covering gfn, down
 * through table entries to the child linked there, as long as the child covers gfn (indirect shadow
 * pages translate other addresses and end the path).
 */
export function walkPath(map: MapData, gfn: number): Array<{ table: number; entry: number }> {
  const entries = map.entries ?? 512;
  const span = (level: number) => pagesPerEntry(level, map.leafLevel, map.bitsPerLevel);
  const covers = (i: number) => {
    const t = map.tables[i]!;
    return gfn >= t.gfn && gfn < t.gfn + entries * span(t.level);
  };
  const child = new Map<string, number>();
  map.tables.forEach((t, i) => {
    if (t.parent >= 0) child.set(`${t.parent}:${t.parentIndex}`, i);
  });
  const path: Array<{ table: number; entry: number }> = [];
  let cur = map.tables.findIndex((t, i) => t.parent === -1 && covers(i));
  while (cur >= 0 && covers(cur)) {
    const t = map.tables[cur]!;
    const entry = Math.floor((gfn - t.gfn) / span(t.level));
    path.push({ table: cur, entry });
    if (t.kinds[entry] !== 'T') break;
    cur = child.get(`${cur}:${entry}`) ?? -1;
  }
  return path;
}
