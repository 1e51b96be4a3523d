/** Maps Automation API failures to the driver-neutral errors of `stacks/errors.ts`. */
import * as auto from "@pulumi/pulumi/automation/index.js";
import { DriverError, OperationCanceledError, StackBusyError, StackNotFoundError } from "../errors.ts";

const MAX_MESSAGE = 2000;

/**
 * The useful part of a CLI failure: its `error:` lines, else its last lines. (The SDK's own message
 * starts with execa's, which repeats the whole command line.)
 */
export function cliFailureSummary(err: unknown): string {
  const result = (err as { commandResult?: { stderr?: string; stdout?: string } }).commandResult;
  const text = `${result?.stderr ?? ""}\n${result?.stdout ?? ""}`;
  const lines = text
    .split("\n")
    .map((l) => l.trim())
    .filter((l) => l !== "");
  const errors = lines.filter((l) => /^error:/i.test(l));
  const picked = errors.length > 0 ? errors : lines.slice(-5);
  const summary = picked.join(" | ") || (err instanceof Error ? err.message : String(err));
  return summary.length > MAX_MESSAGE ? `${summary.slice(0, MAX_MESSAGE)}…` : summary;
}

/** `what` names the operation, e.g. `up ws-4f1c`. An aborted signal wins over whatever the CLI said. */
export function toDriverError(err: unknown, what: string, signal?: AbortSignal): DriverError {
  if (err instanceof DriverError) return err;
  if (signal?.aborted) return new OperationCanceledError(`${what}: canceled`, { cause: err });
  if (err instanceof auto.ConcurrentUpdateError) {
    return new StackBusyError(`${what}: another update holds the stack (${cliFailureSummary(err)})`, {
      cause: err,
    });
  }
  if (err instanceof auto.StackNotFoundError) {
    return new StackNotFoundError(`${what}: stack not found`, { cause: err });
  }
  if (err instanceof auto.CommandError) {
    return new DriverError(`${what} failed: ${cliFailureSummary(err)}`, { cause: err });
  }
  return new DriverError(`${what} failed: ${err instanceof Error ? err.message : String(err)}`, {
    cause: err,
  });
}
