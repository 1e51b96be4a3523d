// A scripted stand-in for the `pulumi` CLI, for driver tests where no real CLI exists.
//
// It keeps its state in `$PULUMI_HOME/fake/` (the driver passes its `pulumiHome` to every command, so each
// test gets its own): `calls.jsonl` records every invocation (argv, cwd and the files in it, the relevant
// environment, timings, signals); `stacks/<name>.json` holds a stack's outputs; `scenario.json` scripts the
// answers. A scripted response is looked up as `responses["<command>@<stack>"]` then `responses["<command>"]`;
// an array answers the n-th call of that command on that stack with its n-th element (the last one repeats).
// Response fields: exitCode, stderr, stdout, sleepMs, hang (until SIGINT), holdUntil (waits until a file of
// that name exists in $PULUMI_HOME/fake/, which FakePulumi.release creates), events (engine events, streamed to
// --event-log over gRPC or into the file), outputs + secretOutputs (stored for `stack output`).
// It never contacts the --client language server, so the inline program does not run here.
import {
  appendFileSync,
  existsSync,
  mkdirSync,
  readdirSync,
  readFileSync,
  rmSync,
  writeFileSync,
} from "node:fs";
import { createRequire } from "node:module";
import { join } from "node:path";

const argv = process.argv.slice(2);
if (argv[0] === "version") {
  process.stdout.write("v3.270.0\n");
  process.exit(0);
}

const home = process.env.PULUMI_HOME;
if (!home) {
  process.stderr.write("fake pulumi: PULUMI_HOME is not set\n");
  process.exit(2);
}
const dir = join(home, "fake");
const stacksDir = join(dir, "stacks");
mkdirSync(stacksDir, { recursive: true });

const positional = argv.filter(
  (a, i) =>
    !a.startsWith("-") &&
    !(argv[i - 1] ?? "").match(
      /^--(stack|exec-kind|event-log|policy-pack|message|parallel|color|secrets-provider|page-size|page)$/,
    ),
);
const command =
  positional[0] === "stack" || positional[0] === "plugin"
    ? `${positional[0]} ${positional[1]}`
    : positional[0];
const flag = (name) => {
  const i = argv.indexOf(name);
  if (i >= 0) return argv[i + 1];
  const eq = argv.find((a) => a.startsWith(`${name}=`));
  return eq ? eq.slice(name.length + 1) : undefined;
};
const stack =
  flag("--stack") ?? (command === "stack init" || command === "stack rm" ? positional[2] : undefined);

const scenario = existsSync(join(dir, "scenario.json"))
  ? JSON.parse(readFileSync(join(dir, "scenario.json"), "utf8"))
  : {};
const callsFile = join(dir, "calls.jsonl");
const record = (entry) => appendFileSync(callsFile, `${JSON.stringify({ pid: process.pid, ...entry })}\n`);
const previous = existsSync(callsFile)
  ? readFileSync(callsFile, "utf8")
      .split("\n")
      .filter(Boolean)
      .map((l) => JSON.parse(l))
  : [];
const nth = previous.filter((c) => c.kind === "call" && c.command === command && c.stack === stack).length;

const env = Object.fromEntries(
  Object.entries(process.env).filter(
    ([k]) => /^(PULUMI_|HCLOUD_|CLOUDFLARE_|TAILSCALE_|AWS_)/.test(k) || k === "PATH",
  ),
);
record({
  kind: "call",
  command,
  stack,
  argv,
  cwd: process.cwd(),
  files: readdirSync(process.cwd()),
  env,
  t: Date.now(),
});

let response = scenario.responses?.[`${command}@${stack}`] ?? scenario.responses?.[command] ?? {};
if (Array.isArray(response)) response = response[Math.min(nth, response.length - 1)] ?? {};

const stackFile = (name) => join(stacksDir, `${name}.json`);
const exists = (name) => existsSync(stackFile(name));
const load = (name) => JSON.parse(readFileSync(stackFile(name), "utf8"));
const save = (name, state) => writeFileSync(stackFile(name), JSON.stringify(state));

function finish(code, stdout = "", stderr = "") {
  if (stdout) process.stdout.write(stdout);
  if (stderr) process.stderr.write(stderr);
  record({ kind: "exit", command, stack, code, t: Date.now() });
  process.exitCode = code;
}

