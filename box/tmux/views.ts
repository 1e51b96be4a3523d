/**
 * Pane views: a phone shows one pane of a session at a time, full width, while a desktop attached to the
 * same session keeps the three-pane layout.
 *
 * What tmux (3.3a, Debian bookworm) offers, and why the design is what it is:
 * - A pane has one size and a window has one layout and one zoom flag, shared by every client attached to
 *   it (`resize-pane -Z` zooms for everybody). tmux cannot show a pane alone to one client: only nesting a
 *   second tmux inside the panes could, at the cost of the desktop's copy mode, scrollback and prefix key.
 * - The window's *size* already follows one client: `window-size latest` (tmux's default) sizes it to the
 *   client that typed or resized last, and the others see it cropped until they type.
 * - Per client, tmux keeps: the `active-pane` client flag (its own active pane, so its keystrokes go
 *   there whatever the window's active pane is), and the `client-active` hook (runs when a client becomes
 *   the window's latest).
 *
 * So the zoom follows the size: each client states the view it wants (a pane role, or the layout), kept in
 * a server option named after the client (`@berth-view-<client name>`), and whenever a client becomes the
 * latest, resizes, or asks for a view, `@berth-apply` gives the window that client's size and view: a
 * phone zooms its pane; a desktop unzooms (only a zoom Berth made) and gets back its own active pane and
 * the main-vertical layout. The one who is typing always sees what they asked for, at their size; a
 * desktop left open while a phone types shows the phone's pane until it is used again, exactly as tmux
 * already shows it the phone's size (the web client re-asserts its view when its tab gains focus, and
 * before typing after a pause, so the first keystroke lands where it should). A phone's keystrokes go to
 * its own pane through the `active-pane` flag even in the instant before its zoom is applied; a desktop
 * keeps the window's active pane (the flag would split the cursor from the highlighted border) and that
 * is restored on unzoom. Berth sizes the window itself rather than leaving it to `window-size latest`:
 * see {@link APPLY} for why the order of size and zoom matters.
 *
 * The client asks in-band, through the terminal byte stream (the relay passes bytes, never arguments):
 * private escape sequences registered as tmux `user-keys` and bound in the root table, so they never
 * reach a program. The web client only sends them once tmux has announced support in the terminal title
 * (`set-titles-string` ends in {@link VIEWS_TITLE_MARK}), so an older box never sees stray escapes.
 */
import { isValidSessionName } from "./names.ts";
import type { TmuxClient } from "./tmux-command.ts";

export type PaneView = "layout" | "claude" | "logs" | "shell";

/** Bumped whenever what {@link installPaneViews} sets changes, so running servers get the new version. */
export const PANE_VIEWS_VERSION = "3";

/** The sequences a client types to ask for a view. Mirrored in runtime/web/src/terminal/pane-views.ts. */
export const VIEW_KEYS: Record<PaneView, string> = {
  layout: "\x1b[9710~",
  claude: "\x1b[9711~",
  logs: "\x1b[9712~",
  shell: "\x1b[9713~",
};

/**
 * tmux sends the title `<session> · berth:v1` to clients once the views are installed. The number is
 * that of the client protocol (the keys above), not of the install.
 */
export const VIEWS_TITLE_MARK = "berth:v1";

/** user-keys slots and hook indexes high enough to leave a user's own (0, 1, …) alone. */
const FIRST_USER_KEY = 97;
const HOOK_INDEX = 97;

const VIEWS: readonly PaneView[] = ["layout", "claude", "logs", "shell"];

/** A client that has not asked for a view gets one pane below this width (a phone, even in landscape). */
const NARROW_COLUMNS = 100;

/** The window to the client's size (its height less the status line). */
const FIT_TO_CLIENT = `run -C "resize-window -x #{client_width} -y #{e|-|:#{client_height},#{?#{==:#{status},off},0,#{?#{==:#{status},on},1,#{status}}}}"`;

/**
 * Gives the window the view of the client in whose context it runs (a key binding or a client hook):
 * its size and its zoom, in an order that never squeezes a pane below the phone's width. With tmux's own
 * `window-size latest` the window shrank to the phone's width while still showing the three-pane layout
 * (the hidden panes, resized with it, down to 3 columns) before the zoom came: every shell redrew its
 * prompt for that width on SIGWINCH, over the lines above it, so output vanished from the screen whenever
 * the other device took over. So the window is sized here (`resize-window`, which makes it `window-size
 * manual`): a phone stacks the panes full width behind the zoom (`even-vertical`), zooms its pane at the
 * old size and then shrinks the window; a desktop grows the window and then unzooms to main-vertical.
 * The hooks below run this whenever tmux would have resized (a client becomes the latest, resizes,
 * attaches); a client that has not asked for a view yet gets the Claude pane alone when it is narrow,
 * so a phone's attach does not squeeze the layout either.
 *
 * Formats in an option are not expanded twice, so the client's own option, whose name depends on the
 * client, is read in two stages through `run -C` (`##{` survives the first) into `@berth-cur`; tmux runs
 * one command at a time, so that scratch option is never seen half-written.
 */
