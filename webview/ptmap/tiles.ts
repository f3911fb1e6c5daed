/**
 * The map at one zoom cut into fixed-size tiles that are drawn once and reused, so a pan frame copies a
 * few dozen tiles instead of redrawing hundreds of tables; tiles that come into view are drawn within a
 * time budget per frame (the rest on the next frames), which keeps each frame well inside 16 ms even
 * when a whole million-SPTE root is on screen.
 */
import type { Atlas } from './atlas';

/** Tile edge in CSS pixels. */
const TILE = 256;
/** Tiles kept (each TILE^2 x dpr^2 x 4 bytes): about 32 MB at dpr 1. */
const MAX_TILES = 128;
/** Milliseconds of tile drawing per frame before the rest waits for the next frame. */
const BUDGET_MS = 6;
/** Room above a block for its label, and how far right of it a label may reach (CSS pixels). */
const LABEL_H = 14;
const LABEL_W = 220;

export interface Scene {
  atlas: Atlas;
  /** Block positions in world units (one unit per entry), and the tables of each column in row order. */
  pos: Array<{ x: number; y: number }>;
  columns: Array<{ x: number; tables: number[] }>;
  rowStep: number;
  block: { w: number; h: number };
  bg: string;
  fg: string;
  label(i: number): string;
}

/** Tables whose blocks meet the world rectangle [x0, x1) x [y0, y1). */
export function tablesIn(s: Scene, x0: number, y0: number, x1: number, y1: number, out: number[] = []): number[] {
  for (const c of s.columns) {
    if (c.x >= x1 || c.x + s.block.w <= x0) continue;
    const first = Math.max(0, Math.floor((y0 - s.block.h) / s.rowStep));
    const last = Math.min(c.tables.length - 1, Math.floor(y1 / s.rowStep));
    for (let r = first; r <= last; r++) out.push(c.tables[r]!);
  }
  return out;
}

export class TileCache {
  private readonly tiles = new Map<string, HTMLCanvasElement>();
  private zoom = -1;
  private dpr = 1;

  /** Forget every tile (a new map, colouring or theme). */
  reset(): void {
    this.tiles.clear();
  }

  /**
   * Draw the map at `zoom` with its world origin at (panX, panY) into a w x h viewport. Returns whether
   * tiles are still missing (the caller schedules another frame).
   */
  draw(g: CanvasRenderingContext2D, s: Scene, zoom: number, panX: number, panY: number, w: number, h: number): boolean {
    const dpr = window.devicePixelRatio || 1;
    if (zoom !== this.zoom || dpr !== this.dpr) {
      this.tiles.clear();
      this.zoom = zoom;
      this.dpr = dpr;
    }
    const px = Math.round(panX);
    const py = Math.round(panY);
    const t0 = performance.now();
    let missing = false;
    for (let ty = Math.floor(-py / TILE); ty * TILE + py < h; ty++) {
      for (let tx = Math.floor(-px / TILE); tx * TILE + px < w; tx++) {
        const key = `${tx},${ty}`;
        let tile = this.tiles.get(key);
        if (tile) {
          // Most recently used last, so the oldest is dropped first.
          this.tiles.delete(key);
          this.tiles.set(key, tile);
        } else if (performance.now() - t0 < BUDGET_MS) {
          tile = this.render(s, zoom, tx, ty);
          this.tiles.set(key, tile);
          if (this.tiles.size > MAX_TILES) this.tiles.delete(this.tiles.keys().next().value!);
        } else {
          missing = true;
          continue;
        }
        g.drawImage(tile, px + tx * TILE, py + ty * TILE, TILE, TILE);
      }
    }
    return missing;
  }

  private render(s: Scene, zoom: number, tx: number, ty: number): HTMLCanvasElement {
    const c = document.createElement('canvas');
    c.width = c.height = Math.round(TILE * this.dpr);
    const g = c.getContext('2d')!;
    g.setTransform(this.dpr, 0, 0, this.dpr, 0, 0);
    g.imageSmoothingEnabled = false;
    g.fillStyle = s.bg;
    g.fillRect(0, 0, TILE, TILE);
    const ox = tx * TILE;
    const oy = ty * TILE;
    const bw = s.block.w * zoom;
    const bh = s.block.h * zoom;
    const labels = bw >= 90;
    const reachX = labels ? LABEL_W / zoom : 0;
    const reachY = labels ? LABEL_H / zoom : 0;
    const list = tablesIn(s, ox / zoom - reachX, oy / zoom, (ox + TILE) / zoom, (oy + TILE) / zoom + reachY);
    g.font = '11px sans-serif';
    for (const i of list) {
      const p = s.pos[i]!;
      const a = s.atlas.at[i]!;
      const x0 = p.x * zoom - ox;
      const y0 = p.y * zoom - oy;
      g.drawImage(s.atlas.canvas, a.x, a.y, s.block.w, s.block.h, x0, y0, bw, bh);
      if (zoom >= 4) {
        // Gaps between entries, in the background colour, so single entries read as cells.
        g.fillStyle = s.bg;
        for (let col = 1; col < s.block.w; col++) g.fillRect(x0 + col * zoom - 1, y0, 1, bh);
        for (let row = 1; row < s.block.h; row++) g.fillRect(x0, y0 + row * zoom - 1, bw, 1);
      }
      if (labels) {
        g.fillStyle = s.fg;
        g.fillText(s.label(i), x0, y0 - 3);
      }
    }
    return c;
  }
}
