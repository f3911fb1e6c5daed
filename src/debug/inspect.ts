/**
 * Turns engine state into DAP variables, lazily: a handle per expandable value, children produced only
 * when the user opens them, 512-entry tables paged. Values that are SPTEs, role words or error codes
 * expand into their bit fields (through the decoders registered in ./decoders).
 */
import type { DebugProtocol } from '@vscode/debugprotocol';
import type { DecodedField } from '../engine/bits/fields';
import { hex } from '../engine/bits/u64';

export interface ValueDecoder {
  /** Does this decoder understand the value stored under `key`? */
  matches(key: string, value: unknown): boolean;
  /** One-line summary shown next to the value. */
  summary(key: string, value: unknown): string;
  fields(key: string, value: unknown): DecodedField[];
}

const decoders: ValueDecoder[] = [];

export function registerDecoder(d: ValueDecoder): void {
  decoders.push(d);
}

export function findDecoder(key: string, value: unknown): ValueDecoder | undefined {
  for (const d of decoders) if (d.matches(key, value)) return d;
  return undefined;
}

type Container =
  | { kind: 'object'; value: object }
  | { kind: 'fields'; fields: DecodedField[] }
  | { kind: 'indexed'; value: ArrayLike<unknown>; key: string }
  | { kind: 'u64table'; value: Uint32Array; key: string }
  | { kind: 'map'; value: Map<unknown, unknown> }
  | { kind: 'lazy'; produce: () => Record<string, unknown> };

/** Any engine representation of a 64-bit value as halves: {lo,hi}, a safe integer, a bigint, or hex text. */
export function asU64(v: unknown): { lo: number; hi: number } | undefined {
  if (isU64(v)) return v;
  if (typeof v === 'number' && Number.isSafeInteger(v) && v >= 0) return { lo: v >>> 0, hi: Math.floor(v / 0x1_0000_0000) >>> 0 };
  if (typeof v === 'bigint') return { lo: Number(v & 0xffff_ffffn), hi: Number((v >> 32n) & 0xffff_ffffn) };
  if (typeof v === 'string' && /^(0x)?[0-9a-fA-F]{1,16}$/.test(v)) {
    const h = v.replace(/^0x/, '').padStart(16, '0');
    return { lo: parseInt(h.slice(8), 16) >>> 0, hi: parseInt(h.slice(0, 8), 16) >>> 0 };
  }
  return undefined;
}

export function isU64(v: unknown): v is { lo: number; hi: number } {
  return typeof v === 'object' && v !== null && typeof (v as { lo?: unknown }).lo === 'number' && typeof (v as { hi?: unknown }).hi === 'number' && Object.keys(v).length === 2;
}

/** Names whose numbers are addresses or frame numbers: shown in hex even when hex display is off. */
const HEX_NAMES = /(gfn|pfn|gpa|gva|hva|addr|address|spte|pte|error_code|role|word|cr[0-9]|efer|mask|sptep|ipa|pa|base|start|end|value|desc|old|new|size|phys)$/i;

export class VariableStore {
  private handles: Container[] = [];
  /** Memory references handed out for tables (readMemory). */
  readonly memoryRefs = new Map<string, Uint32Array>();

  reset(): void {
    this.handles = [];
    this.memoryRefs.clear();
  }

  add(c: Container): number {
    this.handles.push(c);
    return this.handles.length; // 1-based: 0 means "no children"
  }

  addObject(value: object): number {
    return this.add({ kind: 'object', value });
  }

  addLazy(produce: () => Record<string, unknown>): number {
    return this.add({ kind: 'lazy', produce });
  }

