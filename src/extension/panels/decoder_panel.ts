/**
 * The Bit Decoder panel ("KVM MMU: Decode Value..."): a 64-bit grid of an SPTE, guest PTE, EPT entry,
 * role word, PFERR code or stage-2 descriptor. The extension decodes with the engine's tables; the webview
 * only draws snapshots and asks for new decodes. One panel, reused; restored after a reload by its
 * serializer from the state the webview saved.
 */
import * as vscode from 'vscode';
import { decodeValue, kindForName } from './decode_kinds';
import { webviewHtml, webviewOptions } from './webview_html';
import {
  DECODE_KINDS,
  KIND_LABELS,
  normaliseHex,
  parseDecoderState,
  parseFromPanel,
  type DecodeKind,
  type DecodeRequest,
  type ToPanel,
} from '../../../webview/shared/decoder_protocol';

export const DECODER_VIEW_TYPE = 'kvmMmu.decoder';

export class DecoderPanel {
  static current: DecoderPanel | undefined;
  private pending: DecodeRequest | undefined;
  private last: DecodeRequest | undefined;
  private readonly subs: vscode.Disposable[] = [];
  /** The last snapshot the webview reported drawing. */
  rendered: { value: string; bits: number; fields: number } | undefined;
  private readonly renderedEmitter = new vscode.EventEmitter<{ value: string; bits: number; fields: number }>();
  readonly onDidRender = this.renderedEmitter.event;

  static show(extensionUri: vscode.Uri, req?: DecodeRequest): DecoderPanel {
    if (DecoderPanel.current) {
      DecoderPanel.current.panel.reveal(undefined, false);
      if (req) DecoderPanel.current.decode(req);
      return DecoderPanel.current;
    }
    const panel = vscode.window.createWebviewPanel(DECODER_VIEW_TYPE, 'Bit Decoder', { viewColumn: vscode.window.activeTextEditor ? vscode.ViewColumn.Beside : vscode.ViewColumn.Active, preserveFocus: false }, webviewOptions(extensionUri));
    return new DecoderPanel(panel, extensionUri, req);
  }

  constructor(readonly panel: vscode.WebviewPanel, extensionUri: vscode.Uri, req?: DecodeRequest) {
    DecoderPanel.current = this;
    this.pending = req;
    panel.webview.options = webviewOptions(extensionUri);
    panel.webview.html = webviewHtml(panel.webview, extensionUri, 'decoder', 'Bit Decoder');
    this.subs.push(
      panel.webview.onDidReceiveMessage((m) => this.onMessage(m)),
      panel.onDidDispose(() => this.dispose()),
    );
  }

  /** The last request decoded (tests read it). */
  get request(): DecodeRequest | undefined {
    return this.last;
  }

  /** Flip a bit in the webview as a click would; the webview asks for the new decode. */
  toggleBit(bit: number): void {
    this.post({ type: 'toggleBit', bit });
  }

  private post(m: ToPanel): void {
    void this.panel.webview.postMessage(m);
  }

  decode(req: DecodeRequest): void {
    this.last = req;
    this.panel.title = `Decode: ${KIND_LABELS[req.kind]}`;
    try {
      this.post({ type: 'decoded', result: decodeValue(req) });
    } catch (e) {
      this.post({ type: 'error', message: e instanceof Error ? e.message : String(e) });
    }
  }

  private onMessage(raw: unknown): void {
    const m = parseFromPanel(raw);
    if (!m) return;
    if (m.type === 'ready') {
      this.decode(this.pending ?? this.last ?? m.state ?? { kind: 'ept-spte', value: '0x0', level: 0 });
      this.pending = undefined;
    } else if (m.type === 'decode') {
      this.decode(m.request);
    } else if (m.type === 'copy') {
      void vscode.env.clipboard.writeText(m.text);
    } else if (m.type === 'rendered') {
      this.rendered = { value: m.value, bits: m.bits, fields: m.fields };
      this.renderedEmitter.fire(this.rendered);
    }
  }

