import { useEffect, useRef, useState } from "preact/hooks";
import { api, humanError } from "../api.ts";
import { DeepgramStream } from "./deepgram-stream.ts";

const MODE_KEY = "berth.voice.send";
/** A press longer than this is push-to-talk (release stops); a shorter tap toggles listening. */
const HOLD_MS = 350;

interface VoiceState {
  enabled: boolean;
  hint?: string;
}

/**
 * The microphone row under the terminal: hold the button to talk (release sends), or tap it to toggle
 * listening. What Deepgram hears shows in an editable line as it comes; each finished utterance
 * (`speech_final`, or `UtteranceEnd`) is typed into the session's Claude pane by the box agent, with Enter
 * when "Enter" is ticked. Once the line has been edited, nothing is sent until the user presses Send.
 */
export function VoiceBar({ sessionId, workspaceId }: { sessionId: string; workspaceId: string | null }) {
  const [state, setState] = useState<VoiceState | null>(null);
  const [listening, setListening] = useState(false);
  const [draft, setDraft] = useState("");
  const [message, setMessage] = useState<string | null>(null);
  const [enter, setEnter] = useState(() => localStorage.getItem(MODE_KEY) === "1");
  const committed = useRef("");
  const interim = useRef("");
  const edited = useRef(false);
  const draftRef = useRef("");
  draftRef.current = draft;
  const enterRef = useRef(enter);
  enterRef.current = enter;
  const stream = useRef<{ s: DeepgramStream; started: Promise<void> } | null>(null);
  const press = useRef<{ at: number } | null>(null);

  useEffect(() => {
    api<VoiceState>("/api/v1/voice")
      .then(setState)
      .catch(() => setState(null));
    return () => void stream.current?.s.stop();
  }, []);

  const show = () => {
    if (!edited.current) setDraft([committed.current, interim.current].filter(Boolean).join(" "));
  };
  const deliver = async (raw: string) => {
    const text = raw.trim();
    committed.current = "";
    interim.current = "";
    edited.current = false;
    setDraft("");
    if (!text || !workspaceId) return;
    try {
      await api(`/api/v1/workspaces/${workspaceId}/sessions/${sessionId}/input`, {
        method: "POST",
        body: { text, mode: enterRef.current ? "send" : "insert" },
      });
      setMessage(enterRef.current ? "Sent to Claude" : "Typed into Claude's prompt");
    } catch (err) {
      setDraft(text);
      edited.current = true;
      setMessage(humanError(err));
    }
  };

  const start = () => {
    setMessage(null);
    const s = new DeepgramStream({
      interim: (t) => {
        interim.current = t;
        show();
      },
      final: (t) => {
        committed.current = [committed.current, t].filter(Boolean).join(" ");
        interim.current = "";
        show();
      },
      utteranceEnd: () => {
        if (!edited.current && committed.current) void deliver(committed.current);
      },
      error: (msg) => {
        stream.current = null;
        setListening(false);
        setMessage(msg);
      },
    });
    const started = s.start(sessionId).catch((err) => {
      if (stream.current?.s === s) stream.current = null;
      setListening(false);
      setMessage(humanError(err));
      throw err;
    });
    stream.current = { s, started };
    setListening(true);
  };

  /** Stops listening; what was heard and not yet sent goes now (unless the user is editing it). */
  const stop = async () => {
    const current = stream.current;
    if (!current) return;
    stream.current = null;
    setListening(false);
    try {
      await current.started;
    } catch {
      return;
    }
    await current.s.stop();
    if (!edited.current) {
      const rest = [committed.current, interim.current].filter(Boolean).join(" ");
      if (rest) await deliver(rest);
    }
  };

  // Rendered whole from the first frame (the terminal fits itself to the room left, so the row must not
  // appear or grow later); until the server says voice is on, the button explains instead of listening.
  const off = !state?.enabled;
  const explain = () =>
    setMessage(
      state ? (state.hint ?? "Voice input is off on this server.") : "Checking whether voice input is on…",
    );

  return (
    <div class="voicebar">
      <button
        type="button"
        class={`mic${listening ? " on" : ""}`}
        aria-pressed={off ? undefined : listening}
        aria-disabled={off ? "true" : undefined}
        onPointerDown={(e) => {
          e.preventDefault();
          if (off) return explain();
          // The release reaches the button even if the finger slides off it.
          (e.currentTarget as HTMLElement).setPointerCapture?.(e.pointerId);
          if (listening) {
            void stop();
            return;
          }
          press.current = { at: Date.now() };
          start();
        }}
        onPointerUp={() => {
          const p = press.current;
          press.current = null;
          if (p && Date.now() - p.at >= HOLD_MS) void stop();
        }}
        onClick={(e) => {
          // Keyboard activation (no pointer): toggle.
          if (e.detail !== 0) return;
          if (off) return explain();
          if (listening) void stop();
          else start();
        }}
      >
        <MicGlyph />
        <span class="visually-hidden">
          {off ? "Voice input (off)" : listening ? "Stop listening" : "Talk (hold, or tap to toggle)"}
        </span>
      </button>
      <input
        class="voice-draft"
        aria-label="What you said"
        disabled={off}
        placeholder={off ? "Voice input is off" : listening ? "Listening…" : "Hold the mic to talk"}
        value={draft}
        onInput={(e) => {
          edited.current = true;
          setDraft((e.target as HTMLInputElement).value);
        }}
        onKeyDown={(e) => {
          if (e.key === "Enter") void deliver(draftRef.current);
        }}
      />
      <button type="button" disabled={!draft.trim()} onClick={() => void deliver(draftRef.current)}>
        Send
      </button>
      <label class="voice-enter">
        <input
          type="checkbox"
          checked={enter}
          disabled={off}
          onChange={(e) => {
            const on = (e.target as HTMLInputElement).checked;
            setEnter(on);
            localStorage.setItem(MODE_KEY, on ? "1" : "0");
          }}
        />
        Enter
      </label>
      <span class="voice-message" role="status">
        {message}
      </span>
    </div>
  );
}

function MicGlyph() {
  return (
    <svg aria-hidden="true" viewBox="0 0 24 24" width="20" height="20" fill="currentColor">
      <path d="M12 14a3 3 0 0 0 3-3V5a3 3 0 0 0-6 0v6a3 3 0 0 0 3 3zm5-3a5 5 0 0 1-10 0H5a7 7 0 0 0 6 6.92V21h2v-3.08A7 7 0 0 0 19 11h-2z" />
    </svg>
  );
}
