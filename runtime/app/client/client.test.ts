import { execFileSync } from "node:child_process";
import { mkdtempSync, readFileSync, statSync, writeFileSync } from "node:fs";
import { createServer, type IncomingMessage, type ServerResponse } from "node:http";
import type { AddressInfo } from "node:net";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { PassThrough } from "node:stream";
import { describe, expect, it, vi } from "vitest";
import { waitFor } from "../../test/wait.ts";
import { ApiClient, ClientError, Exit, errorFrom } from "./api.ts";
import { DetachDetector } from "./attach.ts";
import { backupCommand, exportCommand } from "./backups.ts";
import { followBuild, sseEvents } from "./build-progress.ts";
import { completionScript } from "./completion.ts";
import { configDir, readCredentials, removeCredentials, writeCredentials } from "./credentials.ts";
import { runClient } from "./main.ts";

describe("the detach key", () => {
  it("passes ordinary input through and detaches on Ctrl-] d", () => {
    const d = new DetachDetector();
    expect(d.feed(Buffer.from("ls\r"))).toEqual({ send: Buffer.from("ls\r"), detach: false });
    expect(d.feed(Buffer.from("a\x1d"))).toEqual({ send: Buffer.from("a"), detach: false });
    expect(d.feed(Buffer.from("d"))).toEqual({ send: Buffer.from(""), detach: true });
  });

  it("sends Ctrl-] itself on Ctrl-] Ctrl-], and Ctrl-] with any other key as typed", () => {
    const d = new DetachDetector();
    expect(d.feed(Buffer.from("\x1d\x1d")).send).toEqual(Buffer.from("\x1d"));
    expect(d.feed(Buffer.from("\x1dx")).send).toEqual(Buffer.from("\x1dx"));
  });
});

describe("credentials", () => {
  it("live under XDG_CONFIG_HOME, or ~/.config", () => {
    expect(configDir({ XDG_CONFIG_HOME: "/x" })).toBe("/x/berth");
    expect(configDir({ HOME: "/h" })).toMatch(/\/\.config\/berth$/);
  });

  it("are written 0600 in a 0700 directory, even over a file that was readable by others", () => {
    const env = { XDG_CONFIG_HOME: mkdtempSync(join(tmpdir(), "berth-cred-")) };
    const path = writeCredentials({ url: "http://a", token: "t1" }, env);
    expect(statSync(path).mode & 0o777).toBe(0o600);
    expect(statSync(configDir(env)).mode & 0o777).toBe(0o700);
    writeFileSync(path, "{}", { mode: 0o644 });
    writeCredentials({ url: "http://b", token: "t2" }, env);
    expect(statSync(path).mode & 0o777).toBe(0o600);
    expect(readCredentials(env)).toEqual({ url: "http://b", token: "t2" });
    expect(JSON.parse(readFileSync(path, "utf8")).token).toBe("t2");
    expect(removeCredentials(env)).toBe(true);
    expect(readCredentials(env)).toBeNull();
    expect(removeCredentials(env)).toBe(false);
  });
});

describe("API errors", () => {
  it("map to the documented exit codes with the server's message", () => {
    const body = (code: string) => ({ error: { code, message: `${code} happened`, requestId: "r" } });
    expect(errorFrom(401, body("token_invalid"), "http://cp").exitCode).toBe(Exit.AUTH);
    expect(errorFrom(401, body("token_invalid"), "http://cp").message).toContain("berth login http://cp");
    expect(errorFrom(404, body("not_found"), "u").exitCode).toBe(Exit.NOT_FOUND);
    expect(errorFrom(409, body("invalid_transition"), "u")).toMatchObject({
      exitCode: Exit.CONFLICT,
      message: "invalid_transition happened (invalid_transition)",
    });
    expect(errorFrom(500, undefined, "u")).toMatchObject({ exitCode: Exit.FAILED, message: "HTTP 500" });
  });

  it("say a revoked or expired API token is dead, with the tokens page's whole URL", () => {
    const revoked = errorFrom(
      401,
      {
        error: {
          code: "token_revoked",
          message: "this API token (berth_pat_ab12cd…) was revoked; create a new one at /#/tokens",
        },
      },
      "https://berth.example",
    );
    expect(revoked.exitCode).toBe(Exit.AUTH);
    expect(revoked.message).toBe(
      "this API token (berth_pat_ab12cd…) was revoked; create a new one at https://berth.example/#/tokens (token_revoked); then run 'berth login https://berth.example'",
    );
  });
});

