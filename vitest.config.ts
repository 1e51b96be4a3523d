import { configDefaults, defineConfig } from "vitest/config";

const ALL = "{runtime,stacks,box,infra,packer}/**/*.test.ts";
/**
 * End-to-end tests live in an `e2e/` directory (runtime/e2e, box/e2e, stacks/e2e, packer/e2e): the tests that
 * start a control plane, a box agent, tmux, Chromium, ttyd or the scripted pulumi CLI, or run the product's
 * programs as child processes. Everything else is a unit test: quick, and free to use the suite's Postgres.
 * `npm run test:unit` runs the unit project alone; `npm test` runs both.
 */
const E2E = "{runtime,stacks,box,infra,packer}/**/e2e/**/*.test.ts";

export default defineConfig({
  test: {
    // One Postgres for the whole run: the root's global setup runs once and what it provides reaches both
    // projects. (Inherited by a project, it would run again for each: hence `globalSetup: []` below.)
    globalSetup: ["runtime/test/global-setup.ts"],
    // Two cores: more workers only add contention with Postgres and tmux.
    maxWorkers: 2,
    testTimeout: 30_000,
    hookTimeout: 60_000,
    // expect.poll waits on a condition; its default of 1 s turned it into a speed target on a loaded two-core
    // machine (a fresh-clone run once saw a service worker's notification arrive later than that). The
    // same bound as test/wait.ts's waitFor.
    expect: { poll: { timeout: 30_000 } },
    projects: [
      {
        extends: true,
        test: {
          name: "unit",
          include: [ALL],
          exclude: [...configDefaults.exclude, E2E],
          globalSetup: [],
        },
      },
      {
        extends: true,
        test: {
          name: "e2e",
          include: [E2E],
          globalSetup: [],
          // Limits for a hang, not speed targets: a loaded two-core machine starts a control plane, agents,
          // tmux sessions and dozens of CLI processes slowly.
          testTimeout: 120_000,
          hookTimeout: 120_000,
        },
      },
    ],
  },
});
