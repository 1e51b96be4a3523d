/**
 * Holds real responses to the served OpenAPI document with an independent JSON Schema validator (Ajv,
 * draft 2020-12), so a test shows that what the API sends is what its document says.
 */
import { Ajv2020, type ValidateFunction } from "ajv/dist/2020.js";

type Json = Record<string, unknown>;
// biome-ignore lint/suspicious/noExplicitAny: walks an arbitrary JSON document
type Doc = any;

export class ApiContract {
  readonly #doc: Doc;
  readonly #ajv = new Ajv2020({ strict: false, validateFormats: false, allErrors: true });
  readonly #compiled = new Map<object, ValidateFunction>();
  readonly #templates: { method: string; template: string; re: RegExp }[] = [];
  /** Every operation a check has covered, as `METHOD /template`. */
  readonly covered = new Set<string>();

  constructor(document: Doc) {
    this.#doc = document;
    for (const [template, methods] of Object.entries(document.paths as Record<string, Json>)) {
      const re = new RegExp(`^${template.replace(/\{\w+\}/g, "[^/]+")}$`);
      for (const method of Object.keys(methods)) {
        this.#templates.push({ method: method.toUpperCase(), template, re });
      }
    }
  }

  /** The documented operation a request hits, or undefined (a path the preview proxy or nobody serves). */
  find(method: string, path: string): { template: string; op: Doc } | undefined {
    const bare = path.split("?")[0]!;
    const hit = this.#templates.find((t) => t.method === method.toUpperCase() && t.re.test(bare));
    return hit && { template: hit.template, op: this.#doc.paths[hit.template][method.toLowerCase()] };
  }

  operation(method: string, path: string): { template: string; op: Doc } {
    const found = this.find(method, path);
    if (!found) throw new Error(`${method} ${path} is not in the document`);
    return found;
  }

  /** Problems with a response to a documented operation (none for paths the document does not have). */
  async checkResponse(method: string, path: string, res: Response): Promise<string[]> {
    if (!this.find(method, path) || !res.headers.get("content-type")?.includes("json")) return [];
    const text = await res.clone().text();
    return this.check(method, path, res.status, text ? JSON.parse(text) : undefined);
  }

  #validate(schema: Json, value: unknown): string[] {
    const resolved =
      schema.$ref === "#/components/schemas/Error" ? this.#doc.components.schemas.Error : schema;
    let fn = this.#compiled.get(resolved);
    if (!fn) {
      fn = this.#ajv.compile(resolved);
      this.#compiled.set(resolved, fn);
    }
    return fn(value) ? [] : (fn.errors ?? []).map((e) => `${e.instancePath || "/"} ${e.message}`);
  }

  /** Problems with a JSON response (empty when it matches); a status the document does not list is one. */
  check(method: string, path: string, status: number, body: unknown): string[] {
    const { template, op } = this.operation(method, path);
    this.covered.add(`${method.toUpperCase()} ${template}`);
    const response = op.responses[String(status)] ?? (status >= 400 ? op.responses.default : undefined);
    if (!response) return [`${method} ${template}: status ${status} is not documented`];
    const schema = response.content?.["application/json"]?.schema;
    if (!schema)
      return body === undefined ? [] : [`${method} ${template} ${status}: documented without a body`];
    return this.#validate(schema, body).map((e) => `${method} ${template} ${status}: ${e}`);
  }

  /** Problems with one SSE event of a stream the document describes. */
  checkEvent(path: string, event: string, data: unknown): string[] {
    const { template, op } = this.operation("GET", path);
    const schema = op.responses["200"]?.["x-sse-events"]?.[event];
    if (!schema) return [`GET ${template}: event '${event}' is not documented`];
    return this.#validate(schema, data).map((e) => `GET ${template} event ${event}: ${e}`);
  }
}

/** A fetch that checks every JSON answer against the contract and throws on a mismatch. */
export function checkedFetch(contract: ApiContract, baseUrl: string, token: string) {
  return async (path: string, init: RequestInit & { json?: unknown } = {}): Promise<Response> => {
    const headers = new Headers(init.headers);
    headers.set("authorization", `Bearer ${token}`);
    let body = init.body;
    if (init.json !== undefined) {
      headers.set("content-type", "application/json");
      body = JSON.stringify(init.json);
    }
    const method = init.method ?? "GET";
    const res = await fetch(baseUrl + path, { ...init, headers, body });
    contract.operation(method, path); // this helper is for documented operations only
    const problems = await contract.checkResponse(method, path, res);
    if (problems.length)
      throw new Error(`response does not match the OpenAPI document:\n${problems.join("\n")}`);
    return res;
  };
}