  render(name: string, value: unknown, hexOn: boolean, evaluateName?: string): DebugProtocol.Variable {
    const v: DebugProtocol.Variable = { name, value: '', variablesReference: 0, evaluateName };
    const dec = findDecoder(name, value);
    if (dec) {
      v.value = dec.summary(name, value);
      v.variablesReference = this.add({ kind: 'fields', fields: dec.fields(name, value) });
      v.type = 'bits';
      return v;
    }
    if (value === null || value === undefined) {
      v.value = String(value);
    } else if (typeof value === 'number') {
      v.value = formatNumber(value, hexOn || HEX_NAMES.test(name));
      v.type = 'int';
    } else if (typeof value === 'bigint') {
      v.value = hexOn || HEX_NAMES.test(name) ? '0x' + value.toString(16) : value.toString();
    } else if (typeof value === 'boolean') {
      v.value = value ? 'true' : 'false';
      v.type = 'bool';
    } else if (typeof value === 'string') {
      v.value = JSON.stringify(value);
      v.type = 'string';
    } else if (isU64(value)) {
      v.value = '0x' + hex(value.lo, value.hi);
      v.type = 'u64';
    } else if (value instanceof Uint32Array && value.length === 1024) {
      // A page-table page: 512 64-bit entries as halves.
      let present = 0;
      for (let i = 0; i < 1024; i += 2) if (value[i] !== 0 || (value[i + 1] !== 0 && value[i + 1] !== 0x8000_0000)) present++;
      v.value = `table[512] (${present} non-empty)`;
      v.variablesReference = this.add({ kind: 'u64table', value, key: name });
      v.indexedVariables = 512;
      const ref = `table:${this.memoryRefs.size}`;
      this.memoryRefs.set(ref, value);
      v.memoryReference = ref;
    } else if (ArrayBuffer.isView(value) || Array.isArray(value)) {
      const arr = value as unknown as ArrayLike<unknown>;
      v.value = `${Array.isArray(value) ? 'Array' : value.constructor.name}(${arr.length})`;
      if (arr.length > 0) {
        v.variablesReference = this.add({ kind: 'indexed', value: arr, key: name });
        v.indexedVariables = arr.length;
      }
    } else if (value instanceof Map) {
      v.value = `Map(${value.size})`;
      if (value.size > 0) v.variablesReference = this.add({ kind: 'map', value });
    } else if (value instanceof Set) {
      v.value = `Set(${value.size})`;
      if (value.size > 0) v.variablesReference = this.add({ kind: 'indexed', value: [...value], key: name });
    } else if (typeof value === 'function') {
      v.value = 'function';
    } else if (typeof value === 'object') {
      const summary = (value as { toString?: () => string }).toString;
      const ctor = (value as object).constructor?.name;
      v.value = summary && summary !== Object.prototype.toString ? String(value) : ctor && ctor !== 'Object' ? ctor : '{…}';
      v.variablesReference = this.add({ kind: 'object', value: value as object });
    }
    return v;
  }

  children(ref: number, hexOn: boolean, start = 0, count = 0): DebugProtocol.Variable[] {
    // Paging arguments come from the client: clamp them so no request can make us loop for ages.
    start = Number.isSafeInteger(start) && start > 0 ? start : 0;
    count = Number.isSafeInteger(count) && count > 0 ? Math.min(count, 100_000) : 0;
    const c = this.handles[ref - 1];
    if (!c) return [];
    switch (c.kind) {
      case 'fields':
        return c.fields.map((f) => ({
          name: `${f.name} ${f.bits}`,
          value: f.msb - f.lsb >= 3 ? `${f.hex}${f.meaning ? '  ' + f.meaning : ''}` : `${f.value}${f.meaning ? '  ' + f.meaning : ''}`,
          variablesReference: 0,
          presentationHint: { attributes: ['readOnly'] },
        }));
      case 'object':
        return Object.entries(c.value)
          .filter(([k, v]) => typeof v !== 'function' && !k.startsWith('_'))
          .map(([k, v]) => this.render(k, v, hexOn));
      case 'lazy':
        return Object.entries(c.produce()).map(([k, v]) => this.render(k, v, hexOn));
      case 'map':
        return [...c.value.entries()].slice(start, count ? start + count : undefined).map(([k, v]) => this.render(typeof k === 'number' ? (hexOn ? '0x' + k.toString(16) : String(k)) : String(k), v, hexOn));
      case 'indexed': {
        const end = count ? Math.min(c.value.length, start + count) : c.value.length;
        const out: DebugProtocol.Variable[] = [];
        for (let i = start; i < end; i++) out.push(this.render(`[${i}]`, c.value[i], hexOn));
        return out;
      }
      case 'u64table': {
        const end = count ? Math.min(512, start + count) : 512;
        const out: DebugProtocol.Variable[] = [];
        for (let i = start; i < end; i++) {
          const u = { lo: c.value[2 * i], hi: c.value[2 * i + 1] };
          const r = this.render(c.key.endsWith('spt') || c.key === 'table' ? 'spte' : c.key, u, hexOn);
          r.name = `[${i}]`;
          out.push(r);
        }
        return out;
      }
    }
  }
}

export function formatNumber(n: number, asHex: boolean): string {
  if (!Number.isInteger(n)) return String(n);
  return asHex && n >= 0 ? '0x' + n.toString(16) : String(n);
}
