/**
 * Box reachability end to end in local mode: a real box agent with its built-in terminal endpoint and
 * real tmux, the real control plane, resolver and health prober, on real Postgres.
 *
 * The agent's terminal endpoint listens on 127.0.0.3 (the box itself). Its two network paths are TCP links
 * that the test opens and cuts: "public" on 127.0.0.1 (the address the local driver reports as the box's
 * public IP) and "tailnet" on 127.0.0.2 (written to the instance as its tailnet IP), both on the endpoint's
 * port, as on a VM where one ttyd port is reached over either path. The agent keeps heartbeating to the
 * control plane throughout, so a box that heartbeats but cannot be reached is exercised too.
 */
import { execFileSync } from "node:child_process";
import { mkdtempSync } from "node:fs";
import { createServer } from "node:http";
import type { AddressInfo } from "node:net";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, describe, expect, it } from "vitest";
import { WebSocket } from "ws";
import { TtydClient } from "../../box/terminal/client.ts";
import { LocalDriver } from "../../stacks/local/driver.ts";
import { AGENT_ENTRY } from "../app/drivers.ts";
import { BoxUnreachableError } from "../boxnet/path-resolver.ts";
import { SYSTEM } from "../store/actors.ts";
import { readWorkspaceSecret, storeWorkspaceSecrets } from "../store/secrets.ts";
import { json, startTestControlPlane } from "../test/control-plane.ts";
import { TcpLink } from "../test/link.ts";
import { killLocalBoxes } from "../test/local-control-plane.ts";
import { waitFor } from "../test/wait.ts";
import { HealthProber } from "../workers/health-prober.ts";

const PUBLIC = "127.0.0.1";
const TAILNET = "127.0.0.2";
const BOX = "127.0.0.3";
/** Longer than any test here: a remembered path comes back to the primary by a re-probe, never by expiry. */
const TTL_MS = 10 * 60_000;
const FAIL_AFTER = 3;
const RECOVER_AFTER = 2;

