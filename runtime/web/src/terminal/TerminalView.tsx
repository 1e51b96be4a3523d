import "@xterm/xterm/css/xterm.css";
import { FitAddon } from "@xterm/addon-fit";
import { Terminal } from "@xterm/xterm";
import { useEffect, useRef, useState } from "preact/hooks";
import { ApiError, api } from "../api.ts";
import { href } from "../router.ts";
import { applyCtrl, KeyBar } from "./KeyBar.tsx";
import { Close, TerminalSocket } from "./ttyd-socket.ts";

type Status =
  | { kind: "connecting" }
  | { kind: "live" }
  | { kind: "retrying"; inSeconds: number; reason: string }
  | { kind: "asleep" }
  | { kind: "stopped"; reason: string };

const FONT_KEY = "berth.terminal.fontSize";

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
};

/**
 * A full-screen terminal on one tmux session. It reconnects by itself with backoff (tmux redraws the screen
 * on reattach, so nothing is lost), says why when it cannot, and offers Wake when the box is asleep.
 */
export function TerminalView({ sessionId }: { sessionId: string }) {
  const host = useRef<HTMLDivElement>(null);
  const [status, setStatus] = useState<Status>({ kind: "connecting" });
  const [info, setInfo] = useState<{ name: string; workspaceId: string } | null>(null);
  const [fontSize, setFontSize] = useState(() => Number(localStorage.getItem(FONT_KEY)) || 14);
  const [ctrl, setCtrl] = useState(false);
  const ctrlRef = useRef(false);
  ctrlRef.current = ctrl;
  const term = useRef<Terminal | null>(null);
  const fit = useRef<FitAddon | null>(null);
  const socket = useRef(new TerminalSocket());
  const reconnectNow = useRef<() => void>(() => {});

  useEffect(() => {
    api<{ session: { name: string; workspaceId: string } }>(`/api/v1/sessions/${sessionId}`)
      .then((r) => setInfo(r.session))
      .catch(() => setStatus({ kind: "stopped", reason: "this session is closed or not yours" }));
  }, [sessionId]);

  useEffect(() => {
    const t = new Terminal({
      fontSize,
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
    const send = (data: string) => {
      const out = ctrlRef.current ? applyCtrl(data) : data;
      if (ctrlRef.current) setCtrl(false);
      socket.current.input(out);
    };
    const onData = t.onData(send);
    const onResize = t.onResize(({ cols, rows }) => socket.current.resize(cols, rows));
    const refit = () => f.fit();
    addEventListener("resize", refit);
    visualViewport?.addEventListener("resize", refit);

    let attempt = 0;
    let timer: ReturnType<typeof setTimeout> | undefined;
    let disposed = false;
    const connect = () => {
      clearTimeout(timer);
      setStatus({ kind: "connecting" });
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
              setStatus({ kind: "live" });
              t.focus();
            },
            onClose: (code, reason) => {
              if (disposed) return;
              if (code === Close.Asleep) return setStatus({ kind: "asleep" });
              if (code === Close.SessionGone)
                return setStatus({ kind: "stopped", reason: reason || "session gone" });
              retry(reason || "connection lost");
            },
          },
        )
        .catch((err: unknown) => {
          if (disposed) return;
          if (err instanceof ApiError && err.status === 404)
            setStatus({ kind: "stopped", reason: "session gone" });
          else if (err instanceof ApiError && err.status === 401)
            setStatus({ kind: "stopped", reason: "signed out" });
          else retry(err instanceof Error ? err.message : "network error");
        });
    };
    const retry = (reason: string) => {
      attempt++;
      const seconds = Math.min(30, 2 ** Math.min(attempt - 1, 5)) * (0.75 + Math.random() * 0.5);
      setStatus({ kind: "retrying", inSeconds: Math.round(seconds), reason });
      timer = setTimeout(connect, seconds * 1000);
    };
    reconnectNow.current = connect;
    const online = () => connect();
    addEventListener("online", online);
    connect();

    return () => {
      disposed = true;
      clearTimeout(timer);
      removeEventListener("resize", refit);
      removeEventListener("online", online);
      visualViewport?.removeEventListener("resize", refit);
      onData.dispose();
      onResize.dispose();
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

  const wake = async () => {
    if (!info) return;
    await api(`/api/v1/workspaces/${info.workspaceId}/wake`, { method: "POST" }).catch(() => {});
    setStatus({ kind: "retrying", inSeconds: 3, reason: "waking the box" });
    setTimeout(() => reconnectNow.current(), 3_000);
  };

  const copy = async () => {
    const text = term.current?.getSelection();
    if (text) await navigator.clipboard?.writeText(text).catch(() => {});
  };
  const paste = async () => {
    const text = await navigator.clipboard?.readText().catch(() => "");
    if (text) socket.current.input(text);
  };

  return (
    <div class="terminal-page">
      <div class="terminal-bar">
        <a
          href={info ? href.workspace(info.workspaceId) : href.workspaces()}
          aria-label="back to the workspace"
        >
          ←
        </a>
        <span class="terminal-name">{info?.name ?? "…"}</span>
        <span class={`term-status term-${status.kind}`} role="status" aria-live="polite">
          {status.kind === "connecting" && "connecting…"}
          {status.kind === "live" && "live"}
          {status.kind === "retrying" && `${status.reason}; retrying in ${status.inSeconds}s`}
          {status.kind === "asleep" && "box asleep"}
          {status.kind === "stopped" && status.reason}
        </span>
        {status.kind === "asleep" && (
          <button type="button" onClick={wake}>
            Wake
          </button>
        )}
        {status.kind === "retrying" && (
          <button type="button" onClick={() => reconnectNow.current()}>
            Retry now
          </button>
        )}
        <span class="spacer" />
        <button type="button" aria-label="copy selection" onClick={copy}>
          Copy
        </button>
        <button type="button" aria-label="paste" onClick={paste}>
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
      <div class="terminal-host" ref={host} />
      <KeyBar send={(s) => socket.current.input(s)} ctrl={ctrl} setCtrl={setCtrl} />
    </div>
  );
}
