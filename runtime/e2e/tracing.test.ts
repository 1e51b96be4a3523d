/**
 * One trace from a user's request to the box checking in: `POST …/wake` (server span) → the build the
 * worker runs later (a child of the request, through `workspace_builds.trace_context`) → the real box
 * agent, started by the local driver with the build's `traceparent`, whose first heartbeat arrives in the
 * same trace. Spans go to an in-memory exporter.
 */
import { context, SpanKind, trace } from "@opentelemetry/api";
import { InMemorySpanExporter, type ReadableSpan } from "@opentelemetry/sdk-trace-base";
import { afterAll, describe, expect, it } from "vitest";
import { AGENT_API_PATHS } from "../../box/protocol.ts";
import { startTracing, tracer } from "../platform/tracing.ts";
import { createReadyWorkspace, startLocalControlPlane } from "../test/local-control-plane.ts";
import { waitFor } from "../test/wait.ts";

describe("tracing across the agent hop", async () => {
  const exporter = new InMemorySpanExporter();
  const tracing = startTracing({ exporter });
  afterAll(() => tracing.shutdown());
  const cp = await startLocalControlPlane();
  const { pool } = cp.deps.database;
  const post = (path: string) => cp.api(path, { method: "POST", token: cp.localToken });
  const state = async (id: string) =>
    (await pool.query("SELECT state FROM workspaces WHERE id = $1", [id])).rows[0].state;
  const spans = () => exporter.getFinishedSpans();
  const parentOf = (s: ReadableSpan) => s.parentSpanContext?.spanId;

  it("runs one trace from POST …/wake through the build to the agent's first heartbeat", async () => {
    const id = await createReadyWorkspace(cp, "traced");
    expect((await post(`/api/v1/workspaces/${id}/hibernate`)).status).toBe(202);
    await waitFor("hibernated", async () => (await state(id)) === "hibernated", 40_000);
    exporter.reset();

    expect((await post(`/api/v1/workspaces/${id}/wake`)).status).toBe(202);
    const wake = await waitFor("the wake request's span", () =>
      spans().find((s) => s.name === "POST /api/v1/workspaces/:id/wake"),
    );
    expect(wake.kind).toBe(SpanKind.SERVER);
    expect(wake.attributes["http.response.status_code"]).toBe(202);
    const traceId = wake.spanContext().traceId;

    // The request's own queries are its children.
    expect(
      spans().some(
        (s) =>
          s.name === "pg.query" &&
          s.spanContext().traceId === traceId &&
          parentOf(s) === wake.spanContext().spanId,
      ),
    ).toBe(true);

    // The build, run later by the worker, is a child of the request that queued it.
    const build = await waitFor(
      "the build's span",
      () => spans().find((s) => s.name === "build start" && s.spanContext().traceId === traceId),
      40_000,
    );
    expect(parentOf(build)).toBe(wake.spanContext().spanId);
    expect(build.attributes["berth.workspace_id"]).toBe(id);

    // The box, started with the build's traceparent, checks in within the same trace.
    const heartbeat = await waitFor(
      "the agent's first heartbeat in the wake's trace",
      () =>
        spans().find(
          (s) => s.name === `POST ${AGENT_API_PATHS.heartbeat}` && s.spanContext().traceId === traceId,
        ),
      40_000,
    );
    expect(heartbeat.kind).toBe(SpanKind.SERVER);
    // Its parent is the agent's own client span, which is not the build's or the request's.
    expect(parentOf(heartbeat)).toBeDefined();
    expect([wake.spanContext().spanId, build.spanContext().spanId]).not.toContain(parentOf(heartbeat));
    await waitFor("ready", async () => (await state(id)) === "ready", 40_000);
  });

  it("traces outgoing fetch as a client span whose traceparent the server continues", async () => {
    exporter.reset();
    const root = tracer().startSpan("test root");
    await context.with(trace.setSpan(context.active(), root), () => fetch(`${cp.url}/healthz`));
    root.end();
    const server = await waitFor("the server span", () => spans().find((s) => s.name === "GET /healthz"));
    const client = spans().find((s) => s.kind === SpanKind.CLIENT && s.name === "GET");
    expect(client).toBeDefined();
    expect(parentOf(client!)).toBe(root.spanContext().spanId);
    expect(parentOf(server)).toBe(client!.spanContext().spanId);
    expect(client!.attributes["http.response.status_code"]).toBe(200);
  });
});
