import { useState } from "preact/hooks";

/**
 * Keys a phone keyboard lacks, in one row that fits a 360-px screen: sticky Ctrl first (always in
 * reach), then Esc, Tab, Shift+Tab, the arrows and Ctrl-C. Ctrl applies to the next key typed, here or on
 * the keyboard. The bar always takes its space on touch screens, so showing the keyboard never shifts the
 * terminal, and pressing a key does not take the focus from the terminal (the keyboard stays open).
 */
const KEYS: Array<[label: string, name: string, seq: string]> = [
  ["Esc", "Escape", "\x1b"],
  ["Tab", "Tab", "\t"],
  ["⇤", "Shift Tab", "\x1b[Z"],
  ["←", "Left", "\x1b[D"],
  ["↑", "Up", "\x1b[A"],
  ["↓", "Down", "\x1b[B"],
  ["→", "Right", "\x1b[C"],
  ["^C", "Control C", "\x03"],
];

const keepFocus = (e: Event) => e.preventDefault();

export function KeyBar({
  send,
  ctrl,
  setCtrl,
}: {
  send: (s: string) => void;
  ctrl: boolean;
  setCtrl: (v: boolean) => void;
}) {
  const [pressed, setPressed] = useState<string | null>(null);
  const tap = (name: string, seq: string) => {
    setPressed(name);
    setTimeout(() => setPressed(null), 120);
    send(seq);
  };
  return (
    <div class="keybar" role="toolbar" aria-label="terminal keys">
      <button
        type="button"
        aria-pressed={ctrl}
        class={`key key-ctrl${ctrl ? " sticky" : ""}`}
        onPointerDown={keepFocus}
        onClick={() => setCtrl(!ctrl)}
      >
        <KeyName label="Ctrl" name="Control" />
      </button>
      {KEYS.map(([label, name, seq]) => (
        <button
          key={name}
          type="button"
          class={`key${pressed === name ? " pressed" : ""}`}
          onPointerDown={keepFocus}
          onClick={() => tap(name, seq)}
        >
          <KeyName label={label} name={name} />
        </button>
      ))}
    </div>
  );
}

/**
 * The short label on the key for the eye, the full name for screen readers: an aria-label that did not
 * contain the visible text ("Esc" named "Escape") would break speech input (WCAG 2.5.3, label in name).
 */
function KeyName({ label, name }: { label: string; name: string }) {
  return (
    <>
      <span aria-hidden="true">{label}</span>
      <span class="visually-hidden">{name}</span>
    </>
  );
}

/** Applies a sticky Ctrl to typed text: letters and @[\]^_ become their control codes. */
export function applyCtrl(text: string): string {
  const c = text.charCodeAt(0);
  if (text.length !== 1) return text;
  if (c >= 97 && c <= 122) return String.fromCharCode(c - 96);
  if (c >= 64 && c <= 95) return String.fromCharCode(c - 64);
  return text;
}
