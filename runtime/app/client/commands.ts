/**
 * The names `berth` answers to: the client commands (this folder) and the operator commands (runtime/app/cli.ts),
 * one list each, so dispatch, help and shell completion cannot drift apart.
 */
export const CLIENT_COMMANDS = [
  "login",
  "logout",
  "ws",
  "attach",
  "preview",
  "backup",
  "export",
  "completion",
] as const;

export const OPERATOR_COMMANDS = ["serve", "migrate", "stacks", "billing", "logs", "doctor"] as const;
