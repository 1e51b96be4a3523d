import { context, SpanKind, SpanStatusCode } from "@opentelemetry/api";
import { drizzle, type NodePgDatabase, type NodePgQueryResultHKT } from "drizzle-orm/node-postgres";
import type { PgDatabase } from "drizzle-orm/pg-core";
import pg from "pg";
import { tracer, tracingEnabled } from "../platform/tracing.ts";
import * as schema from "./schema.ts";

export type Db = NodePgDatabase<typeof schema>;

export interface Database {
  url: string;
  pool: pg.Pool;
  db: Db;
  close(): Promise<void>;
}

/** Longest statement text a span carries: enough to recognise it, never a whole batch insert. */
const SPAN_SQL_CHARS = 500;

/**
 * A pg client whose queries are client spans while tracing is on (tracing.ts); with it off, one boolean
 * check. Statement text only: values are parameters and never reach the span.
 */
class TracedClient extends pg.Client {
  // biome-ignore lint/suspicious/noExplicitAny: pg's query has a dozen overloads; this only wraps them
  override query(...args: any[]): any {
    // @ts-expect-error: forwarding whichever overload the caller used
    if (!tracingEnabled() || typeof args[0]?.submit === "function") return super.query(...args);
    const text: string = typeof args[0] === "string" ? args[0] : (args[0]?.text ?? "");
    const span = tracer().startSpan(
      "pg.query",
      {
        kind: SpanKind.CLIENT,
        attributes: { "db.system.name": "postgresql", "db.query.text": text.slice(0, SPAN_SQL_CHARS) },
      },
      context.active(),
    );
    const end = (err?: Error) => {
      if (err) span.setStatus({ code: SpanStatusCode.ERROR, message: err.message });
      span.end();
    };
    const last = args.length - 1;
    if (typeof args[last] === "function") {
      const callback = args[last];
      args[last] = (err: Error | undefined, result: unknown) => {
        end(err ?? undefined);
        callback(err, result);
      };
      // @ts-expect-error: as above
      return super.query(...args);
    }
    // @ts-expect-error: as above
    const result = super.query(...args);
    result.then(
      () => end(),
      (err: Error) => end(err),
    );
    return result;
  }
}

/**
 * `pool.query` waits for a free client with a callback that pg-pool calls from whoever releases one: the
 * wrong async context. Binding it to the caller's keeps each query span under the request that asked.
 */
class TracedPool extends pg.Pool {
  // biome-ignore lint/suspicious/noExplicitAny: pg's connect overloads; this only wraps the callback form
  override connect(...args: any[]): any {
    if (tracingEnabled() && typeof args[0] === "function") args[0] = context.bind(context.active(), args[0]);
    // @ts-expect-error: forwarding whichever overload the caller used
    return super.connect(...args);
  }
}

export function connectDatabase(url: string, options: { max?: number } = {}): Database {
  const pool = new TracedPool({
    connectionString: url,
    max: options.max ?? 10,
    // Fail fast instead of queueing forever when Postgres is down, so /readyz can answer 503.
    connectionTimeoutMillis: 5_000,
    application_name: "berth",
    Client: TracedClient,
  });
  // A client losing its server (a Postgres restart, a failover, a dropped database) must not crash the
  // process; the next query on it reports the error. The pool's own listener covers idle clients only:
  // pg-pool removes it while a client is checked out, and one checked out between queries (a transaction
  // waiting on other work, an advisory lock held while boxes are probed) would emit 'error' to nobody.
  pool.on("error", () => {});
  pool.on("connect", (client) => client.on("error", () => {}));
  return { url, pool, db: drizzle(pool, { schema }), close: () => pool.end() };
}

/**
 * What store queries run on: the pool's drizzle instance or a transaction of it (both are a PgDatabase), so
 * one area of the store serves both inside and outside a transaction.
 */
export type Executor = PgDatabase<NodePgQueryResultHKT, typeof schema>;