describe("box reachability in local mode: public first, tailnet fallback, health", async () => {
  const root = mkdtempSync(join(tmpdir(), "berth-ws-"));
  const driver = new LocalDriver({
    root,
    agentEntry: AGENT_ENTRY,
    nodePath: process.execPath,
    readyTimeoutMs: 30_000,
    agentEnv: { BERTH_TERMINAL: "builtin" },
    terminalHost: BOX,
  });
  // The box's paths here are the test's own TCP links, which no /proc check would count as the box's.
  driver.localBoxes.listenerOwner = async () => "workspace";
  const cp = await startTestControlPlane(
    {},
    {
      driver,
      upstream: { ttlMs: TTL_MS, reprobeMs: 100, connectTimeoutMs: 1_000 },
      health: {
        spreadMs: 0,
        failThreshold: FAIL_AFTER,
        recoverThreshold: RECOVER_AFTER,
        checkTimeoutMs: 3_000,
      },
    },
  );
  const links: TcpLink[] = [];
  afterAll(async () => {
    for (const link of links) await link.cut();
    killLocalBoxes(root);
  });

  const { pool } = cp.deps.database;
  const upstream = cp.deps.upstream;
  const metricsText = () => cp.deps.metrics.registry.metrics();
  const state = async (id: string) =>
    (await pool.query("SELECT state FROM workspaces WHERE id = $1", [id])).rows[0].state as string;

  let workspaceId = "";
  let credential = "";
  let instance = { id: "", publicIp: PUBLIC as string | null, tailnetIp: TAILNET as string | null };
  let port = 0;
  let publicLink: TcpLink;
  let tailnetLink: TcpLink;

  /** A terminal session the way the relay will open one: an address from the resolver, then ttyd's protocol. */
  const terminal = async (marker: string) => {
    const target = await upstream.connectTarget(instance, port);
    const client = await TtydClient.connect({
      url: `ws://${target.authority}/ws`,
      session: "main",
      credential,
      size: { columns: 100, rows: 30 },
    });
    try {
      client.type(`echo ${marker}-$((6*7))\r`);
      await client.waitFor(`${marker}-42`);
    } finally {
      await client.close();
    }
    return target.path;
  };

  /**
   * A browser's terminal through the control plane's relay: token, subprotocols, init, then `echo`. Resolves
   * with the echoed marker, or rejects with the close code and reason the relay sent.
   */
  let relayedSession = "";
  const relayed = async (marker: string): Promise<string> => {
    if (!relayedSession) {
      const created = await json(
        await cp.api(`/api/v1/workspaces/${workspaceId}/sessions`, {
          method: "POST",
          token: cp.localToken,
          json: { name: "relayed" },
        }),
      );
      relayedSession = created.session.id;
    }
    const { token } = await json(
      await cp.api(`/api/v1/sessions/${relayedSession}/terminal-token`, {
        method: "POST",
        token: cp.localToken,
      }),
    );
    const ws = new WebSocket(
      `${cp.url.replace("http:", "ws:")}/api/v1/sessions/${relayedSession}/terminal`,
      ["tty", `berth.token.${token}`],
      { headers: { origin: cp.url } },
    );
    return new Promise((resolve, reject) => {
      let screen = "";
      ws.on("open", () => {
        ws.send(Buffer.from(JSON.stringify({ columns: 100, rows: 30 })));
        ws.send(Buffer.from(`0echo ${marker}-$((40+2))\r`));
      });
      ws.on("message", (data: Buffer) => {
        if (data[0] !== 0x30) return;
        screen += data.subarray(1).toString();
        if (screen.includes(`${marker}-42`)) {
          ws.close();
          resolve(`${marker}-42`);
        }
      });
      ws.on("close", (code, reason) => reject(Object.assign(new Error(String(reason)), { code })));
      ws.on("error", reject);
    });
  };

  it("brings a workspace up whose terminal is reachable only on its tailnet address", async () => {
    const res = await cp.api("/api/v1/workspaces", {
      method: "POST",
      token: cp.localToken,
      json: { name: "net" },
    });
    expect(res.status).toBe(202);
    workspaceId = (await json(res)).workspace.id;
    await waitFor("workspace ready", async () => (await state(workspaceId)) === "ready", 40_000);
    const { rows } = await pool.query(
      `UPDATE workspace_instances SET tailnet_ip = $2 WHERE workspace_id = $1 AND stopped_at IS NULL
       RETURNING id, public_ip, terminal_port`,
      [workspaceId, TAILNET],
    );
    expect(rows[0].public_ip).toBe(PUBLIC);
    port = rows[0].terminal_port;
    instance = { id: rows[0].id, publicIp: PUBLIC, tailnetIp: TAILNET };
    credential = (await readWorkspaceSecret(
      cp.deps.database.db,
      cp.deps.secretBox,
      workspaceId,
      "ttyd-credential",
    ))!;
    publicLink = new TcpLink(PUBLIC, port, { host: BOX, port });
    tailnetLink = new TcpLink(TAILNET, port, { host: BOX, port });
    links.push(publicLink, tailnetLink);
    await tailnetLink.open();
  });

  it("carries the terminal and the health checks over the tailnet, and the metrics say so", async () => {
    // The terminal below attaches to "main": the control plane lists it, or the agent's convergence would
    // remove it as a session nobody asked for (and the session check at the end would race with that).
    await cp.api(`/api/v1/workspaces/${workspaceId}/sessions`, {
      method: "POST",
      token: cp.localToken,
      json: { name: "main" },
    });
    expect(await terminal("fallback")).toBe("tailnet");
    // And through the relay, as a browser would: the relay dials through the same resolver.
    expect(await relayed("relayed-fallback")).toBe("relayed-fallback-42");
    expect(upstream.currentPath(instance.id)).toBe("tailnet");

    const report = await cp.health.probeAll();
    const box = report.boxes.find((b) => b.workspaceId === workspaceId)!;
    expect(box.passed).toBe(true);
    expect(box.checks.http).toEqual({ ok: true, detail: "ok" });
    expect(box.checks.handshake).toEqual({ ok: true, detail: "ok" });
    expect(box.checks.heartbeat.ok).toBe(true);
    const { rows } = await pool.query("SELECT health_last FROM workspace_instances WHERE id = $1", [
      instance.id,
    ]);
    expect(rows[0].health_last).toMatchObject({ passed: true, path: "tailnet" });

    const text = await metricsText();
    expect(text).toMatch(/box_upstream_connections_total\{path="tailnet",result="ok"\} [1-9]/);
    expect(text).toMatch(/box_upstream_connections_total\{path="public",result="refused"\} 1\n/);
    expect(text).toMatch(/box_upstream_connect_seconds_count\{path="tailnet"\} [1-9]/);
    expect(text).toMatch(/box_health_checks_total\{check="handshake",result="ok"\} 1/);
    // The handshake check sends no init, so it never reached tmux: no probe session exists.
    const socket = join(root, workspaceId, "run", "tmux.sock");
    const sessions = execFileSync("tmux", ["-S", socket, "list-sessions", "-F", "#{session_name}"], {
      encoding: "utf8",
    });
    expect(sessions.trim().split("\n").sort()).toEqual(["main", "relayed"]);
  });

  it("serves a preview over the tailnet fallback, and a clear 502 page naming no address when it is cut", async () => {
    // A dev server on the box, reachable like the terminal: only through the tailnet link.
    const dev = createServer((_req, res) => res.end("preview-over-the-tailnet"));
    await new Promise<void>((r) => dev.listen(0, BOX, r));
    const devPort = (dev.address() as AddressInfo).port;
    const devTailnet = new TcpLink(TAILNET, devPort, { host: BOX, port: devPort });
    links.push(devTailnet);
    await devTailnet.open();
    try {
      const declared = await json(
        await cp.api(`/api/v1/workspaces/${workspaceId}/previews`, {
          method: "POST",
          token: cp.localToken,
          json: { port: devPort },
        }),
      );
      const url = `/api/v1/previews/${declared.preview.id}/`;
      const through = await cp.api(url, { token: cp.localToken });
      expect(through.status).toBe(200);
      expect(await through.text()).toBe("preview-over-the-tailnet");
      expect(devTailnet.connections).toBeGreaterThan(0);

      await devTailnet.cut();
      const down = await cp.api(url, { token: cp.localToken });
      expect(down.status).toBe(502);
      const page = await down.text();
      expect(page).toContain("<html");
      for (const address of [PUBLIC, TAILNET, BOX, String(devPort)]) expect(page).not.toContain(address);
    } finally {
      dev.close();
    }
  });

  it("returns to the primary within the TTL once it answers", async () => {
    await publicLink.open();
    // Within the TTL: a path the TTL had forgotten would read null, and nothing here connects meanwhile to
    // pick the primary again; "public" can only come from a re-probe while the tailnet path was remembered.
    await waitFor("the primary path", () => upstream.currentPath(instance.id) === "public");
    const before = tailnetLink.connections;
    expect(await terminal("primary")).toBe("public");
    const report = await cp.health.probeAll();
    expect(report.boxes.find((b) => b.workspaceId === workspaceId)?.passed).toBe(true);
    expect(tailnetLink.connections).toBe(before);
    expect(await metricsText()).toMatch(/box_upstream_path_switches_total\{to="public"\} 1/);
  });

  it("with both paths down: 'box unreachable' without an address, unhealthy after N runs, not flapped by heartbeats", async () => {
    await publicLink.cut();
    await tailnetLink.cut();
    const err = await upstream.connectTarget(instance, port).catch((e: unknown) => e);
    expect(err).toBeInstanceOf(BoxUnreachableError);
    expect((err as Error).message).toBe("box unreachable");
    expect(JSON.stringify({ err, message: String(err) })).not.toMatch(/127\.0\.0|:\d{4,5}/);
    // A browser's terminal hears why, in words that name no address.
    const closed = (await relayed("never").catch((e: unknown) => e)) as Error & { code: number };
    expect(closed.code).toBe(4502);
    expect(closed.message).toBe("box unreachable");

    for (let run = 1; run <= FAIL_AFTER; run++) {
      const box = (await cp.health.probeAll()).boxes.find((b) => b.workspaceId === workspaceId)!;
      expect(box.passed).toBe(false);
      expect(box.transition).toBe(run === FAIL_AFTER ? "unhealthy" : null);
      expect(await state(workspaceId)).toBe(run === FAIL_AFTER ? "unhealthy" : "ready");
    }
    const { rows } = await pool.query(
      "SELECT health_last, health_failures, probe_unhealthy_since FROM workspace_instances WHERE id = $1",
      [instance.id],
    );
    expect(rows[0].health_failures).toBe(FAIL_AFTER);
    // Reported precisely: the terminal cannot be reached, yet the agent is alive.
    expect(rows[0].health_last.summary).toBe(
      "http: unreachable; handshake: unreachable; agent still heartbeating",
    );
    const marked: Date = rows[0].probe_unhealthy_since;
    // The agent heartbeats every second; a heartbeat after the verdict must not undo it.
    await waitFor("a heartbeat after the verdict", async () => {
      const r = await pool.query("SELECT last_heartbeat_at FROM workspace_instances WHERE id = $1", [
        instance.id,
      ]);
      return r.rows[0].last_heartbeat_at > marked;
    });
    expect(await state(workspaceId)).toBe("unhealthy");

    const audit = await pool.query(
      "SELECT action, details FROM audit_log WHERE target_id = $1 AND action LIKE 'health.%'",
      [workspaceId],
    );
    expect(audit.rows.map((r) => r.action)).toEqual(["health.unhealthy"]);
    const stored = JSON.stringify([rows[0].health_last, audit.rows]);
    expect(stored).not.toContain("127.0.0");
    expect(stored).not.toContain(String(port));
    expect(await metricsText()).toMatch(/box_health_transitions_total\{to="unhealthy"\} 1/);
  });

  it("recovers when the box is reachable again, after M passing runs", async () => {
    await tailnetLink.open();
    const first = (await cp.health.probeAll()).boxes.find((b) => b.workspaceId === workspaceId)!;
    expect(first.passed).toBe(true);
    expect(await state(workspaceId)).toBe("unhealthy");
    const second = (await cp.health.probeAll()).boxes.find((b) => b.workspaceId === workspaceId)!;
    expect(second.transition).toBe("ready");
    expect(await state(workspaceId)).toBe("ready");
    expect(await terminal("recovered")).toBe("tailnet");
    const { rows } = await pool.query(
      "SELECT health_failures, health_successes, probe_unhealthy_since FROM workspace_instances WHERE id = $1",
      [instance.id],
    );
    expect(rows[0]).toEqual({
      health_failures: 0,
      health_successes: RECOVER_AFTER,
      probe_unhealthy_since: null,
    });
  });

  it("names the check that failed: a box whose terminal refuses the credential fails the handshake only", async () => {
    // Replaced by delete + insert: storeWorkspaceSecrets' upsert keeps an existing row's value as it is.
    const setCredential = async (value: string) => {
      await pool.query("DELETE FROM workspace_secrets WHERE workspace_id = $1 AND name = 'ttyd-credential'", [
        workspaceId,
      ]);
      await storeWorkspaceSecrets(cp.deps.database.db, cp.deps.secretBox, workspaceId, {
        "ttyd-credential": value,
      });
    };
    await setCredential("berth:not-the-one");
    try {
      const box = (await cp.health.probeAll()).boxes.find((b) => b.workspaceId === workspaceId)!;
      expect(box.checks.http).toEqual({ ok: true, detail: "ok" });
      expect(box.checks.handshake).toEqual({ ok: false, detail: "upgrade refused (401)" });
      expect(box.summary).toBe("handshake: upgrade refused (401); agent still heartbeating");
    } finally {
      await setCredential(credential);
    }
    expect((await cp.health.probeAll()).boxes.find((b) => b.workspaceId === workspaceId)?.passed).toBe(true);
  });

  it("runs one probe run at a time across replicas", async () => {
    // Another replica's run, held open until the test lets it end: two runs started together could
    // otherwise both finish unhindered, the first done before the second asks for the lock.
    let release!: () => void;
    let holding!: () => void;
    const held = new Promise<void>((r) => (holding = r));
    const otherReplica = cp.deps.store.as(SYSTEM.health).health.exclusiveRun(() => {
      holding();
      return new Promise<string>((r) => (release = () => r("done")));
    });
    await held;
    expect((await cp.health.probeAll()).skipped).toBe(true);
    release();
    expect(await otherReplica).toBe("done");
    expect((await cp.health.probeAll()).skipped).toBe(false);
  });

  it("ends a run that is still spreading its probes when the control plane stops", async () => {
    const prober = new HealthProber({
      store: cp.deps.store,
      upstream,
      metrics: cp.deps.metrics,
      log: cp.deps.log,
      options: { spreadMs: 120_000 },
    });
    const run = prober.probeAll();
    prober.stop();
    // The run would take spreadMs (beyond the test's timeout) had stop() not ended it; no box was probed.
    const report = await run;
    expect(report.boxes).toEqual([]);
    expect((await prober.probeAll()).skipped).toBe(true);
  });
});
