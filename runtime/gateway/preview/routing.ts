/**
 * Routing metadata for the preview proxy: preview → owner, share state, port and box address, read from
 * Postgres and cached in process. Triggers (migration 0002) NOTIFY `berth_preview_route` on every change
 * to a routing row, so each replica drops the stale entry at once; a short TTL covers notifications lost
 * while the LISTEN connection reconnects. A fresh process starts empty, so a restart routes correctly.
 */
import type pg from "pg";
import { isUuid } from "../../platform/ids.ts";
import type { PgListener } from "../../store/listener.ts";
import type { InstanceAddress } from "./port-policy.ts";

export const ROUTE_CHANNEL = "berth_preview_route";
const TTL_MS = 30_000;
const MAX_ENTRIES = 50_000;

export interface PreviewRoute {
  previewId: string;
  workspaceId: string;
  ownerId: string;
  port: number;
  share: "owner" | "link";
  shareVersion: number;
  /** The open instance of the workspace, or null when the box is not running. */
  instance: InstanceAddress | null;
}

interface Entry {
  route: PreviewRoute | null;
  at: number;
}

export class PreviewRoutes {
  readonly #pool: pg.Pool;
  readonly #cache = new Map<string, Entry>();
  /** Loads in flight, so a burst of requests for one preview costs one query. */
  readonly #loading = new Map<string, Promise<PreviewRoute | null>>();
  /** Bumped by every invalidation, so a load that raced with one is not cached. */
  #generation = 0;
  #unsubscribe: (() => void) | null = null;

  constructor(pool: pg.Pool) {
    this.#pool = pool;
  }

  async start(listener: PgListener): Promise<void> {
    this.#unsubscribe = await listener.subscribe(ROUTE_CHANNEL, (payload) => this.invalidate(payload));
  }

  stop(): void {
    this.#unsubscribe?.();
    this.#cache.clear();
  }

  /** `p:<previewId>` drops one preview, `w:<workspaceId>` every preview of a workspace, anything else all. */
  invalidate(payload: string): void {
    this.#generation++;
    const [kind, id] = [payload.slice(0, 2), payload.slice(2)];
    if (kind === "p:") {
      this.#cache.delete(id);
    } else if (kind === "w:") {
      for (const [key, entry] of this.#cache) if (entry.route?.workspaceId === id) this.#cache.delete(key);
    } else {
      this.#cache.clear();
    }
  }

  /** The open preview's route, or null when there is no such open preview (callers answer 404). */
  async get(previewId: string): Promise<PreviewRoute | null> {
    if (!isUuid(previewId)) return null;
    const key = previewId.toLowerCase();
    const hit = this.#cache.get(key);
    if (hit && Date.now() - hit.at < TTL_MS) return hit.route;
    let pending = this.#loading.get(key);
    if (!pending) {
      const generation = this.#generation;
      pending = this.#load(key)
        .then((route) => {
          if (generation === this.#generation) {
            if (this.#cache.size >= MAX_ENTRIES) this.#cache.clear();
            this.#cache.set(key, { route, at: Date.now() });
          }
          return route;
        })
        .finally(() => this.#loading.delete(key));
      this.#loading.set(key, pending);
    }
    return pending;
  }

  async #load(previewId: string): Promise<PreviewRoute | null> {
    const { rows } = await this.#pool.query<{
      id: string;
      workspace_id: string;
      owner_id: string;
      port: number;
      share: "owner" | "link";
      share_version: number;
      instance_id: string | null;
      public_ip: string | null;
      tailnet_ip: string | null;
      terminal_port: number | null;
    }>(
      `SELECT p.id, p.workspace_id, w.owner_id, p.port, p.share, p.share_version,
              i.id AS instance_id, i.public_ip, i.tailnet_ip, i.terminal_port
         FROM previews p
         JOIN workspaces w ON w.id = p.workspace_id AND w.state <> 'destroyed'
         LEFT JOIN workspace_instances i ON i.workspace_id = p.workspace_id AND i.stopped_at IS NULL
        WHERE p.id = $1 AND p.closed_at IS NULL`,
      [previewId],
    );
    const r = rows[0];
    if (!r) return null;
    return {
      previewId: r.id,
      workspaceId: r.workspace_id,
      ownerId: r.owner_id,
      port: r.port,
      share: r.share,
      shareVersion: r.share_version,
      instance: r.instance_id
        ? { id: r.instance_id, publicIp: r.public_ip, tailnetIp: r.tailnet_ip, terminalPort: r.terminal_port }
        : null,
    };
  }
}
