import { InMemorySpanExporter } from "@opentelemetry/sdk-trace-base";
import { afterAll, describe, expect, it } from "vitest";
import { inSpan, startTracing } from "../platform/tracing.ts";
import { createTestDatabase } from "../test/database.ts";
import { waitFor } from "../test/wait.ts";
import { connectDatabase } from "./client.ts";

describe("query spans", async () => {
  const exporter = new InMemorySpanExporter();
  const tracing = startTracing({ exporter });
  const { url } = await createTestDatabase();
  // One connection: the second query waits for the first one's client, and gets it from its release.
  const database = connectDatabase(url, { max: 1 });
  afterAll(async () => {
    await database.close();
    await tracing.shutdown();
  });

  it("are children of the span that asked, even when the query waited for a client", async () => {
    const ask = (name: string) =>
      inSpan(name, {}, async (span) => {
        await database.pool.query("SELECT pg_sleep(0.05)");
        await database.pool.query("SELECT $1::text AS secret", ["not in the span"]);
        return span.spanContext().spanId;
      });
    const [a, b] = await Promise.all([ask("a"), ask("b")]);
    const queries = exporter.getFinishedSpans().filter((s) => s.name === "pg.query");
    expect(queries).toHaveLength(4);
    expect(queries.filter((s) => s.parentSpanContext?.spanId === a)).toHaveLength(2);
    expect(queries.filter((s) => s.parentSpanContext?.spanId === b)).toHaveLength(2);
    // The statement, never its values.
    expect(JSON.stringify(queries.map((s) => s.attributes))).not.toContain("not in the span");
    expect(queries.map((s) => s.attributes["db.query.text"])).toContain("SELECT $1::text AS secret");
  });
});

describe("a checked-out client whose server connection ends", async () => {
  const { url } = await createTestDatabase();
  const database = connectDatabase(url, { max: 2 });
  afterAll(() => database.close());

  it("does not crash the process between queries; its next query fails and the pool serves on", async () => {
    const client = await database.pool.connect();
    const { rows } = await client.query<{ pid: number }>("SELECT pg_backend_pid() AS pid");
    let ended = false;
    client.once("end", () => {
      ended = true;
    });
    // Terminated while no query is running on it: Postgres sends FATAL 57P01, as on a restart.
    await database.pool.query("SELECT pg_terminate_backend($1)", [rows[0]!.pid]);
    await waitFor("the terminated connection to end", () => ended);
    await expect(client.query("SELECT 1")).rejects.toThrow();
    client.release(true);
    expect((await database.pool.query("SELECT 1 AS one")).rows[0].one).toBe(1);
  });
});
