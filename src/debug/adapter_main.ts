/** The standalone debug adapter: DAP over stdio (or `--server=PORT`), for any DAP client. */
import { KvmMmuDebugSession } from './session';

// DebugSession.run wants a constructor without arguments; ours has only an optional one.
KvmMmuDebugSession.run(class extends KvmMmuDebugSession {
  constructor() {
    super();
  }
});
