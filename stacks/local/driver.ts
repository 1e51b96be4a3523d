/**
 * The local driver: a workspace is a directory on this machine (its "volume") and its box agent runs as a
 * detached child process, with the same boot contract as on a VM (settings in the environment, secrets as
 * files in $CREDENTIALS_DIRECTORY). Agents outlive a control-plane restart, the way VMs do: the driver finds
 * them again through their state file, and never runs two agents for one workspace.
 *
 *   <root>/<id>/volume/            the workspace root (user/, system/)
 *   <root>/<id>/run/credentials/   0700; one 0600 file per secret
 *   <root>/<id>/run/agent.json     pid and ports of the running agent
 *   <root>/<id>/run/agent.log      the agent's stdout/stderr
 *   <root>/<id>/restic/            the workspace's restic repository (unless backups go to S3)
 */
import { execFile, spawn } from "node:child_process";
import {
  chmodSync,
  closeSync,
  existsSync,
  mkdirSync,
  openSync,
  readdirSync,
  readFileSync,
  rmSync,
  writeFileSync,
} from "node:fs";
import { join } from "node:path";
import { promisify } from "node:util";
import type {
  BackupRepository,
  BuildLog,
  LocalBoxes,
  ObservedState,
  StackDiff,
  Transition,
  WorkspaceDriver,
  WorkspaceId,
  WorkspaceOutputs,
  WorkspaceSpec,
} from "../driver.ts";
import { DriverError, OperationCanceledError } from "../errors.ts";
import { type ListenerOwner, listenerOwner, listeningInodes, workspaceProcesses } from "./listeners.ts";
import {
  endProcesses,
  freePort,
  isAlive,
  isOurAgent,
  type ProcessRef,
  processesWithEnvironment,
  processRef,
  stopProcess,
} from "./process.ts";

const run = promisify(execFile);
const ID = /^[a-z0-9-]{1,64}$/;

export interface LocalDriverOptions {
  /** Where workspaces live, e.g. `<data dir>/workspaces`. */
  root: string;
  /** The box agent's entry point (box/main.ts) and the Node that runs it. */
  agentEntry: string;
  nodePath: string;
  readyTimeoutMs?: number;
  stopGraceMs?: number;
  /** Extra settings for every agent (e.g. BERTH_TERMINAL). */
  agentEnv?: Record<string, string>;
  /**
   * Where each box's terminal endpoint listens (BERTH_TTYD_HOST): 127.0.0.1, the address the driver reports
   * as the box's public IP, unless a test moves it to another loopback address to take that path away.
   */
  terminalHost?: string;
  /** Backups to an S3-compatible base (`s3:http(s)://host/bucket[/prefix]`, a prefix per workspace). */
  backupS3?: { base: string; accessKeyId: string; secretAccessKey: string } | null;
}

interface AgentState {
  pid: number;
  terminalPort: number;
  agentPort: number;
  tmuxSocket: string;
  startedAt: string;
}

export class LocalDriver implements WorkspaceDriver {
  readonly name = "local";
  readonly #o: Required<LocalDriverOptions>;
  /** Verdicts per workspace and port, valid while the same sockets listen (a /proc walk is not free). */
  readonly #owners = new Map<string, { inodes: string; owner: ListenerOwner; at: number }>();

  readonly localBoxes: LocalBoxes = {
    listenerOwner: async (id, port) => this.#listenerOwner(id, port),
  };

  constructor(options: LocalDriverOptions) {
    this.#o = {
      readyTimeoutMs: 60_000,
      stopGraceMs: 15_000,
      agentEnv: {},
      terminalHost: "127.0.0.1",
      backupS3: null,
      ...options,
    };
    mkdirSync(this.#o.root, { recursive: true, mode: 0o700 });
  }

