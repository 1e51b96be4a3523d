import { defineConfig } from "drizzle-kit";

export default defineConfig({
  dialect: "postgresql",
  schema: "./runtime/store/schema.ts",
  out: "./runtime/store/migrations",
});
