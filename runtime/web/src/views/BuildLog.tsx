import { useEffect, useRef, useState } from "preact/hooks";
import type { Build } from "../api.ts";
import { followStream } from "../stream.ts";

interface Line {
  seq: number;
  level: string;
  stage: string | null;
  message: string;
}

const TRANSITION: Record<string, string> = { start: "start", stop: "hibernate", destroy: "destroy" };

/**
 * A build's log, live: the control plane replays it over Server-Sent Events and follows new lines; the
 * browser's EventSource reconnects with Last-Event-ID by itself, so a flaky network loses nothing. A stream
 * opened anew after an answer that is not a stream (stream.ts) replays the log; lines already shown are
 * known by their seq.
 */
export function BuildLog({
  build,
  onEnd,
  compact = false,
}: {
  build: Build;
  onEnd?: (status: string) => void;
  /** Only the step in progress and the last line (the terminal's wake panel). */
  compact?: boolean;
}) {
  const [lines, setLines] = useState<Line[]>([]);
  const [status, setStatus] = useState<string>(build.status);
  const box = useRef<HTMLPreElement>(null);

  useEffect(() => {
    setLines([]);
    const stream = followStream(`/api/v1/builds/${build.id}/log`, (es) => {
      es.addEventListener("line", (e) => {
        const line = JSON.parse((e as MessageEvent).data) as Line;
        setLines((prev) => (prev.some((l) => l.seq === line.seq) ? prev : [...prev, line]));
      });
      es.addEventListener("end", (e) => {
        const final = (JSON.parse((e as MessageEvent).data) as { status: string }).status;
        stream.close();
        setStatus(final);
        onEnd?.(final);
      });
    });
    return () => stream.close();
  }, [build.id]);

  useEffect(() => {
    box.current?.scrollTo({ top: box.current.scrollHeight });
  }, [lines.length]);

  const stage = [...lines].reverse().find((l) => l.level === "stage")?.message;
  const running = status === "pending" || status === "running";
  if (compact) {
    const last = lines.at(-1);
    return (
      <div class="build-compact">
        <p>
          <span class="muted">Build #{build.number}: </span>
          <span class={`build-status build-${status}`}>
            {running ? (stage ?? (status === "pending" ? "queued" : "starting")) : status}
          </span>
        </p>
        {running && <div class="progress" role="progressbar" aria-label="build in progress" />}
        {last && last.level !== "stage" && <p class="muted build-last">{last.message}</p>}
      </div>
    );
  }
  return (
    <section class="build-log" aria-label={`build ${build.number} log`}>
      <header>
        <strong>
          Build #{build.number} · {TRANSITION[build.transition] ?? build.transition}
        </strong>
        <span class={`build-status build-${status}`}>{status}</span>
        {running && stage && <span class="stage">step: {stage}</span>}
      </header>
      {running && <div class="progress" role="progressbar" aria-label="build in progress" />}
      <pre ref={box} aria-live="polite">
        {lines.map((l) => (
          <div key={l.seq} class={`log-${l.level}`}>
            {l.level === "stage" ? `▸ ${l.message}` : l.message}
          </div>
        ))}
      </pre>
    </section>
  );
}
