/**
 * Which engine runs a scenario. Each architecture's binding adapts the engine facade to
 * `ScenarioEngine`; until a facade has landed the factory says so, and every statement that needs it
 * reports "not supported yet by the engine" at its line.
 */
import { createArm64Engine } from './bind/arm64';
import { createX86Engine } from './bind/x86';
import type { ScenarioEngine, VmConfig } from './engine_api';

export type EngineFactory = (cfg: VmConfig) => ScenarioEngine | string;

const bindings: Partial<Record<VmConfig['arch'], EngineFactory>> = { arm64: createArm64Engine, x86: createX86Engine };

/** Engine bindings register themselves here (see ./bind/). */
export function registerEngine(arch: VmConfig['arch'], factory: EngineFactory): void {
  bindings[arch] = factory;
}

export const createEngine: EngineFactory = (cfg) => {
  const f = bindings[cfg.arch];
  if (!f) {
    return cfg.arch === 'x86'
      ? 'the x86 engine facade (src/engine/x86/index.ts) has not landed'
      : 'no arm64 engine is bound';
  }
  return f(cfg);
};
