import { fileURLToPath } from "node:url";
import { defineConfig } from "vite";

// The control plane serves dist/ itself (runtime/api/routes/web-client.ts); hashed assets are cached forever.
export default defineConfig({
  root: fileURLToPath(new URL(".", import.meta.url)),
  base: "/",
  build: {
    outDir: "dist",
    emptyOutDir: true,
    assetsDir: "assets",
    sourcemap: true,
    target: "es2022",
  },
  oxc: { jsx: { runtime: "automatic", importSource: "preact" } },
});
