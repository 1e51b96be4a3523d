/**
 * Clients never learn a box's address (DESIGN §1). Driver output (build logs, errors) is written by tools
 * that do not know that rule, so text shown to clients passes through this first.
 */
import { isIP } from "node:net";

// Candidates only; `isIP` decides, so times like 12:30:01 and versions like 1.2.3 survive.
const CANDIDATE = /[0-9A-Fa-f:.]*[:.][0-9A-Fa-f:.]*/g;

export function redactAddresses(text: string): string {
  return text.replace(CANDIDATE, (m) => {
    const core = m.replace(/\.+$/, ""); // a sentence's full stop is not part of the address
    return isIP(core) ? `[address]${m.slice(core.length)}` : m;
  });
}
