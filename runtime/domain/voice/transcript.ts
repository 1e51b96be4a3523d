/**
 * What a transcript may type into a pane: printable text only. A transcript is typed literally
 * (tmux `send-keys -l`), but a control character would still reach the program in the pane as a key (an
 * ESC sequence, a Ctrl-C, an Enter the user did not choose), so every one is removed; line breaks and tabs
 * become spaces. Bidirectional overrides go too: they make the text on screen differ from what runs.
 */
export const MAX_TRANSCRIPT_CHARS = 2000;

// Controls (C0, DEL, C1: \p{Cc}); bidi embeddings, overrides and isolates; line and paragraph separators.
const CONTROL = /[\p{Cc}\u202a-\u202e\u2066-\u2069\u2028\u2029]/gu;
const BREAKS = /[\t\n\r]+/g;

export function cleanTranscript(text: string): string {
  return text.replace(BREAKS, " ").replace(CONTROL, "").replace(/ {2,}/g, " ").trim();
}
