/**
 * Routing metadata for the preview proxy: preview → owner, share state, port and box address, read from
 * Postgres and cached in process. Triggers (migration 0002) NOTIFY `berth_preview_route` on every change
 * to a routing row, so each replica drops the stale entry at once; a short TTL covers notifications lost
 * while the LISTEN connection reconnects. A fresh process starts empty, so a restart routes correctly.
 */
import { isUuid } from "../../platform/ids.ts";
import { ROUTE_CHANNEL } from "../../store/channels.ts";
import type { PgListener } from "../../store/listener.ts";
import type { PreviewRoute } from "../../store/previews.ts";

export type { PreviewRoute };

/** Loads one preview's routing row (the store as `system:gateway`). */
export type RouteLoader = (previewId: string) => Promise<PreviewRoute | null>;

const TTL_MS = 30_000;
const MAX_ENTRIES = 50_000;

interface Entry {
  route: PreviewRoute | null;
  at: number;
}

export class PreviewRoutes {
  readonly #load: RouteLoader;
  readonly #cache = new Map<string, Entry>();
  /** Loads in flight, so a burst of requests for one preview costs one query. */
  readonly #loading = new Map<string, Promise<PreviewRoute | null>>();
  /** Bumped by every invalidation, so a load that raced with one is not cached. */
  #generation = 0;
  #unsubscribe: (() => void) | null = null;

  constructor(load: RouteLoader) {
    this.#load = load;
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
    // Loads in flight read the row before this change: a request from now on must not join them. (Which
    // workspace a load's preview is in is unknown until it ends, so `w:` drops them all.)
    if (kind === "p:") {
      this.#cache.delete(id);
      this.#loading.delete(id);
    } else if (kind === "w:") {
      for (const [key, entry] of this.#cache) if (entry.route?.workspaceId === id) this.#cache.delete(key);
      this.#loading.clear();
    } else {
      this.#cache.clear();
      this.#loading.clear();
    }
  }

  /**
   * The cached route object, while it is fresh: the same object for as long as nothing about the preview
   * changed (an invalidation or the TTL replaces it), so holding it is enough to know a decision made
   * on it still stands. Undefined when not cached.
   */
  peek(previewId: string): PreviewRoute | null | undefined {
    const hit = this.#cache.get(previewId);
    return hit && Date.now() - hit.at < TTL_MS ? hit.route : undefined;
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
        .finally(() => {
          if (this.#loading.get(key) === pending) this.#loading.delete(key);
        });
      this.#loading.set(key, pending);
    }
    return pending;
  }
}
