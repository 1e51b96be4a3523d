/**
 * Detects dev servers: every few seconds, list listening TCP sockets (/proc/net/tcp, tcp6), keep those in
 * the allowed port range that belong to the workspace, attribute them to a process, guess the framework,
 * and publish what changed as `preview` events (open / closed).
 *
 * "Belongs to the workspace" is decided by `owner`:
 * - on a VM, the box user's uid (everything the user runs is theirs; system daemons are not);
 * - locally, where the agent shares a machine and a uid with other programs, descendants of given root
 *   pids (the workspace's tmux server), optionally also a uid.
 * A closed port is reported only after it is missing from two scans in a row, so a dev server restarting
 * between scans does not flap.
 */
import { existsSync, readFileSync } from "node:fs";
import { join } from "node:path";
import type { Logger } from "pino";
import type { PreviewPayload } from "../protocol.ts";
import { guessFramework } from "./framework.ts";
import { type ListeningSocket, parseProcNetTcp } from "./proc-net.ts";
import { descendsFrom, listProcesses, readCmdline, socketOwners } from "./process-table.ts";

export interface PreviewOwnership {
  /** Sockets owned by this uid count (VM mode). */
  uid?: number;
  /** Processes descending from these pids count (local mode); called every scan, since they may change. */
  ancestors?: () => number[] | Promise<number[]>;
}

export interface PreviewScannerOptions {
  owner: PreviewOwnership;
  publish: (preview: PreviewPayload) => void;
  log?: Logger;
  procRoot?: string;
  portRange?: { min: number; max: number };
  /** Ports never reported: the agent's own (ttyd, loopback endpoint). */
  excludePorts?: readonly number[];
  intervalMs?: number;
}

interface Tracked {
  payload: PreviewPayload;
  misses: number;
}

export class PreviewScanner {
  private readonly o: PreviewScannerOptions;
  private readonly procRoot: string;
  private readonly range: { min: number; max: number };
  private readonly exclude: Set<number>;
  private tracked = new Map<number, Tracked>();
  private timer: NodeJS.Timeout | null = null;
  private scanning: Promise<PreviewPayload[]> | null = null;

  constructor(options: PreviewScannerOptions) {
    if (options.owner.uid === undefined && !options.owner.ancestors)
      throw new Error("preview scanner needs an owner: a uid, ancestor pids, or both");
    this.o = options;
    this.procRoot = options.procRoot ?? "/proc";
    this.range = options.portRange ?? { min: 1024, max: 65535 };
    this.exclude = new Set(options.excludePorts ?? []);
  }

  /** Ports currently reported open. */
  get openPorts(): number[] {
    return [...this.tracked.keys()].sort((a, b) => a - b);
  }

  start(): void {
    if (this.timer) return;
    const tick = () => {
      this.scan().catch((err: Error) => this.o.log?.warn({ err: err.message }, "preview scan failed"));
    };
    tick();
    this.timer = setInterval(tick, this.o.intervalMs ?? 2000);
    this.timer.unref?.();
  }

  async stop(): Promise<void> {
    if (this.timer) clearInterval(this.timer);
    this.timer = null;
    await this.scanning?.catch(() => {});
  }

  /** One scan; returns (and publishes) the changes. Concurrent calls share one scan. */
  scan(): Promise<PreviewPayload[]> {
    this.scanning ??= this.scanOnce().finally(() => {
      this.scanning = null;
    });
    return this.scanning;
  }

  private async scanOnce(): Promise<PreviewPayload[]> {
    const current = await this.detect();
    const changes: PreviewPayload[] = [];
    for (const [port, payload] of current) {
      const before = this.tracked.get(port);
      if (!before || before.payload.pid !== payload.pid || before.payload.address !== payload.address)
        changes.push(payload);
      this.tracked.set(port, { payload, misses: 0 });
    }
    for (const [port, t] of this.tracked) {
      if (current.has(port)) continue;
      t.misses++;
      if (t.misses >= 2) {
        this.tracked.delete(port);
        changes.push({ ...t.payload, state: "closed" });
      }
    }
    for (const c of changes) this.o.publish(c);
    return changes;
  }

  private async detect(): Promise<Map<number, PreviewPayload>> {
    const sockets: ListeningSocket[] = [];
    for (const [file, family] of [
      ["tcp", 4],
      ["tcp6", 6],
    ] as const) {
      const path = join(this.procRoot, "net", file);
      if (!existsSync(path)) continue; // no IPv6 in this kernel/namespace
      sockets.push(...parseProcNetTcp(readFileSync(path, "utf8"), family));
    }
    const wanted = sockets.filter(
      (s) => s.port >= this.range.min && s.port <= this.range.max && !this.exclude.has(s.port),
    );
    const result = new Map<number, PreviewPayload>();
    if (wanted.length === 0) return result;

    const table = listProcesses(this.procRoot);
    const { uid, ancestors } = this.o.owner;
    const roots = new Set(ancestors ? await ancestors() : []);
    const candidates = [...table.values()]
      .filter(
        (p) => (uid !== undefined && p.uid === uid) || (roots.size > 0 && descendsFrom(p.pid, roots, table)),
      )
      .map((p) => p.pid);
    const owners = socketOwners(new Set(wanted.map((s) => s.inode)), candidates, this.procRoot);

    for (const s of wanted) {
      const pid = owners.get(s.inode) ?? null;
      // Without a process we can only vouch for the socket by its uid (VM mode).
      if (pid === null && !(uid !== undefined && s.uid === uid)) continue;
      const guess = guessFramework(pid === null ? [] : readCmdline(pid, this.procRoot));
      const payload: PreviewPayload = {
        port: s.port,
        protocol: guess.protocol,
        address: s.address,
        state: "open",
        process: pid === null ? null : guess.process,
        pid,
        framework: guess.framework,
      };
      const prev = result.get(s.port);
      // One preview per port: a dual-stack server listens twice; report the widest address.
      if (!prev || (isWildcard(s.address) && !isWildcard(prev.address))) result.set(s.port, payload);
    }
    return result;
  }
}

function isWildcard(address: string): boolean {
  return address === "0.0.0.0" || address === "::";
}
