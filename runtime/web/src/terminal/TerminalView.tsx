import "@xterm/xterm/css/xterm.css";
import { FitAddon } from "@xterm/addon-fit";
import { Terminal } from "@xterm/xterm";
import { useEffect, useLayoutEffect, useRef, useState } from "preact/hooks";
import { ApiError, api, type Build, humanError } from "../api.ts";
import { href } from "../router.ts";
import { copyText, pasteText } from "../ui/clipboard.ts";
import { useMediaQuery } from "../ui/media.ts";
import { BuildLog } from "../views/BuildLog.tsx";
import { VoiceBar } from "../voice/VoiceBar.tsx";
import { applyCtrl, KeyBar } from "./KeyBar.tsx";
import {
  PANES,
  type PaneRole,
  type PaneView,
  PHONE_QUERY,
  REASSERT_AFTER_MS,
  SETTLE_MS,
  storedPane,
  storePane,
  VIEW_KEYS,
  VIEWS_TITLE_MARK,
} from "./pane-views.ts";
import { Close, TerminalSocket } from "./ttyd-socket.ts";

/** Where the connection stands; anything but connecting/live covers the terminal with an explanation. */
type Conn =
  | { kind: "connecting" }
  | { kind: "live" }
  | { kind: "retrying"; inSeconds: number; reason: string }
  /** The workspace is not running (hibernated, waking, failed…): no socket until it is ready. */
  | { kind: "asleep"; state: string }
  | { kind: "destroyed" }
  | { kind: "gone"; reason: string };

const FONT_KEY = "berth.terminal.fontSize";
const RUNNING = new Set(["ready", "unhealthy"]);
const BUSY = new Set(["provisioning", "starting", "waking", "hibernating"]);

/**
 * ANSI colours that all reach WCAG AA (4.5:1) against the black background, and black text that stays
 * readable on them (tmux's default status line is black on green). xterm.js's default Tango palette fails
 * both: blue, red, magenta and bright black are under 4:1 on black, and its black (#2e3436) on green is 3.7:1.
 */
const ACCESSIBLE_PALETTE = {
  background: "#000000",
  foreground: "#e4e4e4",
  black: "#000000",
  red: "#ff5f5f",
  green: "#5faf00",
  yellow: "#d7af00",
  blue: "#5f87ff",
  magenta: "#d75fd7",
  cyan: "#00afaf",
  white: "#d0d0d0",
  brightBlack: "#808080",
  brightRed: "#ff8787",
  brightGreen: "#87d75f",
  brightYellow: "#ffd75f",
  brightBlue: "#87afff",
  brightMagenta: "#ff87ff",
  brightCyan: "#5fd7d7",
  brightWhite: "#ffffff",
  selectionBackground: "#3a5a8c",
};

function statusText(c: Conn): string {
  switch (c.kind) {
    case "connecting":
      return "connecting…";
    case "live":
      return "live";
    case "retrying":
      return `retrying in ${c.inSeconds}s`;
    case "asleep":
      return `workspace ${c.state}`;
    case "destroyed":
      return "workspace destroyed";
    case "gone":
      return "session closed";
  }
}

/**
 * A full-screen terminal on one tmux session. It reconnects by itself with backoff (tmux redraws the screen
 * on reattach, so nothing is lost) and says why when it cannot. A workspace that is not running gets a
 * panel instead of a retry loop: Wake (with the build's progress) for a sleeping one, then it connects by
 * itself once the workspace is ready; a destroyed one says so and links back.
 *
 * On a phone it shows one pane at a time, full width, with a switcher (Claude / Logs / Shell); on a wider
 * screen tmux's three-pane layout. The choice reaches tmux as a per-client view (./pane-views.ts and
 * box/tmux/views.ts), so a phone never changes what a desktop on the same session works in.
 */
