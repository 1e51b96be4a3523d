/**
 * One LISTEN connection per process, shared by everything that waits on Postgres NOTIFY (build queue
 * wake-ups, build cancels, build log followers, routing cache invalidation, the notification and session
 * streams). It reconnects on its own. The build worker and build log followers also poll and the routing
 * cache expires, so for them a NOTIFY lost during a reconnect only costs latency; the notification and
 * session-state streams miss it (the inbox and the session list still hold it).
 */
import pg from "pg";
import type { Logger } from "../platform/logger.ts";

type Handler = (payload: string) => void | Promise<void>;

export class PgListener {
  readonly #url: string;
  readonly #log: Logger;
  readonly #handlers = new Map<string, Set<Handler>>();
  #client: pg.Client | null = null;
  #closed = false;
  #connecting: Promise<void> | null = null;

  constructor(url: string, log: Logger) {
    this.#url = url;
    this.#log = log;
  }

  async start(): Promise<void> {
    await this.#connect();
  }

  async subscribe(channel: string, handler: Handler): Promise<() => void> {
    if (!/^[a-z_][a-z0-9_]*$/.test(channel)) throw new Error(`invalid channel name ${channel}`);
    let set = this.#handlers.get(channel);
    if (!set) {
      set = new Set();
      this.#handlers.set(channel, set);
      await this.#client?.query(`LISTEN ${channel}`).catch(() => {});
    }
    set.add(handler);
    return () => {
      set.delete(handler);
    };
  }

  /**
   * One handler's turn: what it throws, or rejects with, is logged here. Nothing awaits a NOTIFY handler, so
   * a rejection would otherwise be unhandled, and that ends the process.
   */
  #dispatch(handler: Handler, channel: string, payload: string | undefined): void {
    const failed = (err: unknown) => this.#log.warn({ err, channel }, "NOTIFY handler failed");
    try {
      const result = handler(payload ?? "");
      if (result instanceof Promise) result.catch(failed);
    } catch (err) {
      failed(err);
    }
  }

  async close(): Promise<void> {
    this.#closed = true;
    await this.#client?.end().catch(() => {});
    this.#client = null;
  }

  #connect(): Promise<void> {
    this.#connecting ??= (async () => {
      while (!this.#closed) {
        const client = new pg.Client({ connectionString: this.#url, application_name: "berth-listener" });
        try {
          await client.connect();
          client.on("notification", (msg) => {
            for (const h of this.#handlers.get(msg.channel) ?? [])
              this.#dispatch(h, msg.channel, msg.payload);
          });
          client.on("error", () => this.#reconnect(client));
          client.on("end", () => this.#reconnect(client));
          for (const channel of this.#handlers.keys()) await client.query(`LISTEN ${channel}`);
          this.#client = client;
          return;
        } catch (err) {
          await client.end().catch(() => {});
          this.#log.warn({ err }, "LISTEN connection failed; retrying");
          await new Promise((r) => setTimeout(r, 1_000));
        }
      }
    })().finally(() => {
      this.#connecting = null;
    });
    return this.#connecting;
  }

  #reconnect(client: pg.Client): void {
    if (this.#closed || this.#client !== client) return;
    this.#client = null;
    void this.#connect();
  }
}
