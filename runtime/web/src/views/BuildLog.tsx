import { useEffect, useRef, useState } from "preact/hooks";
import type { Build } from "../api.ts";

interface Line {
  seq: number;
  level: string;
  stage: string | null;
  message: string;
}

/**
 * A build's log, live: the control plane replays it over Server-Sent Events and follows new lines; the
 * browser's EventSource reconnects with Last-Event-ID by itself, so a flaky network loses nothing.
 */
export function BuildLog({ build, onEnd }: { build: Build; onEnd?: (status: string) => void }) {
  const [lines, setLines] = useState<Line[]>([]);
  const [status, setStatus] = useState<string>(build.status);
  const box = useRef<HTMLPreElement>(null);

  useEffect(() => {
    setLines([]);
    const source = new EventSource(`/api/v1/builds/${build.id}/log`);
    source.addEventListener("line", (e) => {
      const line = JSON.parse((e as MessageEvent).data) as Line;
      setLines((prev) => (prev.some((l) => l.seq === line.seq) ? prev : [...prev, line]));
    });
    source.addEventListener("end", (e) => {
      const final = (JSON.parse((e as MessageEvent).data) as { status: string }).status;
      setStatus(final);
      source.close();
      onEnd?.(final);
    });
    return () => source.close();
  }, [build.id]);

  useEffect(() => {
    box.current?.scrollTo({ top: box.current.scrollHeight });
  }, [lines.length]);

  const stage = [...lines].reverse().find((l) => l.level === "stage")?.message;
  const running = status === "pending" || status === "running";
  return (
    <section class="build-log" aria-label={`build ${build.number} log`}>
      <header>
        <strong>
          Build #{build.number} · {build.transition}
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
