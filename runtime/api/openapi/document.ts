/**
 * The OpenAPI 3.1 document of `/api/v1`, generated from the routers themselves: every route's method and
 * path from its layer, everything else from its `doc(...)` (openapi/doc.ts), schemas through zod's own
 * JSON Schema output (2020-12, the dialect OpenAPI 3.1 uses). WebSocket endpoints, which Koa never sees,
 * are declared where their handler is and passed in.
 */
import { z } from "zod";
import { docOf, ErrorBody, type RouteDoc } from "./doc.ts";

export const API_PREFIX = "/api/v1";

/** How a router's routes authenticate. */
export type RouterAuth = "public" | "user";

export interface DocumentedRouter {
  /** A @koa/router Router: only its layers are read. */
  router: { stack: readonly RouterLayer[] };
  auth: RouterAuth;
}

/** The part of a @koa/router layer the document reads. */
export interface RouterLayer {
  path: string | RegExp;
  methods: string[];
  stack: readonly unknown[];
}

/** A WebSocket endpoint: a GET with `Upgrade: websocket`, answered 101. */
export interface WebSocketDoc {
  /** Koa-style, `/api/v1/sessions/:id/terminal`. */
  path: string;
  summary: string;
  description: string;
  subprotocols: string[];
  /** Close codes a client acts on, and what each means. */
  closeCodes: Record<number, string>;
}

/** A route the document lists: from a router layer, with its declaration (or none: the test catches that). */
export interface ListedRoute {
  method: string;
  path: string;
  auth: RouterAuth;
  doc: RouteDoc | undefined;
}

/** Every `/api/v1` route of the routers, one entry per method (GET's implicit HEAD left out). */
export function listRoutes(routers: readonly DocumentedRouter[]): ListedRoute[] {
  const out: ListedRoute[] = [];
  for (const { router, auth } of routers) {
    for (const layer of router.stack) {
      if (typeof layer.path !== "string" || !layer.path.startsWith(API_PREFIX)) continue;
      for (const method of layer.methods) {
        if (method === "HEAD" && layer.methods.includes("GET")) continue;
        out.push({ method, path: layer.path, auth, doc: docOf(layer.stack) });
      }
    }
  }
  return out;
}

/** `/a/:id/b` → `/a/{id}/b`. */
export const openApiPath = (koaPath: string) => koaPath.replace(/:(\w+)/g, "{$1}");
const pathParams = (koaPath: string) => [...koaPath.matchAll(/:(\w+)/g)].map((m) => m[1]!);

type Json = Record<string, unknown>;

function jsonSchema(schema: z.ZodType, io: "input" | "output"): Json {
  const { $schema: _, ...rest } = z.toJSONSchema(schema, { io, unrepresentable: "any" }) as Json;
  return rest;
}

const ERROR_REF = { $ref: "#/components/schemas/Error" };
const STATUS_TEXT: Record<number, string> = {
  200: "OK",
  201: "Created",
  202: "Accepted (the change runs as a build)",
  204: "No content",
  400: "Invalid input: the message names the field",
  401: "Not signed in, or the token is not valid",
  403: "Forbidden",
  404: "Not found (someone else's resource is a 404 too)",
  409: "Conflict with the resource's current state",
  413: "Request body too large",
  429: "Rate limited: see Retry-After",
  500: "Internal error",
  502: "The workspace driver failed",
  503: "Unavailable",
};

function errorResponse(status: number): Json {
  return {
    description: STATUS_TEXT[status] ?? "Error",
    content: { "application/json": { schema: ERROR_REF } },
  };
}

function operation(route: ListedRoute & { doc: RouteDoc }): Json {
  const { doc } = route;
  const parameters: Json[] = pathParams(route.path).map((name) => ({
    name,
    in: "path",
    required: true,
    schema: doc.params?.[name] ? jsonSchema(doc.params[name], "input") : { type: "string" },
  }));
  if (doc.query) {
    for (const [name, schema] of Object.entries(doc.query.shape)) {
      parameters.push({
        name,
        in: "query",
        required: !(schema as z.ZodType).safeParse(undefined).success,
        schema: jsonSchema(schema as z.ZodType, "input"),
      });
    }
  }
  if (doc.sse?.resumable) {
    parameters.push({
      name: "Last-Event-ID",
      in: "header",
      required: false,
      description: "resume after this event id (EventSource sends it on reconnect)",
      schema: { type: "string", pattern: "^[0-9]+$" },
    });
  }

  const responses: Json = {};
  for (const [status, schema] of Object.entries(doc.responses)) {
    const description = STATUS_TEXT[Number(status)] ?? "OK";
    if (schema === null) responses[status] = { description };
    else if (typeof schema === "string") responses[status] = { description, content: { [schema]: {} } };
    else if (schema) {
      responses[status] = {
        description,
        content: { "application/json": { schema: jsonSchema(schema, "output") } },
      };
    }
  }
  if (doc.sse) {
    const events = Object.fromEntries(
      Object.entries(doc.sse.events).map(([name, schema]) => [name, jsonSchema(schema, "output")]),
    );
    responses["200"] = {
      description:
        "Server-Sent Events (text/event-stream). Each event's `data:` is JSON; `x-sse-events` gives its schema per `event:` name.",
      content: { "text/event-stream": { schema: { type: "string" } } },
      "x-sse-events": events,
    };
  }
  const errors = new Set([400, ...(route.auth === "user" ? [401] : []), ...(doc.errors ?? [])]);
  for (const status of [...errors].sort()) responses[String(status)] = errorResponse(status);
  responses.default = { description: "Any other error, in the same shape", content: ERROR_CONTENT };

  const op: Json = {
    operationId: operationId(route.method, route.path),
    summary: doc.summary,
    tags: [doc.tag ?? tagOf(route.path)],
    security: route.auth === "user" ? [{ bearerAuth: [] }, { cookieAuth: [] }] : [],
  };
  if (doc.description) op.description = doc.description;
  if (parameters.length) op.parameters = parameters;
  if (doc.body) {
    op.requestBody = {
      required: !doc.body.safeParse(undefined).success,
      content: { "application/json": { schema: jsonSchema(doc.body, "input") } },
    };
  }
  op.responses = responses;
  return op;
}

