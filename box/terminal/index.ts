/** Public API of the terminal endpoint: what the agent main and the control plane's relay use. */
export { type BuiltinServerOptions, startBuiltinTerminalServer } from "./builtin-server.ts";
export { type CloseInfo, TtydClient, TtydConnectError, type TtydConnectOptions } from "./client.ts";
export { startTerminalEndpoint, type TerminalEndpointOptions } from "./endpoint.ts";
export type { TerminalEndpoint, TerminalLogger } from "./endpoint-types.ts";
export * as ttydProtocol from "./protocol.ts";
export { findTtyd, startTtyd, type TtydLaunchOptions } from "./ttyd-launcher.ts";
