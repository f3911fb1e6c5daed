/**
 * Messages of the Page-Table Map panel. The map travels as one string of 512 kind letters per table
 * (see KIND_LETTERS), which keeps a 500-table root near 300 KB of JSON.
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

export interface MapTable {
  pfn: number;
  level: number;
  gfn: number;
  /** Index of the parent in `tables` (-1 for the root) and the entry there that points here. */
  parent: number;
  parentIndex: number;
  kinds: string;
}

export interface MapData {
  format: string;
  roots: Array<{ table: number; label: string }>;
  root: number;
  rootLevel: number;
  tables: MapTable[];
  truncated: boolean;
  at?: string;
}

export type ToMap = { type: 'map'; map: MapData } | { type: 'error'; message: string };

export type FromMap =
  | { type: 'ready'; root?: number }
  | { type: 'selectRoot'; root: number }
  | { type: 'where'; gfn: number }
  | { type: 'rendered'; tables: number; drawn: number };

const KIND_RE = /^[.nLHTMF]{512}$/;

function int(v: unknown, min = 0): v is number {
  return typeof v === 'number' && Number.isInteger(v) && v >= min;
}

export function parseToMap(m: unknown): ToMap | undefined {
  if (!m || typeof m !== 'object') return undefined;
  const o = m as Record<string, unknown>;
  if (o.type === 'error' && typeof o.message === 'string') return { type: 'error', message: o.message };
  if (o.type !== 'map' || !o.map || typeof o.map !== 'object') return undefined;
  const d = o.map as Record<string, unknown>;
  if (typeof d.format !== 'string' || !int(d.root, -1) || !int(d.rootLevel) || !Array.isArray(d.tables) || !Array.isArray(d.roots)) return undefined;
  const roots: MapData['roots'] = [];
  for (const r of d.roots) {
    if (!r || typeof r !== 'object' || !int((r as Record<string, unknown>).table) || typeof (r as Record<string, unknown>).label !== 'string') return undefined;
    roots.push({ table: (r as { table: number }).table, label: (r as { label: string }).label });
  }
  const tables: MapTable[] = [];
  for (const t of d.tables) {
    if (!t || typeof t !== 'object') return undefined;
    const x = t as Record<string, unknown>;
    if (!int(x.pfn) || !int(x.level, 1) || !int(x.gfn) || !int(x.parent, -1) || !int(x.parentIndex, -1) || typeof x.kinds !== 'string' || !KIND_RE.test(x.kinds)) return undefined;
    tables.push({ pfn: x.pfn, level: x.level, gfn: x.gfn, parent: x.parent, parentIndex: x.parentIndex, kinds: x.kinds });
  }
  return {
    type: 'map',
    map: { format: d.format, roots, root: d.root, rootLevel: d.rootLevel, tables, truncated: d.truncated === true, at: typeof d.at === 'string' ? d.at : undefined },
  };
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

/** Pages one entry of a level-`level` table maps. */
export function pagesPerEntry(level: number): number {
  return Math.pow(512, level - 1);
}

/**
 * Layout in world units: one column per level (root on the left), each table a 32x16 block of entries,
 * stacked top to bottom in breadth-first order. Children are placed in their parent's order, so a
 * column reads in gfn order.
 */
export const BLOCK_W = 32;
export const BLOCK_H = 16;
export const BLOCK_GAP = 4;
export const COLUMN_GAP = 16;

export interface BlockPos {
  x: number;
  y: number;
}

export function layout(map: MapData): BlockPos[] {
  const rows = new Map<number, number>();
  return map.tables.map((t) => {
    const col = map.rootLevel - t.level;
    const row = rows.get(col) ?? 0;
    rows.set(col, row + 1);
    return { x: col * (BLOCK_W + COLUMN_GAP), y: row * (BLOCK_H + BLOCK_GAP) };
  });
}