  #paths(id: WorkspaceId) {
    if (!ID.test(id)) throw new DriverError(`invalid workspace id ${JSON.stringify(id)}`);
    const dir = join(this.#o.root, id);
    return {
      dir,
      volume: join(dir, "volume"),
      run: join(dir, "run"),
      credentials: join(dir, "run", "credentials"),
      state: join(dir, "run", "agent.json"),
      log: join(dir, "run", "agent.log"),
      tmuxSocket: join(dir, "run", "tmux.sock"),
    };
  }

  /** The agent for `id` if it is running, else null (a stale state file is ignored). */
  #running(id: WorkspaceId): AgentState | null {
    const { state } = this.#paths(id);
    if (!existsSync(state)) return null;
    try {
      const s = JSON.parse(readFileSync(state, "utf8")) as AgentState;
      return isAlive(s.pid) && isOurAgent(s.pid, `BERTH_WORKSPACE_ID=${id}`) ? s : null;
    } catch {
      return null;
    }
  }

  async apply(
    spec: WorkspaceSpec,
    transition: Transition,
    log: BuildLog,
    signal: AbortSignal,
  ): Promise<WorkspaceOutputs> {
    const p = this.#paths(spec.workspaceId);
    if (transition === "stop") {
      await this.#stop(spec.workspaceId, log);
      return this.#outputs(spec.workspaceId, null);
    }
    log.stage("prepare volume");
    mkdirSync(p.volume, { recursive: true, mode: 0o755 });
    mkdirSync(p.credentials, { recursive: true, mode: 0o700 });
    chmodSync(p.credentials, 0o700);
    const secrets: Record<string, string> = {
      "agent-token": spec.secrets.agentToken,
      "ttyd-credential": spec.secrets.ttydCredential,
      "restic-password": spec.secrets.resticPassword,
    };
    const backups = this.backupRepository(spec.workspaceId);
    if (backups.s3) {
      secrets["r2-access-key-id"] = backups.s3.accessKeyId;
      secrets["r2-secret-access-key"] = backups.s3.secretAccessKey;
    }
    for (const [name, value] of Object.entries(secrets)) {
      writeFileSync(join(p.credentials, name), value, { mode: 0o600 });
      chmodSync(join(p.credentials, name), 0o600);
    }

    // Never two agents for one workspace: a previous one (failed start, re-run build) is stopped first.
    if (this.#running(spec.workspaceId)) {
      log.line("warn", "an agent for this workspace is already running; replacing it");
      await this.#stop(spec.workspaceId, log);
    }

    log.stage("start agent");
    const terminalPort = await freePort();
    const agentPort = await freePort();
    const env: Record<string, string> = {
      PATH: process.env.PATH ?? "/usr/bin:/bin",
      // The box user's home is the volume's user/home (the agent creates it), as on a VM: shells in the
      // workspace read the workspace's dotfiles, not this machine's.
      HOME: join(p.volume, "user", "home"),
      LANG: process.env.LANG ?? "C.UTF-8",
      ...(process.env.TMPDIR ? { TMPDIR: process.env.TMPDIR } : {}),
      ...this.#o.agentEnv,
      BERTH_WORKSPACE_ID: spec.workspaceId,
      BERTH_CONTROL_PLANE_URL: spec.controlPlaneUrl,
      BERTH_WORKSPACE_ROOT: p.volume,
      BERTH_TTYD_HOST: this.#o.terminalHost,
      BERTH_TTYD_PORT: String(terminalPort),
      BERTH_AGENT_PORT: String(agentPort),
      BERTH_TMUX_SOCKET: p.tmuxSocket,
      BERTH_RESTIC_REPOSITORY: backups.url,
      CREDENTIALS_DIRECTORY: p.credentials,
      ...(spec.traceparent ? { BERTH_TRACEPARENT: spec.traceparent } : {}),
    };
    const out = openSync(p.log, "a", 0o600);
    const child = spawn(this.#o.nodePath, [this.#o.agentEntry], {
      env,
      detached: true,
      stdio: ["ignore", out, out],
    });
    closeSync(out);
    if (!child.pid) throw new DriverError("the box agent did not start");
    child.unref();
    const state: AgentState = {
      pid: child.pid,
      terminalPort,
      agentPort,
      tmuxSocket: p.tmuxSocket,
      startedAt: new Date().toISOString(),
    };
    writeFileSync(p.state, JSON.stringify(state), { mode: 0o600 });
    log.line("info", `agent started (pid ${child.pid})`);

    log.stage("wait for agent");
    await this.#waitReady(spec.workspaceId, state, signal, log);
    log.line("info", "agent ready");
    return this.#outputs(spec.workspaceId, state);
  }

  async #waitReady(id: WorkspaceId, state: AgentState, signal: AbortSignal, log: BuildLog): Promise<void> {
    const deadline = Date.now() + this.#o.readyTimeoutMs;
    let last = "";
    while (Date.now() < deadline) {
      if (signal.aborted) {
        await this.#stop(id, log);
        throw new OperationCanceledError("canceled while waiting for the agent");
      }
      if (!isAlive(state.pid))
        throw new DriverError(`the box agent exited during start: ${this.#logTail(id)}`);
      try {
        const res = await fetch(`http://127.0.0.1:${state.agentPort}/healthz`, {
          signal: AbortSignal.timeout(1_000),
        });
        const health = (await res.json()) as { lifecycle?: string; lastError?: string | null };
        if (health.lifecycle === "ready") return;
        if (health.lifecycle === "start_error" || health.lifecycle === "start_timeout") {
          throw new DriverError(`the box agent failed to start: ${health.lastError ?? health.lifecycle}`);
        }
        if (health.lifecycle && health.lifecycle !== last) log.line("info", `agent: ${health.lifecycle}`);
        last = health.lifecycle ?? last;
      } catch (err) {
        if (err instanceof DriverError) throw err;
      }
      await new Promise((r) => setTimeout(r, 100));
    }
    throw new DriverError(
      `the box agent was not ready within ${this.#o.readyTimeoutMs / 1000}s: ${this.#logTail(id)}`,
      {
        retryable: true,
      },
    );
  }

  #logTail(id: WorkspaceId): string {
    try {
      return readFileSync(this.#paths(id).log, "utf8").trim().split("\n").slice(-5).join(" | ").slice(-1_000);
    } catch {
      return "(no agent log)";
    }
  }

  /**
   * The stop protocol: SIGTERM (the agent flushes its events and reports `off`), then end its tmux server,
   * then whatever the workspace started that outlived both: a `nohup`'d or `setsid`'d process, a daemon
   * (`pg_ctl start`), as a VM's shutdown would. Those are found by the process tree taken before the stop,
   * and by their environment, which carries the workspace's tmux socket (`TMUX`, in everything started in
   * a pane) or its id (the agent's own children) even after they leave the tree.
   */
  async #stop(id: WorkspaceId, log: BuildLog): Promise<void> {
    const p = this.#paths(id);
    const agent = this.#running(id);
    const tree = [...workspaceProcesses(agent?.pid ?? 0, p.tmuxSocket)]
      .map((pid) => processRef(pid))
      .filter((r): r is ProcessRef => r !== null);
    if (agent) {
      log.stage("stop agent");
      const how = await stopProcess(agent.pid, this.#o.stopGraceMs);
      log.line(
        how === "exited" ? "info" : "warn",
        how === "exited" ? "agent stopped" : "agent did not stop in time; killed",
      );
    }
    // Sessions end with the box, as on a VM that shuts down; files stay on the volume.
    await run("tmux", ["-S", p.tmuxSocket, "kill-server"]).catch(() => {});
    const marked = processesWithEnvironment(
      (entry) => entry === `BERTH_WORKSPACE_ID=${id}` || entry.startsWith(`TMUX=${p.tmuxSocket},`),
    );
    const left = [...tree, ...marked];
    if (left.some((r) => processRef(r.pid)?.start === r.start)) {
      log.line("info", "ending processes the workspace left running");
      await endProcesses(left, this.#o.stopGraceMs);
    }
    rmSync(p.state, { force: true });
  }

  #outputs(id: WorkspaceId, state: AgentState | null): WorkspaceOutputs {
    const p = this.#paths(id);
    return {
      running: state !== null,
      serverId: state ? `local-${state.pid}` : null,
      publicIp: state ? "127.0.0.1" : null,
      terminalPort: state?.terminalPort ?? null,
      volumeId: id,
      volumeDevice: p.volume,
      bucketName: null,
      secretOutputs: {},
    };
  }

  async destroy(spec: WorkspaceSpec, log: BuildLog): Promise<void> {
    const p = this.#paths(spec.workspaceId);
    await this.#stop(spec.workspaceId, log);
    log.stage("delete volume");
    rmSync(p.dir, { recursive: true, force: true });
  }

  async preview(spec: WorkspaceSpec, transition: Transition): Promise<StackDiff> {
    const running = this.#running(spec.workspaceId) !== null;
    const exists = existsSync(this.#paths(spec.workspaceId).volume);
    const agentOp = transition === "start" ? (running ? "replace" : "create") : running ? "delete" : "same";
    return {
      workspaceId: spec.workspaceId,
      changes: [
        { resource: "volume", type: "local:directory", op: exists ? "same" : "create", changedKeys: [] },
        {
          resource: "agent",
          type: "local:process",
          op: agentOp,
          changedKeys: agentOp === "same" ? [] : ["pid"],
        },
      ],
    };
  }

  async observe(id: WorkspaceId): Promise<ObservedState | null> {
    const p = this.#paths(id);
    if (!existsSync(p.dir)) return null;
    const agent = this.#running(id);
    return {
      workspaceId: id,
      running: agent !== null,
      serverId: agent ? `local-${agent.pid}` : null,
      publicIp: agent ? "127.0.0.1" : null,
      resourceIds: [p.dir, ...(agent ? [`pid:${agent.pid}`] : [])],
    };
  }

  async observeAll(): Promise<ObservedState[]> {
    const ids = readdirSync(this.#o.root, { withFileTypes: true })
      .filter((d) => d.isDirectory() && ID.test(d.name))
      .map((d) => d.name);
    const states = await Promise.all(ids.map((id) => this.observe(id)));
    return states.filter((s): s is ObservedState => s !== null);
  }

  #listenerOwner(id: WorkspaceId, port: number): ListenerOwner {
    const agent = this.#running(id);
    if (!agent) return "other"; // no workspace processes: nothing here is its own
    // The box's own services, as ports 7681/7690 on a VM: never a preview.
    if (port === agent.agentPort || port === agent.terminalPort) return "other";
    const key = `${id}:${port}`;
    const inodes = [...listeningInodes(port)].sort().join(",");
    const cached = this.#owners.get(key);
    if (cached && cached.inodes === inodes && Date.now() - cached.at < 30_000) return cached.owner;
    const owner = listenerOwner(port, { agentPid: agent.pid, tmuxSocket: this.#paths(id).tmuxSocket });
    if (this.#owners.size > 1_000) this.#owners.clear();
    this.#owners.set(key, { inodes, owner, at: Date.now() });
    return owner;
  }

  /** Outside the volume, so the workspace's files and their backups are never one directory. */
  backupRepository(id: WorkspaceId): BackupRepository {
    const s3 = this.#o.backupS3;
    if (s3) {
      const { accessKeyId, secretAccessKey } = s3;
      return { url: `${s3.base.replace(/\/+$/, "")}/${id}`, s3: { accessKeyId, secretAccessKey } };
    }
    return { url: join(this.#paths(id).dir, "restic") };
  }

  /** A stale state file (agent gone) is the local equivalent of a stale lock. */
  async repair(id: WorkspaceId, log: BuildLog): Promise<void> {
    const p = this.#paths(id);
    if (existsSync(p.state) && !this.#running(id)) {
      rmSync(p.state, { force: true });
      log.line("info", "removed the state file of an agent that is gone");
    }
  }
}
