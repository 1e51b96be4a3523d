/** Reading a Cookie header the way the security checks need it: every value, not just the first. */

/** Every value of cookie `name` (a sibling host may have planted a second one; callers decide what that means). */
export function cookieValues(header: string | undefined, name: string): string[] {
  if (!header) return [];
  const out: string[] = [];
  for (const part of header.split(";")) {
    const i = part.indexOf("=");
    if (i > 0 && part.slice(0, i).trim() === name) out.push(part.slice(i + 1).trim());
  }
  return out;
}