const ERROR_CONTENT = { "application/json": { schema: ERROR_REF } };

export const tagOf = (path: string) => path.slice(API_PREFIX.length + 1).split("/")[0] || "api";

/** `POST /api/v1/workspaces/:id/wake` → `postWorkspacesIdWake`: stable, unique per method and path. */
export function operationId(method: string, path: string): string {
  const words = path
    .slice(API_PREFIX.length)
    .split(/[/:._-]+/)
    .filter(Boolean);
  return method.toLowerCase() + words.map((w) => w[0]!.toUpperCase() + w.slice(1)).join("");
}

function webSocketOperation(ws: WebSocketDoc): Json {
  return {
    operationId: operationId("GET", ws.path),
    summary: `${ws.summary} (WebSocket)`,
    description: ws.description,
    tags: [tagOf(ws.path)],
    parameters: [
      ...pathParams(ws.path).map((name) => ({
        name,
        in: "path",
        required: true,
        schema: { type: "string" },
      })),
      { name: "Upgrade", in: "header", required: true, schema: { const: "websocket" } },
      {
        name: "Sec-WebSocket-Protocol",
        in: "header",
        required: true,
        schema: { type: "string" },
        description: `offered subprotocols: ${ws.subprotocols.join(", ")}`,
      },
    ],
    security: [],
    responses: {
      "101": { description: "Switching Protocols: the WebSocket is open" },
      "401": { description: "Refused before the upgrade (plain text)" },
      "404": { description: "No such endpoint (plain text)" },
    },
    "x-websocket": { subprotocols: ws.subprotocols, closeCodes: ws.closeCodes },
  };
}

export interface DocumentOptions {
  routers: readonly DocumentedRouter[];
  websockets: readonly WebSocketDoc[];
  version: string;
  serverUrl: string;
}

/** The OpenAPI 3.1 document. Routes without a `doc(...)` are left out (a test requires every one to have it). */
export function buildOpenApiDocument(options: DocumentOptions): Json {
  const paths: Record<string, Json> = {};
  const add = (path: string, method: string, op: Json) => {
    paths[openApiPath(path)] ??= {};
    paths[openApiPath(path)]![method.toLowerCase()] = op;
  };
  for (const route of listRoutes(options.routers)) {
    if (route.doc) add(route.path, route.method, operation(route as ListedRoute & { doc: RouteDoc }));
  }
  for (const ws of options.websockets) add(ws.path, "GET", webSocketOperation(ws));
  const tags = [
    ...new Set(Object.values(paths).flatMap((p) => Object.values(p).map((o) => (o as Json).tags))),
  ]
    .flat()
    .filter((t, i, all) => all.indexOf(t) === i)
    .sort()
    .map((name) => ({ name }));
  return {
    openapi: "3.1.1",
    info: {
      title: "Berth API",
      version: options.version,
      description:
        "The control plane's API: workspaces (persistent boxes), their builds, tmux sessions, terminals, " +
        "previews and notifications. Every error has the shape of `Error`. Changes to a workspace run as " +
        "builds (202 + a build whose log streams as Server-Sent Events). Operations marked `x-websocket` are " +
        "WebSocket upgrades. Previews are also proxied under `/api/v1/previews/{id}/…` (any method, " +
        "WebSockets included) straight to the workspace's dev server.",
    },
    servers: [{ url: options.serverUrl }],
    jsonSchemaDialect: "https://json-schema.org/draft/2020-12/schema",
    tags,
    paths,
    components: {
      schemas: { Error: jsonSchema(ErrorBody, "output") },
      securitySchemes: {
        bearerAuth: {
          type: "http",
          scheme: "bearer",
          description:
            "Local mode: the login token the control plane printed (BERTH_LOCAL_TOKEN). Hosted mode: a Clerk " +
            "session token.",
        },
        cookieAuth: {
          type: "apiKey",
          in: "cookie",
          name: "berth_session",
          description: "The web client's session (local mode, after POST /api/v1/auth/login).",
        },
      },
    },
  };
}