const APPLY = [
  `run -C "set -sF @berth-cur '##{@berth-view-#{client_name}}'"`,
  // A client that has not said (just attached, or not a Berth web client): one pane when it is narrow.
  `if -F "#{==:#{@berth-cur},}" { if -F "#{e|<:#{client_width},${NARROW_COLUMNS}}" { set -s @berth-cur claude } { set -s @berth-cur layout } }`,
  // No pane with that role in this window (not a Berth session, or the pane was closed): the layout.
  `if -F "#{==:#{P:#{?#{==:#{@berth-role},#{@berth-cur}},1,}},}" { set -s @berth-cur layout }`,
  `if -F "#{!=:#{@berth-cur},layout}" {`,
  // Zoomed on another pane (another phone, or the user's own C-b z): unzoom first.
  `  if -F "#{&&:#{window_zoomed_flag},#{!=:#{P:#{?pane_active,#{@berth-role},}},#{@berth-cur}}}" { resize-pane -Z }`,
  // Leaving the layout: remember the pane that layout clients had active, to give it back.
  `  if -F "#{@berth-zoomed}" {} { set -wF @berth-layout-pane "#{P:#{?pane_active,#{pane_id},}}" }`,
  // Behind the zoom, stack the panes full width, so that shrinking the window to the phone narrows none
  // of them below the phone's own width (main-vertical left the hidden panes 3 columns wide).
  `  if -F "#{window_zoomed_flag}" {} { select-layout even-vertical ; run -C "resize-pane -Z -t '#{P:#{?#{==:#{@berth-role},#{@berth-cur}},#{pane_id},}}'" }`,
  "  set -w @berth-zoomed 1",
  `  ${FIT_TO_CLIENT}`,
  "} {",
  `  ${FIT_TO_CLIENT}`,
  // A layout client: undo a zoom Berth made (never the user's own), relayout, give the active pane back.
  `  if -F "#{@berth-zoomed}" {`,
  "    set -w @berth-zoomed 0",
  `    if -F "#{window_zoomed_flag}" { resize-pane -Z }`,
  "    select-layout main-vertical",
  `    if -F "#{@berth-layout-pane}" { run -C "select-pane -t '#{@berth-layout-pane}'" }`,
  "  }",
  "}",
].join("\n");

function showCommand(view: PaneView): string {
  if (view === "layout")
    return [
      "refresh-client -f '!active-pane'",
      `run -C "set -s '@berth-view-#{client_name}' layout"`,
      "run -C '#{@berth-apply}'",
    ].join(" ; ");
  return [
    // The phone's keystrokes go to its own pane, even before the zoom below is applied.
    "refresh-client -f active-pane",
    `run -C "set -s '@berth-view-#{client_name}' ${view}"`,
    `run -C "select-pane -t '#{P:#{?#{==:#{@berth-role},${view}},#{pane_id},}}'"`,
    "run -C '#{@berth-apply}'",
  ].join(" ; ");
}

/** The tmux commands (argv, `;`-separated) that install the views on a server. */
export function paneViewsCommands(): string[] {
  const argv: string[][] = [["set-option", "-s", "@berth-apply", APPLY]];
  VIEWS.forEach((view, i) => {
    const slot = FIRST_USER_KEY + i;
    argv.push(["set-option", "-s", `@berth-show-${view}`, showCommand(view)]);
    argv.push(["set-option", "-s", `user-keys[${slot}]`, VIEW_KEYS[view]]);
    argv.push(["bind-key", "-n", `User${slot}`, "run-shell", "-C", `#{@berth-show-${view}}`]);
  });
  argv.push(
    ["set-hook", "-g", `client-active[${HOOK_INDEX}]`, "run -C '#{@berth-apply}'"],
    ["set-hook", "-g", `client-resized[${HOOK_INDEX}]`, "run -C '#{@berth-apply}'"],
    // A new client starts with the layout; a recycled client name (pty path) must not inherit a view.
    ["set-hook", "-g", `client-attached[${HOOK_INDEX}]`, `run -C "set -su '@berth-view-#{client_name}'"`],
    // The window is sized by hand now: when a client leaves, the largest one left gets its size back (its
    // own view follows as soon as it types or its tab gains focus).
    [
      "set-hook",
      "-g",
      `client-detached[${HOOK_INDEX}]`,
      `run -C "set -su '@berth-view-#{hook_client}'" ; resize-window -A`,
    ],
    // The announcement the web client waits for before it sends any view key.
    ["set-option", "-g", "set-titles", "on"],
    ["set-option", "-g", "set-titles-string", `#{session_name} · ${VIEWS_TITLE_MARK}`],
    ["set-option", "-s", "@berth-views", PANE_VIEWS_VERSION],
  );
  return argv.flatMap((cmd, i) => (i === 0 ? cmd : [";", ...cmd]));
}

/** The window-resized hook of a Berth session: keep main-vertical, but never undo a view's zoom. */
export const RELAYOUT_ON_RESIZE = "if -F '#{window_zoomed_flag}' '' 'select-layout main-vertical'";

/**
 * Installs the views on the server unless this version already is (one tmux call when it is). Sessions
 * laid out before views existed get the zoom-aware resize hook too: their old one (`select-layout` on every
 * resize) would unzoom a phone's pane as soon as the window shrank to it.
 */
export async function installPaneViews(tmux: TmuxClient): Promise<void> {
  const current = await tmux.run(["show-options", "-sqv", "@berth-views"]).catch(() => "");
  if (current.trim() === PANE_VIEWS_VERSION) return;
  const panes = await tmux.run(["list-panes", "-a", "-F", "#{session_name}\t#{@berth-role}"]).catch(() => "");
  const berthSessions = new Set(
    panes
      .split("\n")
      .map((line) => line.split("\t"))
      .filter(([name, role]) => role === "claude" && isValidSessionName(name))
      .map(([name]) => name!),
  );
  for (const name of berthSessions)
    await tmux.run(["set-hook", "-t", name, "window-resized", RELAYOUT_ON_RESIZE]).catch(() => {});
  await tmux.run(paneViewsCommands());
}
