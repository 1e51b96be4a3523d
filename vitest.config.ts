import { defineConfig } from "vitest/config";

export default defineConfig({
  test: {
    include: ["{runtime,stacks,box,infra,packer}/**/*.test.ts"],
    globalSetup: ["runtime/test/global-setup.ts"],
    // Two cores: more workers only add contention with Postgres and tmux.
    maxWorkers: 2,
    testTimeout: 30_000,
    hookTimeout: 60_000,
  },
});
