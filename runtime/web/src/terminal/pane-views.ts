/**
 * The web side of tmux pane views (box/tmux/views.ts, which explains the design): on a phone the terminal
 * shows one pane at a time, full width; on a desktop the three-pane layout. The client asks tmux for its
 * view with private key sequences that tmux binds and never passes to a program, and only once tmux has
 * announced the views in the terminal title, so a box without them never receives stray escapes.
 */
export type PaneView = "layout" | "claude" | "logs" | "shell";
export type PaneRole = Exclude<PaneView, "layout">;

/** Same bytes as VIEW_KEYS in box/tmux/views.ts. */
export const VIEW_KEYS: Record<PaneView, string> = {
  layout: "\x1b[9710~",
  claude: "\x1b[9711~",
  logs: "\x1b[9712~",
  shell: "\x1b[9713~",
};

/** tmux's title (`set-titles-string`) ends with this once the views are installed. */
export const VIEWS_TITLE_MARK = "berth:v1";

export const PANES: Array<{ role: PaneRole; label: string }> = [
  { role: "claude", label: "Claude" },
  { role: "logs", label: "Logs" },
  { role: "shell", label: "Shell" },
];

/** Below this width the terminal shows one pane; a tablet in portrait (768) keeps the layout. */
export const PHONE_QUERY = "(max-width: 699px)";

/**
 * The view is re-asserted before input that follows a pause this long: another client may have taken the
 * window meanwhile (tmux sizes and, with views, zooms it for whoever typed last).
 */
export const REASSERT_AFTER_MS = 1500;

/** How long input waits after a re-assertion, for tmux to resize and zoom before the keys arrive. */
export const SETTLE_MS = 120;

const KEY = "berth.terminal.pane";

export function storedPane(): PaneRole {
  const v = localStorage.getItem(KEY);
  return v === "logs" || v === "shell" ? v : "claude";
}

export function storePane(role: PaneRole): void {
  localStorage.setItem(KEY, role);
}
