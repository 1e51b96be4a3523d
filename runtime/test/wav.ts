/**
 * Test audio: 16 kHz mono 16-bit PCM WAV, the format both voice clients send. espeak-ng makes a spoken
 * one when it is installed (`speechWav`); otherwise, and for byte-exact tests, a tone (`toneWav`).
 */
import { execFileSync } from "node:child_process";
import { existsSync, writeFileSync } from "node:fs";

export const SAMPLE_RATE = 16_000;

/** A WAV file's bytes: RIFF header + `pcm` (s16le, mono, 16 kHz). */
export function wavOf(pcm: Buffer): Buffer {
  const header = Buffer.alloc(44);
  header.write("RIFF", 0);
  header.writeUInt32LE(36 + pcm.length, 4);
  header.write("WAVE", 8);
  header.write("fmt ", 12);
  header.writeUInt32LE(16, 16);
  header.writeUInt16LE(1, 20); // PCM
  header.writeUInt16LE(1, 22); // mono
  header.writeUInt32LE(SAMPLE_RATE, 24);
  header.writeUInt32LE(SAMPLE_RATE * 2, 28);
  header.writeUInt16LE(2, 32);
  header.writeUInt16LE(16, 34);
  header.write("data", 36);
  header.writeUInt32LE(pcm.length, 40);
  return Buffer.concat([header, pcm]);
}

/** `seconds` of a 440 Hz tone as s16le PCM. */
export function tonePcm(seconds: number): Buffer {
  const samples = Math.round(seconds * SAMPLE_RATE);
  const pcm = Buffer.alloc(samples * 2);
  for (let i = 0; i < samples; i++)
    pcm.writeInt16LE(Math.round(8000 * Math.sin((2 * Math.PI * 440 * i) / SAMPLE_RATE)), i * 2);
  return pcm;
}

/** The PCM samples of a canonical 44-byte-header WAV (what wavOf and espeak-ng write). */
export function pcmOf(wav: Buffer): Buffer {
  const data = wav.indexOf("data", 12);
  return wav.subarray(data + 8);
}

/** A spoken WAV from espeak-ng at 16 kHz, or null when espeak-ng is not installed. */
export function speechWav(text: string, path: string): Buffer | null {
  const espeak = ["/usr/bin/espeak-ng", "/usr/local/bin/espeak-ng"].find((p) => existsSync(p));
  if (!espeak) return null;
  const raw = execFileSync(espeak, ["--stdout", text]);
  // espeak-ng speaks at 22.05 kHz; the tests want 16 kHz: resample linearly.
  const src = pcmOf(raw);
  const rate = raw.readUInt32LE(24);
  const n = Math.floor((src.length / 2) * (SAMPLE_RATE / rate));
  const out = Buffer.alloc(n * 2);
  for (let i = 0; i < n; i++) {
    const at = Math.min(src.length / 2 - 1, Math.round((i * rate) / SAMPLE_RATE));
    out.writeInt16LE(src.readInt16LE(at * 2), i * 2);
  }
  const wav = wavOf(out);
  writeFileSync(path, wav);
  return wav;
}