describe("SSE parsing", () => {
  it("yields events split across chunks, with ids, skipping comments", async () => {
    const chunks = [
      "retry: 2000\n\n: keep",
      "alive\n\nid: 3\nevent: line\nda",
      'ta: {"seq":3}\n\nevent: end\ndata: {}\n\n',
    ];
    const body = new ReadableStream<Uint8Array<ArrayBuffer>>({
      start(c) {
        for (const s of chunks) c.enqueue(new TextEncoder().encode(s) as Uint8Array<ArrayBuffer>);
        c.close();
      },
    });
    const events = [];
    for await (const e of sseEvents(body)) events.push(e);
    expect(events).toEqual([
      { event: "line", id: "3", data: '{"seq":3}' },
      { event: "end", id: undefined, data: "{}" },
    ]);
  });
});

/** A control plane whose every request `handle` answers (the n-th, 1-based), on a loopback port. */
async function fakeControlPlane(handle: (req: IncomingMessage, res: ServerResponse, n: number) => void) {
  let n = 0;
  const server = createServer((req, res) => handle(req, res, ++n));
  await new Promise<void>((r) => server.listen(0, "127.0.0.1", r));
  return {
    url: `http://127.0.0.1:${(server.address() as AddressInfo).port}`,
    close: () => {
      server.closeAllConnections();
      return new Promise((r) => server.close(r));
    },
  };
}

const sseLine = (seq: number, message: string) =>
  `id: ${seq}\nevent: line\ndata: ${JSON.stringify({ seq, at: "", level: "info", stage: null, message })}\n\n`;

describe("polling", () => {
  it("waits out a control plane that restarts: refused connections and a proxy's 502-504", async () => {
    // Its first answers are a proxy's while it restarts; then it is back.
    const cp = await fakeControlPlane((req, res, n) => {
      req.resume();
      if (n <= 3)
        res.writeHead([502, 503, 504][n - 1]!, { "content-type": "text/html" }).end("<h1>Bad Gateway</h1>");
      else res.writeHead(200, { "content-type": "application/json" }).end('{"workspace":{"state":"ready"}}');
    });
    try {
      const api = new ApiClient(cp.url, "t");
      expect(await api.poll("/api/v1/workspaces/w1")).toEqual({ workspace: { state: "ready" } });
    } finally {
      await cp.close();
    }
    // Nothing listens at all (the process is down): retried until the patience runs out, then it stands.
    const gone = new ApiClient(cp.url, "t");
    await expect(gone.poll("/api/v1/workspaces/w1", 600)).rejects.toMatchObject({
      exitCode: Exit.UNREACHABLE,
      transient: true,
    });
  });

  it("takes any other answer as the answer, at once", async () => {
    let requests = 0;
    const cp = await fakeControlPlane((req, res) => {
      req.resume();
      requests++;
      res.writeHead(404, { "content-type": "application/json" });
      res.end('{"error":{"code":"not_found","message":"no such workspace"}}');
    });
    try {
      await expect(new ApiClient(cp.url, "t").poll("/api/v1/workspaces/w1")).rejects.toMatchObject({
        exitCode: Exit.NOT_FOUND,
      });
      expect(requests).toBe(1);
    } finally {
      await cp.close();
    }
  });
});

describe("a URL that is not a control plane", () => {
  it("is said to be one, not a crash with a stack trace", async () => {
    // A web server that answers every path with a page (a typo in the URL, a proxy's sign-in page).
    const site = await fakeControlPlane((_req, res) =>
      res.writeHead(200, { "content-type": "text/html" }).end("<!doctype html><title>Welcome</title>"),
    );
    vi.stubEnv("BERTH_TOKEN", "berth_pat_x");
    vi.stubEnv("XDG_CONFIG_HOME", mkdtempSync(join(tmpdir(), "berth-cred-")));
    try {
      let stderr = "";
      const err = new PassThrough();
      err.on("data", (d) => (stderr += d));
      const io = { stdout: new PassThrough(), stderr: err, stdin: new PassThrough() };
      const code = await runClient(["login", site.url], io as unknown as Parameters<typeof runClient>[1]);
      expect(code).toBe(Exit.FAILED);
      expect(stderr).toContain(`${site.url}/api/v1/auth/config answered with text/html, not JSON`);
      expect(readCredentials()).toBeNull();
    } finally {
      vi.unstubAllEnvs();
      await site.close();
    }
  });
});