export function TerminalView({ sessionId }: { sessionId: string }) {
  const phone = useMediaQuery(PHONE_QUERY);
  const host = useRef<HTMLDivElement>(null);
  const [conn, setConn] = useState<Conn>({ kind: "connecting" });
  const [info, setInfo] = useState<{ name: string; workspaceId: string } | null>(null);
  const [fontSize, setFontSize] = useState(() => Number(localStorage.getItem(FONT_KEY)) || (phone ? 13 : 14));
  const [pane, setPane] = useState<PaneRole>(storedPane);
  const [ctrl, setCtrl] = useState(false);
  const [selecting, setSelecting] = useState<string | null>(null);
  const [menu, setMenu] = useState(false);
  const [toast, setToast] = useState<string | null>(null);
  const view: PaneView = phone ? pane : "layout";

  const ctrlRef = useRef(false);
  ctrlRef.current = ctrl;
  const viewRef = useRef<PaneView>(view);
  viewRef.current = view;
  const term = useRef<Terminal | null>(null);
  const fit = useRef<FitAddon | null>(null);
  const socket = useRef(new TerminalSocket());
  const views = useRef<{ supported: boolean; lastInputAt: number; held: string | null }>({
    supported: false,
    lastInputAt: 0,
    held: null,
  });
  const actions = useRef({ reconnect: () => {}, recheck: () => {} });

  /**
   * Tells tmux which view this client wants (only once tmux announced it understands), and holds the
   * user's input back a moment: becoming tmux's latest client resizes and re-zooms the window, and keys
   * landing in the middle of that get redrawn over by the shell's own SIGWINCH handling.
   */
  const sendView = () => {
    const v = views.current;
    if (!v.supported || !socket.current.open) return;
    socket.current.input(VIEW_KEYS[viewRef.current]);
    v.lastInputAt = Date.now();
    if (v.held !== null) return;
    v.held = "";
    setTimeout(() => {
      const held = v.held ?? "";
      v.held = null;
      if (held) socket.current.input(held);
    }, SETTLE_MS);
  };
  /** Input from the user; after a pause the view is re-asserted first (another client may hold the window). */
  const sendInput = (data: string) => {
    if (!socket.current.open) return;
    const v = views.current;
    if (Date.now() - v.lastInputAt > REASSERT_AFTER_MS) sendView();
    v.lastInputAt = Date.now();
    if (v.held !== null) v.held += data;
    else socket.current.input(data);
  };

  useEffect(() => {
    const t = new Terminal({
      fontSize,
      fontFamily: 'ui-monospace, "SFMono-Regular", "DejaVu Sans Mono", Menlo, Consolas, monospace',
      cursorBlink: true,
      scrollback: 5000,
      allowProposedApi: false,
      theme: ACCESSIBLE_PALETTE,
    });
    const f = new FitAddon();
    t.loadAddon(f);
    t.open(host.current!);
    f.fit();
    term.current = t;
    fit.current = f;
    const onData = t.onData((data) => {
      const out = ctrlRef.current ? applyCtrl(data) : data;
      if (ctrlRef.current) setCtrl(false);
      sendInput(out);
    });
    const onResize = t.onResize(({ cols, rows }) => socket.current.resize(cols, rows));
    // tmux announces the views in the title (box/tmux/views.ts) on every attach.
    const onTitle = t.onTitleChange((title) => {
      if (!title.includes(VIEWS_TITLE_MARK) || views.current.supported) return;
      views.current.supported = true;
      sendView();
    });
    const refit = () => f.fit();
    const regain = () => {
      if (!document.hidden) sendView();
    };
    addEventListener("resize", refit);
    visualViewport?.addEventListener("resize", refit);
    addEventListener("focus", regain);
    document.addEventListener("visibilitychange", regain);

    let attempt = 0;
    let timer: ReturnType<typeof setTimeout> | undefined;
    let disposed = false;

    /** Asks where the workspace stands, then connects, waits, or explains. */
    const check = async () => {
      clearTimeout(timer);
      try {
        const r = await api<{
          session: { name: string; workspaceId: string };
          workspace?: { state: string };
        }>(`/api/v1/sessions/${sessionId}`);
        if (disposed) return;
        setInfo(r.session);
        const state = r.workspace?.state ?? "ready";
        if (RUNNING.has(state)) return connect();
        gate(state);
      } catch (err) {
        if (disposed) return;
        if (err instanceof ApiError && err.status === 404)
          setConn({ kind: "gone", reason: "This session is closed, or its workspace was destroyed." });
        else if (err instanceof ApiError && err.status === 401)
          setConn({ kind: "gone", reason: "You are signed out." });
        else retry(humanError(err));
      }
    };
    /** Not running: say so and look again while a build is under way (or now and then, if asleep). */
    const gate = (state: string) => {
      if (state === "destroyed" || state === "destroying") return setConn({ kind: "destroyed" });
      setConn({ kind: "asleep", state });
      timer = setTimeout(check, BUSY.has(state) ? 2_000 : 10_000);
    };
    const connect = () => {
      clearTimeout(timer);
      setConn({ kind: "connecting" });
      views.current.supported = false;
      socket.current
        .connect(
          sessionId,
          attempt,
          { columns: t.cols, rows: t.rows },
          {
            onOutput: (data) => t.write(data),
            onTitle: (title) => {
              document.title = title;
            },
            onOpen: () => {
              attempt = 0;
              setConn({ kind: "live" });
              if (!matchMedia("(pointer: coarse)").matches) t.focus();
            },
            onClose: (code, reason) => {
              if (disposed) return;
              views.current.supported = false;
              if (code === Close.Asleep) return void check();
              if (code === Close.SessionGone)
                return setConn({ kind: "gone", reason: "This session was closed." });
              retry(reason || "connection lost");
            },
          },
        )
        .catch((err: unknown) => {
          if (disposed) return;
          if (err instanceof ApiError && err.status === 409 && err.code === "workspace_not_ready")
            gate(String(err.details.state ?? "hibernated"));
          else if (err instanceof ApiError && err.status === 404)
            setConn({ kind: "gone", reason: "This session is closed, or its workspace was destroyed." });
          else if (err instanceof ApiError && err.status === 401)
            setConn({ kind: "gone", reason: "You are signed out." });
          else retry(humanError(err));
        });
    };
    const retry = (reason: string) => {
      attempt++;
      const seconds = Math.min(30, 2 ** Math.min(attempt - 1, 5)) * (0.75 + Math.random() * 0.5);
      setConn({ kind: "retrying", inSeconds: Math.max(1, Math.round(seconds)), reason });
      // A retry asks about the workspace first: a box that fell asleep meanwhile gets the panel, not a loop.
      timer = setTimeout(check, seconds * 1000);
    };
    actions.current = { reconnect: connect, recheck: check };
    const online = () => check();
    addEventListener("online", online);
    check();

    return () => {
      disposed = true;
      clearTimeout(timer);
      removeEventListener("resize", refit);
      removeEventListener("online", online);
      removeEventListener("focus", regain);
      document.removeEventListener("visibilitychange", regain);
      visualViewport?.removeEventListener("resize", refit);
      onData.dispose();
      onResize.dispose();
      onTitle.dispose();
      socket.current.close();
      t.dispose();
    };
  }, [sessionId]);

  useEffect(() => {
    localStorage.setItem(FONT_KEY, String(fontSize));
    if (term.current) {
      term.current.options.fontSize = fontSize;
      fit.current?.fit();
    }
  }, [fontSize]);

  // A phone switching panes, or a window crossing the phone breakpoint, asks tmux for the new view.
  useEffect(() => {
    sendView();
    fit.current?.fit();
  }, [view]);

  useEffect(() => {
    if (!toast) return;
    const t = setTimeout(() => setToast(null), 2000);
    return () => clearTimeout(t);
  }, [toast]);

  useLayoutEffect(() => {
    if (!menu && selecting === null) return;
    // Capture phase, and swallowed: the Escape that closes a menu must not also reach the terminal (a
    // lone ESC would sit in readline and turn the next key into a Meta chord). A layout effect, so it is
    // attached as the menu renders, not after the next paint: an Escape in between went to the terminal.
    const onKey = (e: KeyboardEvent) => {
      if (e.key !== "Escape") return;
      e.preventDefault();
      e.stopPropagation();
      setMenu(false);
      setSelecting(null);
    };
    addEventListener("keydown", onKey, true);
    return () => removeEventListener("keydown", onKey, true);
  }, [menu, selecting]);

  const choosePane = (role: PaneRole) => {
    setPane(role);
    storePane(role);
  };

  /** The screen as text, for the selection sheet (tmux's status line left out). */
  const screenText = (): string => {
    const t = term.current;
    if (!t) return "";
    const buf = t.buffer.active;
    const lines: string[] = [];
    for (let i = 0; i < buf.length; i++) lines.push(buf.getLine(i)?.translateToString(true) ?? "");
    while (lines.length > 0 && lines.at(-1)!.trim() === "") lines.pop();
    if (info && lines.at(-1)?.startsWith(`[${info.name}]`)) lines.pop();
    while (lines.length > 0 && lines.at(-1)!.trim() === "") lines.pop();
    return lines.join("\n");
  };

  const copy = async () => {
    const selected = term.current?.getSelection();
    if (!selected) return setSelecting(screenText());
    setToast((await copyText(selected)) ? "Copied" : "The browser refused to copy");
  };
  const paste = async () => {
    setMenu(false);
    const text = await pasteText();
    if (text) sendInput(text);
    else setToast("Paste is not allowed here: long-press the terminal and paste");
  };
  const wake = async () => {
    if (!info) return;
    try {
      await api(`/api/v1/workspaces/${info.workspaceId}/wake`, { method: "POST" });
      setConn({ kind: "asleep", state: "waking" });
    } catch (err) {
      setToast(humanError(err));
    }
    actions.current.recheck();
  };

  const back = info ? href.workspace(info.workspaceId) : href.workspaces();
  const covered = conn.kind === "asleep" || conn.kind === "destroyed" || conn.kind === "gone";
  return (
    <div class={`terminal-page${phone ? " phone" : ""}`}>
      <header class="term-bar">
        <a class="term-back" href={back}>
          <span aria-hidden="true">‹</span>
          <span class="visually-hidden">back to the workspace</span>
        </a>
        {phone ? (
          <fieldset class="pane-switch">
            <legend class="visually-hidden">Pane</legend>
            {PANES.map((p) => (
              <button
                key={p.role}
                type="button"
                aria-pressed={pane === p.role}
                class={pane === p.role ? "on" : ""}
                onClick={() => choosePane(p.role)}
              >
                {p.label}
              </button>
            ))}
          </fieldset>
        ) : (
          <span class="term-name">{info?.name ?? "…"}</span>
        )}
        <span class={`term-status term-${conn.kind}`} role="status" aria-live="polite">
          <span class="term-dot" aria-hidden="true" />
          <span class={phone ? "visually-hidden" : "term-status-text"}>{statusText(conn)}</span>
        </span>
        {!phone && <span class="spacer" />}
        {phone ? (
          <button
            type="button"
            class="icon-button"
            aria-expanded={menu}
            aria-controls="term-menu"
            onClick={() => setMenu(!menu)}
          >
            <span aria-hidden="true">⋯</span>
            <span class="visually-hidden">More</span>
          </button>
        ) : (
          <div class="term-tools">
            <button type="button" onClick={copy}>
              Copy
            </button>
            <button type="button" onClick={paste}>
              Paste
            </button>
            {/* The glyph is what sighted users read; the hidden words are the name (WCAG 2.5.3 label in name). */}
            <button type="button" onClick={() => setFontSize((s) => Math.max(9, s - 1))}>
              <span aria-hidden="true">A−</span>
              <span class="visually-hidden">Smaller text</span>
            </button>
            <button type="button" onClick={() => setFontSize((s) => Math.min(28, s + 1))}>
              <span aria-hidden="true">A+</span>
              <span class="visually-hidden">Larger text</span>
            </button>
          </div>
        )}
      </header>
      {phone && menu && (
        <section class="term-menu" id="term-menu" aria-label="terminal menu">
          <p class="term-menu-name">
            <strong>{info?.name ?? "…"}</strong> <span class="muted">{statusText(conn)}</span>
          </p>
          <button
            type="button"
            onClick={() => {
              setMenu(false);
              setSelecting(screenText());
            }}
          >
            Select &amp; copy
          </button>
          <button type="button" onClick={paste}>
            Paste
          </button>
          <div class="term-menu-row">
            <button type="button" onClick={() => setFontSize((s) => Math.max(9, s - 1))}>
              <span aria-hidden="true">A−</span>
              <span class="visually-hidden">Smaller text</span>
            </button>
            <span class="muted">{fontSize}px</span>
            <button type="button" onClick={() => setFontSize((s) => Math.min(28, s + 1))}>
              <span aria-hidden="true">A+</span>
              <span class="visually-hidden">Larger text</span>
            </button>
          </div>
          <a class="button subtle" href={back}>
            Workspace page
          </a>
        </section>
      )}
      {conn.kind === "retrying" && (
        <div class="term-banner">
          <span>
            Connection lost ({conn.reason}). Trying again in {conn.inSeconds} s.
          </span>
          <button type="button" onClick={() => actions.current.reconnect()}>
            Retry now
          </button>
        </div>
      )}
      <div class="term-main">
        <div class="terminal-host" ref={host} aria-hidden={covered ? true : undefined} />
        {covered && (
          <div class="term-overlay">
            <Gate conn={conn} workspaceId={info?.workspaceId ?? null} onWake={wake} />
          </div>
        )}
        {selecting !== null && (
          <SelectSheet
            text={selecting}
            onClose={() => setSelecting(null)}
            onCopied={(ok) => setToast(ok ? "Copied" : "The browser refused to copy")}
          />
        )}
        <div class="toast" aria-live="polite">
          {toast}
        </div>
      </div>
      <VoiceBar sessionId={sessionId} workspaceId={info?.workspaceId ?? null} />
      <KeyBar send={sendInput} ctrl={ctrl} setCtrl={setCtrl} />
    </div>
  );
}

