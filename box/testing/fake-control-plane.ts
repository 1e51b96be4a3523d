/**
 * For the agent's tests only: a real HTTP server on 127.0.0.1 that speaks the agent side of the agent API
 * with the same schemas and the same dedupe rule (`planEventBatch`) the real control plane uses. Its
 * `state` lives outside the server, like a database, so a test can stop the server and start another on
 * the same port to simulate a control-plane restart.
 */
import { createServer, type IncomingMessage, type Server, type ServerResponse } from "node:http";
import type { AddressInfo } from "node:net";
import {
  AGENT_API_PATHS,
  type AgentEvent,
  describeIssues,
  eventsRequest,
  type HeartbeatRequest,
  type HeartbeatResponseInput,
  heartbeatRequest,
  MAX_REQUEST_BYTES,
  planEventBatch,
} from "../protocol.ts";

export interface FakeControlPlaneState {
  token: string;
  ackedThrough: number;
  applied: AgentEvent[];
  replayed: number;
  heartbeats: HeartbeatRequest[];
  traceparents: string[];
  /** What the next heartbeat responses carry (eventsAckedThrough is filled in). */
  desired: Omit<HeartbeatResponseInput, "eventsAckedThrough">;
  /** Seqs whose events this fake refuses with 400, to exercise the poison-event path. */
  rejectSeqs: Set<number>;
  /** When set, drop the connection after applying a batch but before answering (a crash mid-request). */
  crashAfterApply: boolean;
  /** While set, each heartbeat's answer waits for it (a slow control plane), after the request is recorded. */
  heartbeatGate: Promise<unknown> | null;
}

export function newFakeState(token: string): FakeControlPlaneState {
  return {
    token,
    ackedThrough: 0,
    applied: [],
    replayed: 0,
    heartbeats: [],
    traceparents: [],
    desired: {},
    rejectSeqs: new Set(),
    crashAfterApply: false,
    heartbeatGate: null,
  };
}

export interface FakeControlPlane {
  url: string;
  port: number;
  state: FakeControlPlaneState;
  close(): Promise<void>;
}

export async function startFakeControlPlane(
  state: FakeControlPlaneState,
  port = 0,
): Promise<FakeControlPlane> {
  const server: Server = createServer((req, res) => {
    handle(state, req, res).catch((err: Error) =>
      send(res, 500, { error: { code: "internal", message: err.message } }),
    );
  });
  await new Promise<void>((resolve, reject) => {
    server.once("error", reject);
    server.listen(port, "127.0.0.1", () => resolve());
  });
  const actual = (server.address() as AddressInfo).port;
  return {
    url: `http://127.0.0.1:${actual}`,
    port: actual,
    state,
    close: () =>
      new Promise<void>((resolve) => {
        server.closeAllConnections();
        server.close(() => resolve());
      }),
  };
}

async function handle(
  state: FakeControlPlaneState,
  req: IncomingMessage,
  res: ServerResponse,
): Promise<void> {
  if (req.headers.authorization !== `Bearer ${state.token}`)
    return send(res, 401, { error: { code: "unauthorized", message: "unknown agent token" } });
  const tp = req.headers.traceparent;
  if (typeof tp === "string") state.traceparents.push(tp);
  const chunks: Buffer[] = [];
  let size = 0;
  for await (const chunk of req) {
    size += (chunk as Buffer).length;
    if (size > MAX_REQUEST_BYTES)
      return send(res, 413, { error: { code: "too_large", message: "body too large" } });
    chunks.push(chunk as Buffer);
  }
  let body: unknown;
  try {
    body = JSON.parse(Buffer.concat(chunks).toString("utf8"));
  } catch {
    return send(res, 400, { error: { code: "invalid_json", message: "body is not JSON" } });
  }
  if (req.url === AGENT_API_PATHS.heartbeat) {
    const parsed = heartbeatRequest.safeParse(body);
    if (!parsed.success)
      return send(res, 400, { error: { code: "invalid_body", message: describeIssues(parsed.error) } });
    state.heartbeats.push(parsed.data);
    if (state.heartbeatGate) await state.heartbeatGate;
    return send(res, 200, { ...state.desired, eventsAckedThrough: state.ackedThrough });
  }
  if (req.url === AGENT_API_PATHS.events) {
    const parsed = eventsRequest.safeParse(body);
    if (!parsed.success)
      return send(res, 400, { error: { code: "invalid_body", message: describeIssues(parsed.error) } });
    const bad = parsed.data.events.find((e) => state.rejectSeqs.has(e.seq) && e.type !== "log");
    if (bad) return send(res, 400, { error: { code: "invalid_event", message: `event ${bad.seq} refused` } });
    const plan = planEventBatch(state.ackedThrough, parsed.data.events);
    state.applied.push(...plan.toApply);
    state.ackedThrough = plan.ackedThrough;
    state.replayed += plan.replayed;
    if (state.crashAfterApply) {
      state.crashAfterApply = false;
      req.socket.destroy();
      return;
    }
    return send(res, 200, { ackedThrough: plan.ackedThrough, replayed: plan.replayed });
  }
  send(res, 404, { error: { code: "not_found", message: `no route ${req.url}` } });
}

function send(res: ServerResponse, status: number, body: unknown): void {
  res.writeHead(status, { "content-type": "application/json" });
  res.end(JSON.stringify(body));
}