  dispose(): void {
    if (DecoderPanel.current === this) DecoderPanel.current = undefined;
    for (const s of this.subs) s.dispose();
    this.renderedEmitter.dispose();
    this.panel.dispose();
  }
}

/** Arguments the decode command accepts from trees, menus and other extensions. */
export interface DecodeCommandArgs {
  kind?: string;
  value?: string | number;
  level?: number;
}

/** A `debug/variables/context` menu passes `{ container, variable: { name, value, evaluateName } }`. */
interface VariableContext {
  variable?: { name?: string; value?: string };
}

function valueText(v: string | number | undefined): string | undefined {
  if (typeof v === 'number') return Number.isSafeInteger(v) && v >= 0 ? '0x' + v.toString(16) : undefined;
  if (typeof v !== 'string') return undefined;
  // A Variables value may carry a decode after the number: "0x8000000000000ef7 (leaf ...)".
  const m = /^\s*(0x[0-9a-fA-F_]+|[0-9]+)\b/.exec(v);
  if (!m) return undefined;
  return m[1].startsWith('0x') ? normaliseHex(m[1]) : '0x' + BigInt(m[1]).toString(16);
}

async function pickKind(placeHolder: string): Promise<DecodeKind | undefined> {
  const pick = await vscode.window.showQuickPick(
    DECODE_KINDS.map((k) => ({ label: KIND_LABELS[k], decodeKind: k })),
    { placeHolder, matchOnDescription: true },
  );
  return pick?.decodeKind;
}

/** Which SPTE layout the active VM uses: EPT with TDP on Intel, the NPT/legacy layout otherwise. */
export type SpteFormatOf = () => 'ept-spte' | 'npt-spte' | undefined;

export function registerDecoderPanel(context: vscode.ExtensionContext, spteFormat: SpteFormatOf = () => undefined): void {
  const uri = context.extensionUri;
  context.subscriptions.push(
    vscode.commands.registerCommand('kvmMmu.decodeValue', async (arg?: DecodeCommandArgs | VariableContext) => {
      let kind: DecodeKind | undefined;
      let value: string | undefined;
      let level = 0;
      if (arg && 'variable' in arg && arg.variable) {
        value = valueText(arg.variable.value);
        kind = kindForName(arg.variable.name ?? '') ?? (/spte/i.test(arg.variable.name ?? '') ? spteFormat() : undefined);
        if (!value) {
          void vscode.window.showWarningMessage(`'${arg.variable.name}' has no numeric value to decode.`);
          return undefined;
        }
      } else if (arg && ('kind' in arg || 'value' in arg)) {
        const a = arg as DecodeCommandArgs;
        kind = (DECODE_KINDS as readonly string[]).includes(a.kind ?? '') ? (a.kind as DecodeKind) : undefined;
        value = valueText(a.value);
        level = typeof a.level === 'number' ? a.level : 0;
      }
      if (!kind) kind = await pickKind(value ? `Decode ${value} as...` : 'Decode a value as...');
      if (!kind) return undefined;
      if (!value) {
        const text = await vscode.window.showInputBox({
          prompt: `${KIND_LABELS[kind]}: value in hex`,
          value: '0x',
          validateInput: (t) => (normaliseHex(t) ? undefined : 'a 64-bit value in hex, e.g. 0x8000000000000ef7'),
        });
        if (text === undefined) return undefined;
        value = normaliseHex(text);
      }
      if (!value) return undefined;
      const req: DecodeRequest = { kind, value, level };
      DecoderPanel.show(uri, req);
      return req;
    }),
    vscode.window.registerWebviewPanelSerializer(DECODER_VIEW_TYPE, {
      deserializeWebviewPanel: async (panel, state) => {
        const s = parseDecoderState(state);
        new DecoderPanel(panel, uri, s);
      },
    }),
  );
}
