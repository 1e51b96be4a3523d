/**
 * Follows a build's log (`GET /api/v1/builds/:id/log`, Server-Sent Events) to its end: lines as they
 * arrive, and on a terminal a status line with the current stage and the elapsed time. A dropped stream
 * resumes from the last line seen (Last-Event-ID), so nothing is shown twice or missed.
 */
import { type ApiClient, ClientError, Exit, errorFrom } from "./api.ts";

export interface LogLine {
  seq: number;
  at: string;
  level: "info" | "warn" | "error" | "stage";
  stage: string | null;
  message: string;
}

interface SseEvent {
  event: string;
  id: string | undefined;
  data: string;
}

/** Splits an SSE byte stream into events; comments and `retry:` lines are skipped. */
export async function* sseEvents(body: ReadableStream<Uint8Array<ArrayBuffer>>): AsyncGenerator<SseEvent> {
  const reader = body.pipeThrough(new TextDecoderStream()).getReader();
  let buffer = "";
  for (;;) {
    const { value, done } = await reader.read();
    if (done) return;
    buffer += value.replace(/\r\n/g, "\n");
    let at = buffer.indexOf("\n\n");
    while (at >= 0) {
      const frame = buffer.slice(0, at);
      buffer = buffer.slice(at + 2);
      let event = "message";
      let id: string | undefined;
      const data: string[] = [];
      for (const line of frame.split("\n")) {
        const [field, ...rest] = line.split(":");
        const val = rest.join(":").replace(/^ /, "");
        if (field === "event") event = val;
        else if (field === "id") id = val;
        else if (field === "data") data.push(val);
      }
      if (data.length) yield { event, id, data: data.join("\n") };
      at = buffer.indexOf("\n\n");
    }
  }
}

const SPINNER = "⠋⠙⠹⠸⠼⠴⠦⠧⠇⠏";

/** Prints to `out` (stderr when stdout carries --json); the status line only when `out` is a terminal. */
export async function followBuild(
  api: ApiClient,
  buildId: string,
  out: NodeJS.WriteStream,
  options: { maxReconnects?: number } = {},
): Promise<string> {
  const tty = out.isTTY === true;
  const started = Date.now();
  let stage = "queued";
  let frame = 0;
  let statusShown = false;
  const clearStatus = () => {
    if (statusShown) out.write("\r\x1b[2K");
    statusShown = false;
  };
  const drawStatus = () => {
    if (!tty) return;
    const secs = Math.round((Date.now() - started) / 1000);
    out.write(`\r\x1b[2K${SPINNER[frame++ % SPINNER.length]} ${stage} (${secs}s)`);
    statusShown = true;
  };
  const timer = tty ? setInterval(drawStatus, 120) : undefined;
  let lastSeq = 0;
  let failures = 0;
  let lastError = "";
  const backOff = async () => {
    if (++failures > (options.maxReconnects ?? 5)) {
      throw new ClientError(
        Exit.UNREACHABLE,
        `lost the build log stream${lastError ? ` (${lastError})` : ""}; 'berth ws list' shows the state`,
      );
    }
    await new Promise((r) => setTimeout(r, Math.min(5_000, 250 * 2 ** failures)));
  };
  try {
    for (;;) {
      // A control plane that restarts (a deploy, a crash) breaks the stream and then, for a moment, refuses
      // connections or answers through its proxy with a 502-504: retried like the broken stream, since the
      // build goes on meanwhile. Anything else the server says is its answer.
      let res: Response;
      try {
        res = await api.fetch(`/api/v1/builds/${buildId}/log`, {
          headers: { accept: "text/event-stream", "last-event-id": String(lastSeq) },
        });
        if (!res.ok) throw errorFrom(res.status, await res.json().catch(() => undefined), api.url);
      } catch (err) {
        if (!(err instanceof ClientError) || !err.transient) throw err;
        lastError = err.message;
        await backOff();
        continue;
      }
      try {
        for await (const ev of sseEvents(res.body!)) {
          failures = 0;
          if (ev.event === "line") {
            const line = JSON.parse(ev.data) as LogLine;
            lastSeq = line.seq;
            clearStatus();
            if (line.level === "stage") {
              stage = line.message;
              out.write(`==> ${line.message}\n`);
            } else {
              out.write(`${line.level === "info" ? "" : `${line.level}: `}${line.message}\n`);
            }
            drawStatus();
          } else if (ev.event === "end") {
            clearStatus();
            return (JSON.parse(ev.data) as { status: string }).status;
          }
        }
      } catch (err) {
        if (err instanceof ClientError) throw err;
        // The stream broke mid-way: resume below.
      }
      await backOff();
    }
  } finally {
    if (timer) clearInterval(timer);
    clearStatus();
  }
}
