/**
 * Parses /proc/net/tcp and /proc/net/tcp6 (see proc(5)): one socket per line,
 *   sl local_address rem_address st tx_queue:rx_queue tr:tm->when retrnsmt uid timeout inode ...
 * Addresses are hex in the kernel's byte order: IPv4 is one 32-bit word printed as the host (little-endian
 * here) reads it, IPv6 is four such words; the port is big-endian hex.
 */
export const TCP_LISTEN = "0A";

export interface ListeningSocket {
  family: 4 | 6;
  address: string;
  port: number;
  uid: number;
  inode: number;
}

export class ProcNetParseError extends Error {
  override name = "ProcNetParseError";
}

/** Listening sockets in one /proc/net/tcp* file; other states are skipped. */
export function parseProcNetTcp(text: string, family: 4 | 6): ListeningSocket[] {
  const out: ListeningSocket[] = [];
  const lines = text.split("\n");
  for (let i = 1; i < lines.length; i++) {
    const line = lines[i]!.trim();
    if (line === "") continue;
    const cols = line.split(/\s+/);
    if (cols.length < 10)
      throw new ProcNetParseError(`line ${i + 1}: expected at least 10 columns, got ${cols.length}`);
    if (cols[3] !== TCP_LISTEN) continue;
    const [addrHex, portHex] = cols[1]!.split(":");
    if (!addrHex || !portHex || !/^[0-9A-Fa-f]{4}$/.test(portHex))
      throw new ProcNetParseError(`line ${i + 1}: bad local address ${cols[1]}`);
    out.push({
      family,
      address: family === 4 ? decodeIpv4(addrHex) : decodeIpv6(addrHex),
      port: Number.parseInt(portHex, 16),
      uid: Number(cols[7]),
      inode: Number(cols[9]),
    });
  }
  return out;
}

function wordBytes(hex: string): number[] {
  // The kernel prints each 32-bit word with %08X of its in-memory value; on little-endian hosts the
  // network-order bytes come out reversed.
  const n = Number.parseInt(hex, 16);
  return [n & 0xff, (n >>> 8) & 0xff, (n >>> 16) & 0xff, (n >>> 24) & 0xff];
}

export function decodeIpv4(hex: string): string {
  if (!/^[0-9A-Fa-f]{8}$/.test(hex)) throw new ProcNetParseError(`bad IPv4 address ${hex}`);
  return wordBytes(hex).join(".");
}

export function decodeIpv6(hex: string): string {
  if (!/^[0-9A-Fa-f]{32}$/.test(hex)) throw new ProcNetParseError(`bad IPv6 address ${hex}`);
  const bytes: number[] = [];
  for (let w = 0; w < 4; w++) bytes.push(...wordBytes(hex.slice(w * 8, w * 8 + 8)));
  if (bytes.slice(0, 10).every((b) => b === 0) && bytes[10] === 0xff && bytes[11] === 0xff)
    return `::ffff:${bytes.slice(12).join(".")}`;
  const groups: string[] = [];
  for (let i = 0; i < 16; i += 2) groups.push(((bytes[i]! << 8) | bytes[i + 1]!).toString(16));
  return compressIpv6(groups);
}

function compressIpv6(groups: string[]): string {
  let bestStart = -1;
  let bestLen = 0;
  for (let i = 0; i < groups.length; ) {
    if (groups[i] !== "0") {
      i++;
      continue;
    }
    let j = i;
    while (j < groups.length && groups[j] === "0") j++;
    if (j - i > bestLen && j - i > 1) {
      bestStart = i;
      bestLen = j - i;
    }
    i = j;
  }
  if (bestStart < 0) return groups.join(":");
  return `${groups.slice(0, bestStart).join(":")}::${groups.slice(bestStart + bestLen).join(":")}`;
}