/** The client's io with stderr captured as it is written (synchronously: `berth` exits once runClient resolves). */
function capturedIo(): { io: Parameters<typeof runClient>[1]; stderr: () => string } {
  let stderr = "";
  const io = {
    stdout: new PassThrough(),
    stderr: {
      write: (s: string) => {
        stderr += s;
        return true;
      },
    },
    stdin: new PassThrough(),
  };
  return { io: io as unknown as Parameters<typeof runClient>[1], stderr: () => stderr };
}

describe("login", () => {
  it("refuses a token with a line break or a character no header can carry, without printing it", async () => {
    vi.stubEnv("XDG_CONFIG_HOME", mkdtempSync(join(tmpdir(), "berth-cred-")));
    try {
      // A file piped in with a second line, and the shortened form the tokens page lists.
      for (const token of ["berth_pat_SECRET1\n# work laptop", "berth_pat_SECRET2…"]) {
        vi.stubEnv("BERTH_TOKEN", token);
        const { io, stderr } = capturedIo();
        const code = await runClient(["login", "http://127.0.0.1:1"], io).catch(
          (err: Error) => `threw: ${err.stack}`,
        );
        expect(String(code)).not.toContain("SECRET");
        expect(code).toBe(Exit.USAGE);
        expect(stderr()).toContain("not a whole API token");
        expect(stderr()).not.toContain("SECRET");
      }
    } finally {
      vi.unstubAllEnvs();
    }
  });
});

describe("the wake question", () => {
  it("exits 130 on Ctrl-C and wakes nothing", async () => {
    const asked: string[] = [];
    const cp = await fakeControlPlane((req, res) => {
      req.resume();
      asked.push(`${req.method} ${req.url}`);
      const json = (body: unknown) =>
        res.writeHead(200, { "content-type": "application/json" }).end(JSON.stringify(body));
      const box = { id: "w1", name: "box", state: "hibernated", createdAt: "" };
      if (req.url === "/api/v1/workspaces") json({ workspaces: [box] });
      else if (req.url === "/api/v1/workspaces/w1") json({ workspace: box });
      else res.writeHead(404).end();
    });
    const config = mkdtempSync(join(tmpdir(), "berth-cred-"));
    writeCredentials({ url: cp.url, token: "t" }, { XDG_CONFIG_HOME: config });
    vi.stubEnv("XDG_CONFIG_HOME", config);
    try {
      // A terminal on both sides: readline then reads keys, and Ctrl-C arrives as the byte 0x03.
      const tty = <T extends object>(stream: T) =>
        Object.assign(stream, { isTTY: true, columns: 80, setRawMode: () => {} });
      const stdin = tty(new PassThrough());
      const errors = tty(new PassThrough());
      let written = "";
      errors.on("data", (d) => (written += d));
      const stderr = () => written;
      const io = { stdout: new PassThrough(), stderr: errors, stdin } as unknown as Parameters<
        typeof runClient
      >[1];
      const running = runClient(["attach", "box"], io);
      await waitFor("the question", () => stderr().includes("Wake it? [Y/n]"));
      stdin.write("\u0003");
      expect(await running).toBe(Exit.INTERRUPTED);
      expect(stderr()).toContain("interrupted; nothing was changed");
      expect(asked.some((r) => r.startsWith("POST"))).toBe(false);
    } finally {
      vi.unstubAllEnvs();
      await cp.close();
    }
  });
});

describe("preview open", () => {
  it("prints the sign-in URL before returning when no browser opener exists (a server over SSH)", async () => {
    const cp = await fakeControlPlane((req, res) => {
      req.resume();
      const json = (body: unknown) =>
        res.writeHead(200, { "content-type": "application/json" }).end(JSON.stringify(body));
      if (req.url === "/api/v1/workspaces")
        json({ workspaces: [{ id: "w1", name: "box", state: "ready", createdAt: "" }] });
      else if (req.url === "/api/v1/workspaces/w1/previews")
        json({ previews: [{ id: "p1", port: 3000, source: "detected", framework: null, share: "off" }] });
      else if (req.url === "/api/v1/previews/p1/open")
        json({ url: "https://p1.preview.example/__berth/auth?c=x" });
      else res.writeHead(404).end();
    });
    const config = mkdtempSync(join(tmpdir(), "berth-cred-"));
    writeCredentials({ url: cp.url, token: "t" }, { XDG_CONFIG_HOME: config });
    vi.stubEnv("XDG_CONFIG_HOME", config);
    vi.stubEnv("PATH", mkdtempSync(join(tmpdir(), "berth-no-opener-"))); // no xdg-open, no open
    try {
      // Written synchronously: `berth` exits as soon as runClient resolves, so what comes later is lost.
      const { io, stderr } = capturedIo();
      const code = await runClient(["preview", "open", "box", "3000"], io);
      expect(code).toBe(Exit.OK);
      expect(stderr()).toContain("https://p1.preview.example/__berth/auth?c=x");
    } finally {
      vi.unstubAllEnvs();
      await cp.close();
    }
  });
});

