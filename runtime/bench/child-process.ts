/**
 * Bench participants in their own processes (a control plane, a box endpoint), the way they run in
 * production and the way nginx runs in the comparisons: a server sharing the load generator's event loop
 * would be measured with a handicap. The child reports readiness once, then answers numeric questions
 * (its heap after GC, counters) over the IPC channel; disconnecting stops it.
 */
import { fork } from "node:child_process";
import { setFlagsFromString } from "node:v8";
import { runInNewContext } from "node:vm";

type Reply = { id: number; value: number } | { id: 0; ready: unknown };

export interface BenchChild<Ready> {
  ready: Ready;
  pid: number;
  /** Asks the child one of the questions it answers (`heap` always; `name:argument` for some). */
  ask(question: string): Promise<number>;
  stop(): Promise<void>;
}

let gc: (() => void) | undefined;

/** V8 heap + external after two full collections, in bytes. */
export function heapAfterGc(): number {
  if (!gc) {
    setFlagsFromString("--expose-gc");
    gc = runInNewContext("gc") as () => void;
  }
  gc();
  gc();
  const m = process.memoryUsage();
  return m.heapUsed + m.external;
}

/**
 * In the child: announce readiness and answer questions until the parent disconnects. A question is an
 * answer's name, or `name:argument` for one that takes an argument.
 */
export function serveParent(
  ready: unknown,
  answers: Record<string, (argument: string) => number | Promise<number>>,
  onDisconnect: () => Promise<void>,
): void {
  const all: typeof answers = { heap: heapAfterGc, ...answers };
  process.on("message", async (m: { id: number; question: string }) => {
    const [name, argument = ""] = m.question.split(/:(.*)/s) as [string, string?];
    process.send!({ id: m.id, value: (await all[name]?.(argument)) ?? Number.NaN } satisfies Reply);
  });
  process.on("disconnect", () => {
    void onDisconnect().finally(() => process.exit(0));
  });
  process.send!({ id: 0, ready } satisfies Reply);
}

/** In the parent: fork `module` with `env` and wait for its readiness report. */
export async function forkBenchChild<Ready>(
  module: string,
  env: Record<string, string>,
): Promise<BenchChild<Ready>> {
  const child = fork(module, [], {
    env: { ...process.env, ...env },
    stdio: ["ignore", "inherit", "inherit", "ipc"],
  });
  let nextId = 1;
  const ready = await new Promise<Ready>((resolve, reject) => {
    child.once("exit", (code) => reject(new Error(`bench child ${module} exited (${code})`)));
    child.once("message", (m: Reply) => resolve((m as { ready: Ready }).ready));
  });
  child.removeAllListeners("exit");
  const pending = new Map<number, { resolve: (value: number) => void; reject: (err: Error) => void }>();
  child.on("message", (m: Reply) => {
    if ("value" in m) pending.get(m.id)?.resolve(m.value);
    pending.delete(m.id);
  });
  // A child that dies mid-run fails the bench with its exit code instead of leaving a question unanswered.
  child.on("exit", (code, signal) => {
    for (const p of pending.values()) p.reject(new Error(`bench child ${module} exited (${code ?? signal})`));
    pending.clear();
  });
  return {
    ready,
    pid: child.pid!,
    ask: (question) =>
      new Promise<number>((resolve, reject) => {
        if (child.exitCode !== null || child.signalCode !== null) {
          reject(new Error(`bench child ${module} is not running`));
          return;
        }
        const id = nextId++;
        pending.set(id, { resolve, reject });
        child.send({ id, question });
      }),
    stop: async () => {
      if (child.exitCode !== null || child.signalCode !== null) return;
      const exited = new Promise((r) => child.once("exit", r));
      child.disconnect();
      const timer = setTimeout(() => child.kill("SIGKILL"), 10_000);
      await exited;
      clearTimeout(timer);
    },
  };
}
