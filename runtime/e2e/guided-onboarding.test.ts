/**
 * Issue 20 end to end on this machine (real control plane, Postgres, local driver, box agent, tmux, git):
 * the secrets store (write-only, audited, per workspace), the onboarding interview through the API writing
 * the project's files on the volume (and keeping the user's edits on a re-run), cloning from a local bare
 * repository, and a guided session starting a scripted `claude` in the project with the task and the
 * secrets. Then the secret values are looked for in four places: every API response after the writes,
 * every log line (control plane and agent), every process's command line while sessions start, and every
 * file under the data directories. None may hold one.
 */
import { execFileSync } from "node:child_process";
import { randomBytes } from "node:crypto";
import {
  existsSync,
  lstatSync,
  mkdtempSync,
  readdirSync,
  readFileSync,
  rmSync,
  writeFileSync,
} from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { Writable } from "node:stream";
import { afterAll, describe, expect, it } from "vitest";
import { watchCmdlines } from "../../box/testing/cmdline-watch.ts";
import { claudeRuns, makeFakeClaude } from "../../box/testing/fake-claude.ts";
import { upsertUser } from "../domain/identity/actor.ts";
import { createLogger } from "../platform/logger.ts";
import { insertWorkspace } from "../test/fixtures.ts";
import { createReadyWorkspace, startLocalControlPlane } from "../test/local-control-plane.ts";
import { waitFor } from "../test/wait.ts";

const fake = makeFakeClaude();
const logLines: string[] = [];
const capture = new Writable({
  write(chunk, _enc, done) {
    logLines.push(String(chunk));
    done();
  },
});
const scratch = mkdtempSync(join(tmpdir(), "berth-e2e-git-"));
afterAll(() => rmSync(scratch, { recursive: true, force: true }));

const KEY_1 = `sk-ant-first-${randomBytes(12).toString("hex")}`;
const KEY_2 = `sk-ant-second-${randomBytes(12).toString("hex")}`;
const GH = `ghp_${randomBytes(16).toString("hex")}`;
const SECRETS = [KEY_1, KEY_2, GH];

