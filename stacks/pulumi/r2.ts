/**
 * Empties an R2 bucket through its S3 API, with the bucket-scoped keys the stack created: Cloudflare refuses to
 * delete a bucket that still holds objects, and destroy must delete the workspace's bucket. Two calls only
 * (ListObjectsV2, DeleteObjects), signed with AWS Signature V4, so no AWS SDK.
 */
import { createHash, createHmac } from "node:crypto";
import { DriverError } from "../errors.ts";

export interface S3Target {
  /** `https://<account>.r2.cloudflarestorage.com` */
  endpoint: string;
  bucket: string;
  accessKeyId: string;
  secretAccessKey: string;
  region?: string;
}

const sha256 = (data: string | Buffer) => createHash("sha256").update(data).digest("hex");
const hmac = (key: string | Buffer, data: string) => createHmac("sha256", key).update(data).digest();
/** RFC 3986 encoding, as SigV4 wants it. */
const encode = (s: string) =>
  encodeURIComponent(s).replace(/[!'()*]/g, (c) => `%${c.charCodeAt(0).toString(16).toUpperCase()}`);

/**
 * The `Authorization` header of a SigV4-signed request. `headers` must hold every header to sign (lower-case
 * names), `host` and `x-amz-date` included.
 */
export function signV4(
  req: { method: string; url: URL; headers: Record<string, string>; payloadHash: string },
  creds: { accessKeyId: string; secretAccessKey: string; region: string; service?: string },
): string {
  const service = creds.service ?? "s3";
  const amzDate = req.headers["x-amz-date"]!;
  const day = amzDate.slice(0, 8);
  const names = Object.keys(req.headers).sort();
  const query = [...req.url.searchParams.entries()]
    .map(([k, v]) => [encode(k), encode(v)] as const)
    .sort(([a, x], [b, y]) => (a === b ? (x < y ? -1 : 1) : a < b ? -1 : 1))
    .map(([k, v]) => `${k}=${v}`)
    .join("&");
  const path = req.url.pathname
    .split("/")
    .map((seg) => encode(decodeURIComponent(seg)))
    .join("/");
  const canonical = [
    req.method,
    path,
    query,
    ...names.map((n) => `${n}:${req.headers[n]!.trim()}`),
    "",
    names.join(";"),
    req.payloadHash,
  ].join("\n");
  const scope = `${day}/${creds.region}/${service}/aws4_request`;
  const toSign = ["AWS4-HMAC-SHA256", amzDate, scope, sha256(canonical)].join("\n");
  const key = hmac(
    hmac(hmac(hmac(`AWS4${creds.secretAccessKey}`, day), creds.region), service),
    "aws4_request",
  );
  const signature = createHmac("sha256", key).update(toSign).digest("hex");
  return `AWS4-HMAC-SHA256 Credential=${creds.accessKeyId}/${scope},SignedHeaders=${names.join(";")},Signature=${signature}`;
}

const unescapeXml = (s: string) =>
  s.replace(
    /&(lt|gt|quot|apos|amp);/g,
    (_, e: string) => ({ lt: "<", gt: ">", quot: '"', apos: "'", amp: "&" })[e]!,
  );
const escapeXml = (s: string) =>
  s.replace(
    /[<>&'"]/g,
    (c) => ({ "<": "&lt;", ">": "&gt;", "&": "&amp;", "'": "&apos;", '"': "&quot;" })[c]!,
  );
const tags = (xml: string, tag: string) =>
  [...xml.matchAll(new RegExp(`<${tag}>([\\s\\S]*?)</${tag}>`, "g"))].map((m) => m[1]!);

/** Deletes every object in the bucket, a page (up to 1000 keys) at a time. Returns how many it deleted. */
export async function emptyBucket(
  t: S3Target,
  opts: { fetch?: typeof fetch; signal?: AbortSignal; now?: () => Date } = {},
): Promise<number> {
  const doFetch = opts.fetch ?? fetch;
  const region = t.region ?? "auto";
  const send = async (method: "GET" | "POST", url: URL, body = "", extra: Record<string, string> = {}) => {
    const payloadHash = sha256(body);
    const headers: Record<string, string> = {
      host: url.host,
      "x-amz-content-sha256": payloadHash,
      "x-amz-date": (opts.now?.() ?? new Date())
        .toISOString()
        .replace(/[-:]/g, "")
        .replace(/\.\d{3}/, ""),
      ...extra,
    };
    const authorization = signV4({ method, url, headers, payloadHash }, { ...t, region });
    const { host: _host, ...sent } = headers;
    const res = await doFetch(url, {
      method,
      headers: { ...sent, authorization },
      body: method === "POST" ? body : undefined,
      signal: opts.signal,
    });
    const text = await res.text();
    if (!res.ok) {
      throw new DriverError(
        `R2 ${method} ${url.pathname} answered ${res.status}: ${tags(text, "Code")[0] ?? ""}`,
        {
          retryable: res.status === 429 || res.status >= 500 || res.status === 403,
        },
      );
    }
    return text;
  };
  const base = `${t.endpoint.replace(/\/$/, "")}/${encode(t.bucket)}`;
  let deleted = 0;
  // List from the start each round: every listed key is deleted, so the next list shows what is left.
  for (let round = 0; round < 100_000; round++) {
    const list = new URL(base);
    list.searchParams.set("list-type", "2");
    const keys = tags(await send("GET", list), "Key").map(unescapeXml);
    if (keys.length === 0) return deleted;
    const body = `<?xml version="1.0" encoding="UTF-8"?><Delete><Quiet>true</Quiet>${keys
      .map((k) => `<Object><Key>${escapeXml(k)}</Key></Object>`)
      .join("")}</Delete>`;
    const result = await send("POST", new URL(`${base}?delete`), body, {
      "content-md5": createHash("md5").update(body).digest("base64"),
      "content-type": "application/xml",
    });
    const errors = tags(result, "Error");
    if (errors.length > 0)
      throw new DriverError(`R2 refused to delete ${errors.length} objects`, { retryable: true });
    deleted += keys.length;
  }
  throw new DriverError(`R2 bucket ${t.bucket} did not empty`);
}