describe("following a build", () => {
  it("resumes after the control plane went away for a moment (refused, then a proxy's 502)", async () => {
    const lastEventIds: string[] = [];
    const cp = await fakeControlPlane((req, res, n) => {
      lastEventIds.push(String(req.headers["last-event-id"]));
      if (n === 1) {
        // The first line, then the control plane restarts: the stream breaks off ...
        res.writeHead(200, { "content-type": "text/event-stream" });
        res.write(sseLine(1, "first"), () => res.destroy());
      } else if (n === 2) {
        req.socket.destroy(); // ... the reconnect finds nobody there ...
      } else if (n === 3) {
        res.writeHead(502, { "content-type": "text/html" }).end("<html>Bad Gateway</html>"); // ... or a proxy
      } else {
        res.writeHead(200, { "content-type": "text/event-stream" });
        res.end(`${sseLine(2, "second")}event: end\ndata: {"status":"succeeded"}\n\n`);
      }
    });
    try {
      const out = new PassThrough();
      let log = "";
      out.on("data", (d) => (log += d));
      const status = await followBuild(
        new ApiClient(cp.url, "t"),
        "b1",
        out as unknown as NodeJS.WriteStream,
      );
      expect(status).toBe("succeeded");
      expect(log).toBe("first\nsecond\n");
      expect(lastEventIds).toEqual(["0", "1", "1", "1"]);
    } finally {
      await cp.close();
    }
  });
});

describe("export", () => {
  it("leaves the file 0600 even when one readable by others was there", async () => {
    const snapshot = "abcd1234".repeat(8);
    const cp = await fakeControlPlane((req, res) => {
      const json = (body: unknown) =>
        res.writeHead(200, { "content-type": "application/json" }).end(JSON.stringify(body));
      if (req.url === "/api/v1/workspaces")
        json({ workspaces: [{ id: "w1", name: "box", state: "hibernated", createdAt: "" }] });
      else if (req.url === "/api/v1/workspaces/w1/backups")
        json({
          runs: [],
          snapshots: [{ id: snapshot, shortId: snapshot.slice(0, 8), time: "", tags: [], trigger: null }],
          repositoryError: null,
        });
      else if (req.url === `/api/v1/workspaces/w1/backups/${snapshot}/export`)
        res.writeHead(200, { "content-type": "application/gzip" }).end("the workspace's files");
      else res.writeHead(404).end();
    });
    try {
      const file = join(mkdtempSync(join(tmpdir(), "berth-export-")), "backup.tar.gz");
      writeFileSync(file, "an older export", { mode: 0o644 });
      const io = { stdout: new PassThrough(), stderr: new PassThrough() } as unknown as {
        stdout: NodeJS.WriteStream;
        stderr: NodeJS.WriteStream;
      };
      const code = await exportCommand(["box", "abcd1234", "-o", file], io, {
        connect: () => new ApiClient(cp.url, "t"),
        usage: () => new ClientError(Exit.USAGE, "usage"),
      });
      expect(code).toBe(Exit.OK);
      expect(readFileSync(file, "utf8")).toBe("the workspace's files");
      expect(statSync(file).mode & 0o777).toBe(0o600);
    } finally {
      await cp.close();
    }
  });
});

