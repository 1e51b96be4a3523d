import { mkdtempSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { pino } from "pino";
import { describe, expect, it } from "vitest";
import { heartbeatResponse } from "../protocol.ts";
import { DesiredStateApplier, NotReadyError, type SessionManager } from "./desired-state.ts";

const log = pino({ level: "silent" });

function sessions(): SessionManager & { typed: string[]; names: Set<string> } {
  const names = new Set<string>(["main"]);
  const typed: string[] = [];
  return {
    names,
    typed,
    ensure: async (n) => names.add(n),
    list: async () => [...names].map((name) => ({ name })),
    kill: async (n) => names.delete(n),
    sendKeys: async (n, text) => {
      if (!names.has(n)) throw new Error(`no session ${n}`);
      typed.push(text);
    },
  };
}

describe("DesiredStateApplier", () => {
  it("never types the same keys twice, even after an agent restart", async () => {
    const statePath = join(mkdtempSync(join(tmpdir(), "berth-ds-")), "actions.json");
    const s = sessions();
    const desired = heartbeatResponse.parse({
      eventsAckedThrough: 0,
      sendKeys: [{ id: "k1", session: "main", keys: "ls" }],
    });
    await new DesiredStateApplier({ sessions: s, statePath, log }).apply(desired);
    const restarted = new DesiredStateApplier({ sessions: s, statePath, log });
    await restarted.apply(desired);
    expect(s.typed).toEqual(["ls"]);
    expect(restarted.completedToReport()).toMatchObject([{ id: "k1", kind: "keys", ok: true }]);
    restarted.ack(["k1"]);
    expect(new DesiredStateApplier({ sessions: s, statePath, log }).completedToReport()).toEqual([]);
  });

  it("reports a failed send-keys with its reason and records convergence errors", async () => {
    const statePath = join(mkdtempSync(join(tmpdir(), "berth-ds-")), "actions.json");
    const s = sessions();
    s.ensure = async (n) => {
      if (n === "broken") throw new Error("tmux exploded");
      s.names.add(n);
    };
    const a = new DesiredStateApplier({ sessions: s, statePath, log });
    await a.apply(
      heartbeatResponse.parse({
        eventsAckedThrough: 0,
        sessions: ["main", "broken"],
        sendKeys: [{ id: "k2", session: "gone", keys: "x" }],
      }),
    );
    expect(a.completedToReport()).toMatchObject([{ id: "k2", ok: false, error: "no session gone" }]);
    expect(a.lastSessionError).toBe("ensure broken: tmux exploded");
  });

  it("leaves actions for later while the workspace is not ready, instead of failing them", async () => {
    const statePath = join(mkdtempSync(join(tmpdir(), "berth-ds-")), "actions.json");
    const s = sessions();
    let ready = false;
    const gated: SessionManager = {
      ensure: async (n) => {
        if (!ready) throw new NotReadyError("starting");
        return s.ensure(n);
      },
      list: s.list,
      kill: s.kill,
      sendKeys: async (n, t, o) => {
        if (!ready) throw new NotReadyError("starting");
        return s.sendKeys(n, t, o);
      },
    };
    const a = new DesiredStateApplier({ sessions: gated, statePath, log });
    const desired = heartbeatResponse.parse({
      eventsAckedThrough: 0,
      sessions: ["main"],
      sendKeys: [{ id: "k3", session: "main", keys: "later" }],
    });
    await a.apply(desired);
    expect(a.completedToReport()).toEqual([]);
    expect(a.lastSessionError).toBeNull();
    ready = true;
    await a.apply(desired);
    expect(s.typed).toEqual(["later"]);
  });
});
