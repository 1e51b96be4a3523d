import type { PassThrough } from "node:stream";
import { describe, expect, it } from "vitest";
import type { BuildLogLine } from "../../store/builds.ts";
import type { PgListener } from "../../store/listener.ts";
import type { BuildStatus } from "../../store/rows.ts";
import { waitFor } from "../../test/wait.ts";
import { followBuildLog } from "./log-stream.ts";

/** A build's log in memory, and a listener whose NOTIFYs the test sends. */
function fakeBuild(status: BuildStatus) {
  const lines: BuildLogLine[] = [];
  const handlers = new Set<(payload: string) => void>();
  const build = {
    status,
    lines,
    /** Runs inside a read of the log, after its snapshot: a line written (and announced) meanwhile. */
    duringRead: null as (() => void) | null,
    add(message: string) {
      lines.push({
        seq: lines.length + 1,
        at: new Date(0),
        level: "info",
        stage: null,
        message,
      } as BuildLogLine);
    },
    notify() {
      for (const h of handlers) h("b1");
    },
    store: {
      logLines: async (_id: string, after: number, limit: number) => {
        const rows = lines.filter((l) => l.seq > after).slice(0, limit);
        const during = build.duringRead;
        build.duringRead = null;
        during?.();
        return rows;
      },
      status: async () => build.status,
      countLogLinesAfter: async (_id: string, after: number) => lines.filter((l) => l.seq > after).length,
    },
    listener: {
      subscribe: async (_channel: string, h: (payload: string) => void) => {
        handlers.add(h);
        return () => handlers.delete(h);
      },
    } as unknown as PgListener,
    handlers,
  };
  return build;
}

function follow(build: ReturnType<typeof fakeBuild>): { out: PassThrough; close: () => void } {
  let onClose = () => {};
  const out = followBuildLog(build.store, build.listener, "b1", 0, (cb) => {
    onClose = cb;
  });
  return { out, close: () => onClose() };
}

function collect(out: PassThrough): { text: () => string; ended: () => boolean } {
  let text = "";
  let ended = false;
  out.setEncoding("utf8");
  out.on("data", (chunk: string) => {
    text += chunk;
  });
  out.on("end", () => {
    ended = true;
  });
  return { text: () => text, ended: () => ended };
}

describe("followBuildLog", () => {
  it("stops reading the log while its client does not read (bounded buffer)", async () => {
    const build = fakeBuild("succeeded");
    for (let i = 0; i < 20_000; i++) build.add(`line ${i} ${"x".repeat(80)}`);
    const { out, close } = follow(build);
    try {
      // Nobody reads: the follower either pauses on a full buffer or has pushed the whole log into it.
      await waitFor("the follower to pause or finish", () => out.writableNeedDrain || out.writableEnded);
      await waitFor("the follower to settle", () => out.writableEnded || out.writableLength > 0);
      const buffered = out.readableLength + out.writableLength;
      expect(buffered).toBeLessThan(256 * 1024);
      // A reader arriving later still gets every line, then the end.
      const read = collect(out);
      await waitFor("the end of the stream", read.ended);
      const seqs = [...read.text().matchAll(/^id: (\d+)$/gm)].map((m) => Number(m[1]));
      expect(seqs).toEqual(Array.from({ length: 20_000 }, (_, i) => i + 1));
      expect(read.text()).toContain('event: end\ndata: {"status":"succeeded"}');
    } finally {
      close();
    }
  });

  it("does not lose a NOTIFY that arrives while it is reading the log", async () => {
    const build = fakeBuild("running");
    build.add("first");
    // The line is stored and announced while the follower's first read is in flight, after its snapshot.
    build.duringRead = () => {
      build.add("second");
      build.notify();
    };
    const { out, close } = follow(build);
    const read = collect(out);
    try {
      await waitFor("the first line", () => read.text().includes('"message":"first"'));
      // Well before the 15 s keepalive that would otherwise be the follower's next look.
      await waitFor(
        "the line announced during the read",
        () => read.text().includes('"message":"second"'),
        3_000,
      );
      build.status = "succeeded";
      build.notify();
      await waitFor("the end of the stream", read.ended, 3_000);
    } finally {
      close();
    }
  });

  it("lets go of its subscription when the client leaves during a read", async () => {
    const build = fakeBuild("running");
    build.add("first");
    const { out, close } = follow(build);
    collect(out);
    let left = false;
    build.duringRead = () => {
      close();
      left = true;
    };
    await waitFor("the client to leave during a read", () => left);
    await waitFor("the follower to unsubscribe", () => build.handlers.size === 0, 3_000);
  });
});
