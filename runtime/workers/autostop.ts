/**
 * Idle autostop: one tick for every workspace (a pg-boss schedule, so exactly once across replicas; see
 * schedules.ts). Each tick, in a fixed number of statements whatever the number of workspaces
 * (store/autostop.ts): forget warnings that no longer hold, warn the owners of workspaces about to stop
 * (an `autostop_warning` notification, with "keep running"), and hibernate, as a normal build with reason
 * `autostop`, those warned at least the lead time ago and still idle. A workspace whose Claude is working
 * is never stopped for idleness (up to a generous cap of unattended time). The clock is injectable.
 */
import type { WorkspaceService } from "../domain/workspaces/service.ts";
import type { Logger } from "../platform/logger.ts";
import { SYSTEM } from "../store/actors.ts";
import type { AutostopTimes } from "../store/autostop.ts";
import type { Store } from "../store/store.ts";

export const DEFAULT_AUTOSTOP = {
  /** The warning comes this long before the stop (at most half the workspace's timeout). */
  warnLeadMs: 5 * 60_000,
  /** A working Claude keeps its workspace up at most this long with nothing else happening. */
  workingCapMs: 8 * 3600_000,
};

export interface AutostopTickResult {
  cleared: number;
  warned: string[];
  stopped: string[];
  failed: Array<{ workspaceId: string; error: string }>;
}

export class Autostop {
  readonly #store: Store;
  readonly #workspaces: WorkspaceService;
  readonly #log: Logger;
  readonly #now: () => Date;
  readonly #options: typeof DEFAULT_AUTOSTOP;

  constructor(deps: {
    store: Store;
    workspaces: WorkspaceService;
    log: Logger;
    now?: () => Date;
    options?: Partial<typeof DEFAULT_AUTOSTOP>;
  }) {
    this.#store = deps.store;
    this.#workspaces = deps.workspaces;
    this.#log = deps.log;
    this.#now = deps.now ?? (() => new Date());
    this.#options = { ...DEFAULT_AUTOSTOP, ...deps.options };
  }

  async tick(): Promise<AutostopTickResult> {
    const scope = this.#store.as(SYSTEM.autostop);
    const t: AutostopTimes = { now: this.#now(), ...this.#options };
    const cleared = await scope.autostop.clearStaleWarnings(t);
    const warned = (await scope.autostop.warn(t)).map((w) => w.workspaceId);
    const stopped: string[] = [];
    const failed: AutostopTickResult["failed"] = [];
    for (const id of await scope.autostop.dueToStop(t)) {
      try {
        // Checked again under the row's lock: "keep running" or activity may have landed since the read.
        const result = await scope.transaction(async (tx) =>
          (await tx.autostop.stillDue(t, id))
            ? this.#workspaces.request(tx, id, "hibernate", { reason: "autostop" })
            : null,
        );
        if (result) stopped.push(id);
      } catch (err) {
        // A user acting on it at the same moment (a wake, a destroy): next tick decides again.
        failed.push({ workspaceId: id, error: (err as Error).message });
      }
    }
    if (warned.length || stopped.length || failed.length)
      this.#log.info({ warned, stopped, failed }, "idle autostop");
    return { cleared, warned, stopped, failed };
  }
}
