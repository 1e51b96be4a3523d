import { afterAll, describe, expect, it } from "vitest";
import { createLogger } from "../platform/logger.ts";
import { useDatabase } from "../test/database.ts";
import { waitFor } from "../test/wait.ts";
import { PgListener } from "./listener.ts";

describe("PgListener", async () => {
  const database = await useDatabase();
  const logged: string[] = [];
  const log = createLogger("warn", {
    write: (line: string) => {
      logged.push(line);
    },
  });
  const listener = new PgListener(database.url, log);
  await listener.start();
  afterAll(() => listener.close());

  it("logs a handler that throws or rejects and still calls the others", async () => {
    const seen: string[] = [];
    await listener.subscribe("listener_test", () => {
      throw new Error("thrown by a handler");
    });
    await listener.subscribe("listener_test", async () => {
      throw new Error("rejected by a handler");
    });
    await listener.subscribe("listener_test", (payload) => {
      seen.push(payload);
    });
    await database.pool.query("SELECT pg_notify('listener_test', 'one')");
    await waitFor("the third handler", () => seen.includes("one"));
    // An unhandled rejection would fail this file; the two failures are in the log instead.
    await waitFor(
      "both failures logged",
      () => logged.filter((l) => l.includes("NOTIFY handler failed")).length === 2,
    );
    expect(logged.join("\n")).toContain("rejected by a handler");
  });
});