describe("guided mode, onboarding and the secrets store, end to end", async () => {
  const cp = await startLocalControlPlane(
    {},
    {
      start: { logger: createLogger("debug", capture) },
      agentEnv: { PATH: `${fake.binDir}:${process.env.PATH}` },
    },
  );
  const token = cp.localToken;
  const { db, pool } = cp.deps.database;
  /** Every response body after the first secret was written, for the final check. */
  const responses: string[] = [];
  const call = async (path: string, init: { method?: string; json?: unknown } = {}) => {
    const res = await cp.api(path, { token, ...init });
    const text = await res.text();
    responses.push(text);
    return { status: res.status, body: text ? JSON.parse(text) : null };
  };
  const workspaceId = await createReadyWorkspace(cp, "guided");
  const volume = join(cp.workspacesRoot, workspaceId, "volume");
  const project = join(volume, "user/projects/app");
  const secretsPath = `/api/v1/workspaces/${workspaceId}/secrets`;

  it("refuses bad names, reserved names and oversized values, naming the field", async () => {
    const bad = await call(`${secretsPath}/lower_case`, { method: "PUT", json: { value: "x" } });
    expect(bad.status).toBe(400);
    expect(bad.body.error.message).toMatch(/^path\.name: must match/);
    const reserved = await call(`${secretsPath}/PATH`, { method: "PUT", json: { value: "x" } });
    expect(reserved.status).toBe(400);
    expect(reserved.body.error.message).toMatch(/^path\.name: is reserved/);
    const big = await call(`${secretsPath}/BIG`, {
      method: "PUT",
      json: { value: "x".repeat(8 * 1024 + 1) },
    });
    expect(big.status).toBe(400);
    expect(big.body.error.message).toMatch(/^body\.value: must be at most 8192 bytes/);
    expect((await call(secretsPath)).body.secrets).toEqual([]);
  });

  it("answers 404 for someone else's workspace", async () => {
    const other = await upsertUser(cp.deps.store, "user_someone_else");
    const theirs = await insertWorkspace(db, other.userId, { name: "theirs", state: "ready" });
    for (const req of [
      call(`/api/v1/workspaces/${theirs.id}/secrets/TOKEN`, { method: "PUT", json: { value: "v" } }),
      call(`/api/v1/workspaces/${theirs.id}/secrets`),
      call(`/api/v1/workspaces/${theirs.id}/secrets/TOKEN`, { method: "DELETE" }),
    ])
      expect((await req).status).toBe(404);
  });

  it("stores secrets write-only and audits every change by name", async () => {
    expect(
      (await call(`${secretsPath}/ANTHROPIC_API_KEY`, { method: "PUT", json: { value: KEY_1 } })).status,
    ).toBe(201);
    expect((await call(`${secretsPath}/GITHUB_TOKEN`, { method: "PUT", json: { value: GH } })).status).toBe(
      201,
    );
    const list = await call(secretsPath);
    expect(list.body.secrets.map((s: { name: string }) => s.name)).toEqual([
      "ANTHROPIC_API_KEY",
      "GITHUB_TOKEN",
    ]);
    expect(Object.keys(list.body.secrets[0]).sort()).toEqual(["createdAt", "name", "updatedAt"]);
    const { rows } = await pool.query(
      "SELECT action, details FROM audit_log WHERE target_id = $1 AND action LIKE 'user_secret.%' ORDER BY id",
      [workspaceId],
    );
    expect(rows.map((r) => [r.action, r.details.name])).toEqual([
      ["user_secret.create", "ANTHROPIC_API_KEY"],
      ["user_secret.create", "GITHUB_TOKEN"],
    ]);
    const sealed = await pool.query("SELECT sealed FROM user_secrets WHERE workspace_id = $1", [workspaceId]);
    for (const r of sealed.rows) expect(Buffer.from(r.sealed).toString("latin1")).not.toContain("sk-ant");
  });

  const answers = {
    project: { name: "app", source: "new" },
    goal: "A todo app with tags",
    stack: "TypeScript, Node 24, vitest",
    runCommand: "npm run dev",
    testCommand: "npm test",
    conventions: "Small commits; tests first.",
    permissions: { edit: true, commands: "project", git: "commit", web: false },
    personal: "Answer briefly. British spelling.",
  };
  const onboardAndWait = async (body: unknown) => {
    const started = await call(`/api/v1/workspaces/${workspaceId}/onboarding`, {
      method: "POST",
      json: body,
    });
    expect(started.status).toBe(202);
    return waitFor(
      "the agent to apply the onboarding",
      async () => {
        const { body: s } = await call(
          `/api/v1/workspaces/${workspaceId}/onboarding/${started.body.onboarding.id}`,
        );
        return s.onboarding.state === "pending" ? null : s.onboarding;
      },
      30_000,
    );
  };

  it("drafts the files for review, then the agent writes the reviewed drafts on the volume", async () => {
    const { status, body } = await call(`/api/v1/workspaces/${workspaceId}/onboarding/draft`, {
      method: "POST",
      json: { answers },
    });
    expect(status).toBe(200);
    const draft = body.draft;
    expect(draft.claudeMd).toContain("@.claude/berth-generated.md");
    expect(draft.generated).toContain("A todo app with tags");
    expect(draft.permissions.allow).toEqual(
      expect.arrayContaining(["Edit", "Bash(npm test:*)", "Bash(git commit:*)"]),
    );
    expect(draft.permissions.deny).toEqual(expect.arrayContaining(["Bash(git push:*)", "WebFetch"]));
    draft.generated += "\n## Reviewed\n\nEdited in review.\n";

    const done = await onboardAndWait({ answers, draft });
    expect(done).toMatchObject({ state: "done", error: null, project: "app" });
    expect(readFileSync(join(project, "CLAUDE.md"), "utf8")).toBe(draft.claudeMd);
    expect(readFileSync(join(project, ".claude/berth-generated.md"), "utf8")).toContain("Edited in review.");
    const settings = JSON.parse(readFileSync(join(project, ".claude/settings.json"), "utf8"));
    expect(settings.permissions).toEqual(draft.permissions);
    // Local mode points Claude Code at user/.claude (CLAUDE_CONFIG_DIR): its .claude.json holds trust there.
    const trust = JSON.parse(readFileSync(join(volume, "user/.claude/.claude.json"), "utf8"));
    expect(trust.projects[project].hasTrustDialogAccepted).toBe(true);
    expect(trust.projects[join(volume, "user/home/projects/app")].hasTrustDialogAccepted).toBe(true);
    expect(readFileSync(join(volume, "user/.claude/berth-preferences.md"), "utf8")).toContain(
      "British spelling",
    );
    expect(readFileSync(join(volume, "user/.claude/CLAUDE.md"), "utf8")).toContain("@berth-preferences.md");
    const audit = await pool.query(
      "SELECT details FROM audit_log WHERE target_id = $1 AND action = 'workspace.onboard'",
      [workspaceId],
    );
    expect(audit.rows.map((r) => r.details)).toEqual([
      expect.objectContaining({ project: "app", source: "new" }),
    ]);
  });

  it("keeps the user's edits when the interview runs again", async () => {
    writeFileSync(
      join(project, "CLAUDE.md"),
      "# app\n\n@.claude/berth-generated.md\n\nMy rule: tabs, not spaces.\n",
    );
    const done = await onboardAndWait({
      answers: {
        ...answers,
        project: { name: "app", source: "existing" },
        goal: "A todo app with tags and due dates",
      },
    });
    expect(done.state).toBe("done");
    expect(readFileSync(join(project, "CLAUDE.md"), "utf8")).toContain("My rule: tabs, not spaces.");
    expect(readFileSync(join(project, ".claude/berth-generated.md"), "utf8")).toContain("due dates");
  });

  it("clones a git repository, and a bad URL or a failed clone is a clear error with no folder left", async () => {
    const src = join(scratch, "src");
    execFileSync("git", ["init", "-q", src]);
    writeFileSync(join(src, "README.md"), "from the bare repo\n");
    const git = ["-C", src, "-c", "user.name=t", "-c", "user.email=t@example.org"];
    execFileSync("git", [...git, "add", "."]);
    execFileSync("git", [...git, "commit", "-q", "-m", "init"]);
    const bare = join(scratch, "origin.git");
    execFileSync("git", ["clone", "-q", "--bare", src, bare]);

    const cloned = await onboardAndWait({
      answers: { ...answers, project: { name: "cloned", source: "git", url: bare } },
    });
    expect(cloned.state).toBe("done");
    expect(readFileSync(join(volume, "user/projects/cloned/README.md"), "utf8")).toBe("from the bare repo\n");

    const refused = await call(`/api/v1/workspaces/${workspaceId}/onboarding`, {
      method: "POST",
      json: { answers: { ...answers, project: { name: "evil", source: "git", url: "ext::sh -c id" } } },
    });
    expect(refused.status).toBe(400);
    expect(refused.body.error.message).toMatch(/^body\.answers\.project\.url: /);

    const failed = await onboardAndWait({
      answers: { ...answers, project: { name: "missing", source: "git", url: join(scratch, "nope.git") } },
    });
    expect(failed.state).toBe("failed");
    expect(failed.error).toMatch(/git clone failed/);
    expect(readdirSync(join(volume, "user/projects")).sort()).toEqual(["app", "cloned"]);
  });

  const socket = () => cp.agentState(workspaceId)!.tmuxSocket;
  const watch = watchCmdlines(() => SECRETS);

  it("starts a guided session's Claude in the project, on the task, with the secrets in its environment", async () => {
    const task = "Add tags to the todo app; keep the tests green";
    const res = await call(`/api/v1/workspaces/${workspaceId}/sessions`, {
      method: "POST",
      json: { name: "guided", mode: "guided", project: "app", task },
    });
    expect(res.status).toBe(201);
    expect(res.body.session).toMatchObject({ mode: "guided", project: "app", task });
    const [run] = await waitFor(
      "the scripted claude to start",
      () => {
        const runs = claudeRuns(fake);
        return runs.length ? runs : null;
      },
      30_000,
    );
    expect(run!.argv).toEqual([task]);
    expect(run!.cwd).toBe(join(volume, "user/home/projects/app"));
    expect(run!.env.ANTHROPIC_API_KEY).toBe(KEY_1);
    expect(run!.env.GITHUB_TOKEN).toBe(GH);
  });

  it("gives the next session a changed secret without a rebuild", async () => {
    expect(
      (await call(`${secretsPath}/ANTHROPIC_API_KEY`, { method: "PUT", json: { value: KEY_2 } })).status,
    ).toBe(200);
    expect((await call(`${secretsPath}/GITHUB_TOKEN`, { method: "DELETE" })).status).toBe(204);
    expect(
      (await call(`/api/v1/workspaces/${workspaceId}/sessions`, { method: "POST", json: { name: "second" } }))
        .status,
    ).toBe(201);
    const run = await waitFor(
      "claude in the second session",
      () => claudeRuns(fake).find((r) => r.argv.length === 0),
      30_000,
    );
    expect(run.cwd).toBe(join(volume, "user/home/projects"));
    expect(run.env.ANTHROPIC_API_KEY).toBe(KEY_2);
    expect(run.env.GITHUB_TOKEN).toBeUndefined();
    const { rows } = await pool.query(
      "SELECT action FROM audit_log WHERE target_id = $1 AND action LIKE 'user_secret.%' ORDER BY id",
      [workspaceId],
    );
    expect(rows.map((r) => r.action).slice(-2)).toEqual(["user_secret.update", "user_secret.delete"]);
  });

  it("never shows a secret in an API response, a log line, a command line or a file under the data dirs", async () => {
    await watch.stop();
    expect(watch.scans).toBeGreaterThan(0);
    expect(watch.hits).toEqual([]);
    expect(
      execFileSync("tmux", ["-S", socket(), "list-sessions", "-F", "#{session_name}"], { encoding: "utf8" }),
    ).toContain("second");
    for (const body of responses) for (const s of SECRETS) expect(body).not.toContain(s);
    expect(logLines.length).toBeGreaterThan(0);
    for (const line of logLines) for (const s of SECRETS) expect(line).not.toContain(s);
    const files: string[] = [];
    const walk = (dir: string) => {
      for (const name of readdirSync(dir)) {
        const p = join(dir, name);
        const st = lstatSync(p);
        if (st.isDirectory()) walk(p);
        else if (st.isFile()) files.push(p);
      }
    };
    walk(cp.workspacesRoot);
    walk(cp.deps.config.dataDir);
    expect(files.some((f) => f.endsWith("agent.log"))).toBe(true);
    for (const f of files) {
      const content = readFileSync(f).toString("latin1");
      for (const s of SECRETS) expect(content.includes(s), `${f} holds a secret`).toBe(false);
    }
    expect(existsSync(join(volume, "user/projects/app/CLAUDE.md"))).toBe(true);
  });
});
