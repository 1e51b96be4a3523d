/**
 * Keystroke echo latency through a ttyd-protocol endpoint: send one character as INPUT and time until the
 * terminal shows it (the shell echoes it, tmux redraws, the endpoint forwards). That is the delay a user
 * feels while typing. `npm run bench` calls this; it asserts nothing.
 */
import { randomBytes } from "node:crypto";
import { TtydClient } from "../terminal/client.ts";
import type { TerminalSize } from "../terminal/protocol.ts";

export interface EchoTarget {
  /** `ws://host:port/ws` */
  wsUrl: string;
  credential?: string;
  /** Session to attach to; it should run an interactive shell in its active pane. */
  session: string;
  size?: TerminalSize;
}

export interface EchoRoundTrip {
  samples: number;
  p50: number;
  p99: number;
  mean: number;
  max: number;
}

// CSI/OSC/other escapes, so letters inside control sequences (CSI ... m, ?25l) never count as the echo.
// biome-ignore lint/suspicious/noControlCharactersInRegex: matching terminal escape sequences is the point.
const ESCAPES = /\x1b\[[0-?]*[ -/]*[@-~]|\x1b\][^\x07\x1b]*(?:\x07|\x1b\\)|\x1b[@-Z\\-_]|\x1b./g;
const LETTERS = "abcdefghijklmnopqrstuvwxyz";
/** A line ending in a shell prompt's `$`, `#` or `%` (and its space). */
const SHELL_PROMPT = /[$#%] ?$/m;
// The shell's line editor scrolls a long line; clear it now and then so every echo is a plain append.
const CLEAR_EVERY = 40;

function percentile(sorted: number[], p: number): number {
  const index = Math.min(sorted.length - 1, Math.max(0, Math.ceil((p / 100) * sorted.length) - 1));
  return sorted[index]!;
}

/** What the echo loop uses of a terminal: a TtydClient, or anything that types and shows output like one. */
export type EchoTerminal = Pick<TtydClient, "type" | "mark" | "waitFor">;

/** Runs a command and waits for its output: the shell is idle and the screen settled afterwards. */
async function settled(client: EchoTerminal, marker: string): Promise<void> {
  // A fresh nonce each time: tmux may skip redrawing cells a client already shows, so text equal to an
  // earlier run's could never arrive.
  const nonce = `${marker}-${randomBytes(4).toString("hex")}`;
  const expected = `${nonce}-42`; // the typed line holds `$((6*7))`, so its echo never matches
  const since = client.mark();
  client.type(`echo ${nonce}-$((6*7))\r`);
  let shown = "";
  await client
    .waitFor(
      (output) => {
        shown = output.replace(ESCAPES, "");
        return shown.includes(expected);
      },
      { since },
    )
    .catch((err: Error) => {
      // What the terminal showed instead says whether the keys were lost, garbled or never answered.
      const why = err.message.split(" waiting for ")[0];
      throw new Error(
        `${expected} never showed (${why}); the terminal showed ${JSON.stringify(shown.slice(-600))}`,
      );
    });
}

/**
 * Typing on one open terminal, a character at a time. `begin` clears the line and waits for a settled
 * screen, each `keystroke` times one character until its echo is on screen, and `end` leaves an empty,
 * idle line for the next user of the session.
 */
class EchoTyping {
  readonly client: EchoTerminal;
  #typed = 0;

  constructor(client: EchoTerminal) {
    this.client = client;
  }

  async begin(): Promise<void> {
    // Nothing is typed before a shell prompt is on screen: keys sent the moment a new session's terminal
    // opened were lost once in CI (the screen showed the prompt, never the typed command), which this
    // bench is not about; the early-keys test in builtin-server.test.ts is.
    await this.client.waitFor((output) => SHELL_PROMPT.test(output.replace(ESCAPES, "")));
    // Ctrl-U first: a previous client's last keystrokes may still sit on the line (ttyd drops input that
    // arrives just before a close), and they would turn the marker command into garbage.
    this.client.type("\x15");
    await settled(this.client, "bench-ready");
  }

  /** Milliseconds from sending one character until its echo is on screen. */
  async keystroke(): Promise<number> {
    const client = this.client;
    const i = this.#typed++;
    if (i > 0 && i % CLEAR_EVERY === 0) {
      client.type("\x15"); // Ctrl-U: clear the typed line
      await settled(client, `bench-${i}`);
    }
    const ch = LETTERS[i % LETTERS.length]!;
    const since = client.mark();
    const start = performance.now();
    client.type(ch);
    await client.waitFor((output) => output.replace(ESCAPES, "").includes(ch), { since });
    return performance.now() - start;
  }

  async end(): Promise<void> {
    this.client.type("\x15");
    await settled(this.client, "bench-done");
  }
}

function checkCount(n: number): void {
  if (!Number.isInteger(n) || n < 1)
    throw new RangeError(`sample count must be a positive integer, got ${n}`);
}

/**
 * Typing `n` characters one at a time on an open terminal: each sample is the milliseconds from sending a
 * character until its echo is on screen. Leaves an empty, idle line for the next user of the session.
 */
export async function echoTimes(client: EchoTerminal, n: number): Promise<number[]> {
  checkCount(n);
  const typing = new EchoTyping(client);
  await typing.begin();
  const times: number[] = [];
  for (let i = 0; i < n; i++) times.push(await typing.keystroke());
  await typing.end();
  return times;
}

/**
 * `n` keystrokes on each of several open terminals, taking turns keystroke by keystroke (each turn starting
 * one terminal later), so that whatever the machine does meanwhile lands on every terminal alike: when the
 * paths compared are a fraction of a millisecond apart, drift between rounds of many keystrokes is larger
 * than the difference measured. Each terminal should be attached to a session of its own: one keystroke's
 * echo must not reach the others' screens. Returns each terminal's samples, in the order given.
 */
export async function interleavedEchoTimes(clients: EchoTerminal[], n: number): Promise<number[][]> {
  checkCount(n);
  const typing = clients.map((c) => new EchoTyping(c));
  for (const t of typing) await t.begin();
  const times: number[][] = clients.map(() => []);
  for (let i = 0; i < n; i++) {
    for (let j = 0; j < typing.length; j++) {
      const k = (i + j) % typing.length;
      times[k]!.push(await typing[k]!.keystroke());
    }
  }
  for (const t of typing) await t.end();
  return times;
}

/** Percentiles, mean and maximum of echo samples, in milliseconds rounded to microseconds. */
export function summarizeEcho(times: number[]): EchoRoundTrip {
  const sorted = [...times].sort((a, b) => a - b);
  const round = (x: number) => Math.round(x * 1000) / 1000;
  return {
    samples: times.length,
    p50: round(percentile(sorted, 50)),
    p99: round(percentile(sorted, 99)),
    mean: round(times.reduce((a, b) => a + b, 0) / times.length),
    max: round(sorted[sorted.length - 1]!),
  };
}

export async function measureEchoRoundTrip(target: EchoTarget, n: number): Promise<EchoRoundTrip> {
  const client = await TtydClient.connect({
    url: target.wsUrl,
    credential: target.credential,
    session: target.session,
    size: target.size ?? { columns: 200, rows: 50 },
  });
  try {
    return summarizeEcho(await echoTimes(client, n));
  } finally {
    await client.close();
  }
}
