import { mkdtempSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { pino } from "pino";
import { describe, expect, it } from "vitest";
import { heartbeatResponse } from "../protocol.ts";
import { DesiredStateApplier, NotReadyError, type SessionManager } from "./desired-state.ts";
import { SessionPlan } from "./session-plan.ts";

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

  it("fills the session plan before sessions converge, and keeps it when an answer has no environment", async () => {
    const statePath = join(mkdtempSync(join(tmpdir(), "berth-ds-")), "actions.json");
    const plan = new SessionPlan();
    const seen: string[] = [];
    const s = sessions();
    const watching: SessionManager = {
      ...s,
      ensure: async (n) => {
        seen.push(
          `${n}:${plan
            .environment()
            .map((e) => e.name)
            .join(",")}:${plan.guided(n)?.task ?? "-"}`,
        );
        return s.ensure(n);
      },
    };
    const a = new DesiredStateApplier({ sessions: watching, statePath, log, plan });
    await a.apply(
      heartbeatResponse.parse({
        eventsAckedThrough: 0,
        sessions: ["g"],
        guided: [{ session: "g", project: "app", task: "build it" }],
        environment: [{ name: "API_KEY", value: "v1" }],
      }),
    );
    expect(seen).toEqual(["g:API_KEY:build it"]);
    await a.apply(heartbeatResponse.parse({ eventsAckedThrough: 0, sessions: ["g", "e"] }));
    expect(seen.at(-1)).toBe("e:API_KEY:-");
    expect(plan.values()).toEqual(["v1"]);
  });

  it("runs onboarding once in the background, waits while not ready, and reports the outcome", async () => {
    const statePath = join(mkdtempSync(join(tmpdir(), "berth-ds-")), "actions.json");
    let ready = false;
    const ran: string[] = [];
    const a = new DesiredStateApplier({
      sessions: null,
      statePath,
      log,
      onboard: async (action) => {
        if (!ready) throw new NotReadyError("starting");
        ran.push(action.id);
        if (action.project === "bad") throw new Error("git clone failed: nope");
      },
    });
    const onboard = (id: string, project: string) => ({
      id,
      project,
      source: { kind: "new" },
      claudeMd: "",
      generated: "",
      permissions: { allow: [], deny: [] },
      personal: null,
      trust: true,
    });
    const desired = heartbeatResponse.parse({
      eventsAckedThrough: 0,
      onboard: [onboard("o1", "good"), onboard("o2", "bad")],
    });
    await a.apply(desired);
    await waitForReports(a, 0);
    expect(ran).toEqual([]);
    ready = true;
    await a.apply(desired);
    await a.apply(desired); // resent before the report: never run twice
    const reports = await waitForReports(a, 2);
    expect(ran).toEqual(["o1", "o2"]);
    expect(reports.map((r) => [r.id, r.kind, r.ok, r.error])).toEqual([
      ["o1", "onboard", true, undefined],
      ["o2", "onboard", false, "git clone failed: nope"],
    ]);
  });
});

/** Onboarding runs in the background: wait until that many reports exist (and the queue has drained). */
async function waitForReports(a: DesiredStateApplier, count: number) {
  for (let i = 0; i < 200; i++) {
    await new Promise((r) => setImmediate(r));
    if (a.completedToReport().length >= count && (count > 0 || i > 20)) break;
  }
  return a.completedToReport();
}