async function streamEvents(events) {
  const target = flag("--event-log");
  if (!target || events.length === 0) return;
  const lines = events.map((e, i) =>
    JSON.stringify({ sequence: i + 1, timestamp: Math.floor(Date.now() / 1000), ...e }),
  );
  if (!target.startsWith("tcp://")) {
    appendFileSync(target, `${lines.join("\n")}\n`);
    return;
  }
  // The transport of CLIs after 3.205: a client stream of EventRequest to the SDK's Events service.
  const require = createRequire(import.meta.url);
  const grpc = require("@grpc/grpc-js");
  const { EventsClient } = require("@pulumi/pulumi/proto/events_grpc_pb");
  const { EventRequest } = require("@pulumi/pulumi/proto/events_pb");
  const client = new EventsClient(target.slice("tcp://".length), grpc.credentials.createInsecure());
  await new Promise((resolve, reject) => {
    const call = client.streamEvents((err) => (err ? reject(err) : resolve()));
    for (const line of lines) {
      const req = new EventRequest();
      req.setEvent(line);
      call.write(req);
    }
    call.end();
  });
  client.close();
}

const sleep = (ms) => new Promise((r) => setTimeout(r, ms));

async function main() {
  if (response.hang) {
    await new Promise((resolve) => {
      process.once("SIGINT", () => {
        record({ kind: "signal", command, stack, signal: "SIGINT", t: Date.now() });
        resolve();
      });
      setInterval(() => {}, 1000);
    });
    finish(255, "", "error: update canceled by SIGINT\n");
    process.exit();
  }
  if (response.sleepMs) await sleep(response.sleepMs);
  if (response.holdUntil) while (!existsSync(join(dir, response.holdUntil))) await sleep(10);
  const events = response.events ?? [];
  if (["up", "preview", "refresh", "destroy"].includes(command) && !events.some((e) => e.summaryEvent)) {
    events.push({
      summaryEvent: { maybeCorrupt: false, durationSeconds: 0, resourceChanges: {}, policyPacks: {} },
    });
  }
  await streamEvents(events);
  if (response.exitCode) return finish(response.exitCode, response.stdout ?? "", response.stderr ?? "");

  switch (command) {
    case "stack select":
      return exists(stack) ? finish(0) : finish(255, "", `error: no stack named '${stack}' found\n`);
    case "stack init":
      if (exists(stack)) return finish(255, "", `error: stack '${stack}' already exists\n`);
      save(stack, { outputs: {}, secretOutputs: [] });
      return finish(0, `Created stack '${stack}'\n`);
    case "stack rm":
      if (!exists(stack)) return finish(255, "", `error: no stack named '${stack}' found\n`);
      rmSync(stackFile(stack));
      return finish(0);
    case "stack ls": {
      const names = readdirSync(stacksDir).map((f) => f.replace(/\.json$/, ""));
      const list = names.map((name) => ({
        name,
        current: false,
        updateInProgress: false,
        resourceCount: Object.keys(load(name).outputs).length,
      }));
      return finish(0, JSON.stringify(list));
    }
    case "stack output": {
      if (!exists(stack)) return finish(255, "", `error: no stack named '${stack}' found\n`);
      const { outputs, secretOutputs } = load(stack);
      const show = argv.includes("--show-secrets");
      const shown = Object.fromEntries(
        Object.entries(outputs).map(([k, v]) => [k, !show && secretOutputs.includes(k) ? "[secret]" : v]),
      );
      return finish(0, JSON.stringify(shown));
    }
    case "stack history":
      return finish(
        0,
        JSON.stringify([
          {
            version: nth + 1,
            kind: "update",
            startTime: new Date().toISOString(),
            endTime: new Date().toISOString(),
            message: "",
            environment: {},
            config: {},
            result: "succeeded",
          },
        ]),
      );
    case "up":
    case "destroy": {
      if (!exists(stack)) return finish(255, "", `error: no stack named '${stack}' found\n`);
      const state = load(stack);
      if (command === "destroy") save(stack, { outputs: {}, secretOutputs: [] });
      else if (response.outputs)
        save(stack, { outputs: response.outputs, secretOutputs: response.secretOutputs ?? [] });
      return finish(
        0,
        response.stdout ?? `${command} done (${Object.keys(state.outputs).length} outputs before)\n`,
      );
    }
    default:
      // preview, refresh, cancel, plugin install: succeed with whatever was scripted.
      if (stack && !exists(stack) && command !== "plugin install") {
        return finish(255, "", `error: no stack named '${stack}' found\n`);
      }
      return finish(0, response.stdout ?? "");
  }
}

main().catch((err) => {
  record({ kind: "crash", message: String(err?.stack ?? err) });
  process.stderr.write(`fake pulumi crashed: ${err?.stack ?? err}\n`);
  process.exit(70);
});
