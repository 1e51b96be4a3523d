/**
 * V8 garbage-collector settings for the control plane's process, applied once when it starts.
 *
 * Proxied bodies (the path form's undici, downloads) arrive as one new 64 KB Buffer per socket read, outside
 * the V8 heap (the byte relay and the terminal relay read boxes into reused buffers instead:
 * boxnet/upstream-reads.ts).
 * By default V8 answers every ~64 MB of such external memory with a full mark-compact, whatever the heap's
 * size: for a process with a small heap that is cheap, but the control plane keeps ~40 MB live (its
 * modules, pools, caches), so a 1 MB preview response paid ~450 µs of marking: a full collection every
 * ~60 responses, a third more CPU per response than a bare undici proxy in the previews bench of the time.
 * With `--external-memory-accounted-in-global-limit` V8 counts external memory against the same growing
 * limit as the heap (and frees short-lived Buffers in the cheap young-generation scavenges that run
 * anyway), which removed nearly all of those collections. The cost is resident memory: after sustained
 * 1 MB responses the process held ~80-120 MB more (430-470 MB against 350-400), bounded, kept while idle.
 */
import { setFlagsFromString } from "node:v8";

let applied = false;

export function tuneGarbageCollector(): void {
  if (applied) return;
  applied = true;
  setFlagsFromString("--external-memory-accounted-in-global-limit");
}