/** What the user can do about a workspace that is not running: wake it, wait for it, or go back. */
function Gate({ conn, workspaceId, onWake }: { conn: Conn; workspaceId: string | null; onWake: () => void }) {
  const [build, setBuild] = useState<Build | null>(null);
  const state = conn.kind === "asleep" ? conn.state : null;
  const busy = state !== null && BUSY.has(state);
  useEffect(() => {
    if (!busy || !workspaceId) return;
    api<{ builds: Build[] }>(`/api/v1/workspaces/${workspaceId}/builds`)
      .then((r) => setBuild(r.builds[0] ?? null))
      .catch(() => {});
  }, [busy, workspaceId, state]);

  if (conn.kind === "destroyed")
    return (
      <section class="gate" aria-labelledby="gate-h">
        <h2 id="gate-h">This workspace was destroyed</h2>
        <p>Its files and sessions are gone, so there is nothing to connect to.</p>
        <a class="button primary" href={href.workspaces()}>
          Back to workspaces
        </a>
      </section>
    );
  if (conn.kind === "gone")
    return (
      <section class="gate" aria-labelledby="gate-h">
        <h2 id="gate-h">Nothing to connect to</h2>
        <p>{conn.reason}</p>
        <a class="button primary" href={workspaceId ? href.workspace(workspaceId) : href.workspaces()}>
          {workspaceId ? "Back to the workspace" : "Back to workspaces"}
        </a>
      </section>
    );
  if (state === "hibernated" || state === "failed")
    return (
      <section class="gate" aria-labelledby="gate-h">
        <h2 id="gate-h">{state === "failed" ? "The workspace failed" : "This workspace is hibernated"}</h2>
        <p>
          {state === "failed"
            ? "Its last change did not finish. Waking it tries again; the workspace page has the build log."
            : "Its box is stopped and your files are kept. Wake it to use the terminal; it connects by itself once the workspace is ready."}
        </p>
        <div class="gate-actions">
          <button type="button" class="primary" onClick={onWake} disabled={!workspaceId}>
            Wake workspace
          </button>
          {workspaceId && (
            <a class="button subtle" href={href.workspace(workspaceId)}>
              Workspace page
            </a>
          )}
        </div>
      </section>
    );
  return (
    <section class="gate" aria-labelledby="gate-h">
      <h2 id="gate-h">{state === "hibernating" ? "Going to sleep…" : "Waking up…"}</h2>
      <p>
        {state === "hibernating"
          ? "The workspace is hibernating. Wake it again once it is asleep."
          : "The terminal connects by itself as soon as the workspace is ready."}
      </p>
      {build ? (
        <BuildLog key={build.id} build={build} compact />
      ) : (
        <div class="progress" role="progressbar" aria-label="waiting" />
      )}
    </section>
  );
}

/**
 * The screen as plain text in a native element, where a phone's own selection handles work (xterm.js
 * draws on a canvas-like layer that touch selection cannot reach), with Copy for the selection or all.
 */
function SelectSheet({
  text,
  onClose,
  onCopied,
}: {
  text: string;
  onClose: () => void;
  onCopied: (ok: boolean) => void;
}) {
  const pre = useRef<HTMLPreElement>(null);
  const copy = async () => {
    const sel = getSelection();
    const picked = sel && pre.current?.contains(sel.anchorNode) ? sel.toString() : "";
    onCopied(await copyText(picked || text));
  };
  return (
    <div class="select-sheet" role="dialog" aria-modal="true" aria-labelledby="select-h">
      <header>
        <h2 id="select-h">Select text</h2>
        <button type="button" class="primary" onClick={copy}>
          Copy
        </button>
        <button type="button" onClick={onClose}>
          Done
        </button>
      </header>
      <p class="muted">
        Touch and hold to select; Copy takes the selection, or everything when nothing is selected.
      </p>
      <pre ref={pre}>{text || " "}</pre>
    </div>
  );
}
