/** Test support for the preview relay's heads (gateway/preview/http1.ts). */
import type { IncomingHttpHeaders } from "node:http";
import type { FieldLines } from "../gateway/preview/http1.ts";

/** `[lowercased name, value]` per field line, in order. */
export function entriesOf(fields: FieldLines): Array<[string, string]> {
  return fields.names.map((name, i) => [name, fields.value(i)]);
}

/**
 * A head's fields as node:http gives them: names lowercased, repeats joined (Cookie with `; `), Set-Cookie
 * an array; the fields named in `omit` left out.
 */
export function headersOf(fields: FieldLines, omit: readonly string[] = []): IncomingHttpHeaders {
  const out: IncomingHttpHeaders = Object.create(null);
  for (const [name, value] of entriesOf(fields)) {
    if (omit.includes(name)) continue;
    const existing = out[name];
    if (name === "set-cookie") out[name] = [...((existing as string[] | undefined) ?? []), value];
    else out[name] = existing === undefined ? value : `${existing}${name === "cookie" ? "; " : ", "}${value}`;
  }
  return out;
}