describe("backup restore", () => {
  it("waits for this restore's outcome, not an earlier one's, whatever this machine's clock says", async () => {
    // The control plane's clock is 10 minutes ahead of this machine's; an earlier restore of the same
    // workspace failed 2 minutes ago (server time), i.e. "in 8 minutes" by the client's clock.
    const serverNow = () => new Date(Date.now() + 10 * 60_000);
    const snapshot = "abcd1234".repeat(8);
    const earlier = {
      workspaceId: "w1",
      kind: "restore_failed",
      body: "The restore failed: an earlier one",
      createdAt: new Date(serverNow().getTime() - 2 * 60_000).toISOString(),
    };
    let restoredAt: Date | null = null;
    let inboxReads = 0;
    const cp = await fakeControlPlane((req, res) => {
      req.resume();
      const json = (body: unknown) =>
        res.writeHead(200, { "content-type": "application/json" }).end(JSON.stringify(body));
      const run = (status: string) => ({ id: "r1", status, createdAt: restoredAt, snapshotId: "ffff0000" });
      if (req.url === "/api/v1/workspaces")
        json({ workspaces: [{ id: "w1", name: "box", state: "ready", createdAt: "" }] });
      else if (req.url === "/api/v1/workspaces/w1/backups")
        json({
          runs: [],
          snapshots: [{ id: snapshot, shortId: "abcd1234", time: "" }],
          repositoryError: null,
        });
      else if (req.url === `/api/v1/workspaces/w1/backups/${snapshot}/restore`) {
        restoredAt = serverNow();
        json({ safetyBackup: run("pending") });
      } else if (req.url === "/api/v1/workspaces/w1/backups/runs/r1") json({ backup: run("succeeded") });
      else if (req.url === "/api/v1/notifications") {
        // This restore finishes after the client first looked.
        const done = { workspaceId: "w1", kind: "restore_done", body: "Snapshot abcd1234 is restored" };
        json({
          notifications: ++inboxReads > 1 ? [{ ...done, createdAt: serverNow() }, earlier] : [earlier],
        });
      } else res.writeHead(404).end();
    });
    try {
      let stderr = "";
      const err = new PassThrough();
      err.on("data", (d) => (stderr += d));
      const io = { stdout: new PassThrough(), stderr: err } as unknown as {
        stdout: NodeJS.WriteStream;
        stderr: NodeJS.WriteStream;
      };
      const code = await backupCommand(["restore", "box", "abcd1234", "--yes"], io, {
        connect: () => new ApiClient(cp.url, "t"),
        usage: () => new ClientError(Exit.USAGE, "usage"),
      });
      expect(code).toBe(Exit.OK);
      expect(stderr).toContain("box: restored all of user/ from abcd1234");
    } finally {
      await cp.close();
    }
  });
});

describe("completion", () => {
  it("is valid bash and zsh", () => {
    execFileSync("bash", ["-n"], { input: completionScript("bash") });
    try {
      execFileSync("zsh", ["-n"], { input: completionScript("zsh") });
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code !== "ENOENT") throw err; // zsh not installed here
    }
  });

  it("completes commands, subcommands and workspace names", () => {
    const script = completionScript("bash");
    const words = (prev: string) =>
      execFileSync("bash", ["-c", `${script}\nberth() { echo my-box; }\n_berth_words "${prev}"`], {
        encoding: "utf8",
      }).split("\n");
    expect(words("")).toEqual(expect.arrayContaining(["login", "ws", "attach", "preview", "completion"]));
    expect(words("ws")).toEqual(expect.arrayContaining(["list", "create", "hibernate", "wake", "rm"]));
    expect(words("attach")).toContain("my-box");
    expect(words("ws wake")).toContain("my-box");
    expect(words("")).toEqual(expect.arrayContaining(["backup", "export"]));
    expect(words("backup")).toEqual(expect.arrayContaining(["list", "create", "restore"]));
    expect(words("backup restore")).toContain("my-box");
    expect(words("export")).toContain("my-box");
  });

  it("completes one word per candidate in zsh, which does not split unquoted variables", (ctx) => {
    try {
      execFileSync("zsh", ["--version"]);
    } catch {
      ctx.skip(); // zsh not installed here
    }
    const script = completionScript("zsh");
    const words = (prev: string) =>
      execFileSync(
        "zsh",
        [
          "-c",
          `compdef() { :; }\n${script}\nberth() { echo my-box; echo other-box; }\n_berth_words "${prev}"`,
        ],
        { encoding: "utf8" },
      )
        .split("\n")
        .filter(Boolean);
    expect(words("ws")).toEqual(["list", "create", "hibernate", "wake", "rm"]);
    expect(words("")).toEqual(expect.arrayContaining(["login", "ws", "attach", "--help"]));
    expect(words("attach")).toEqual(["my-box", "other-box"]);
  });
});
