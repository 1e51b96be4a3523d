/**
 * What every pane inherits. The tmux server takes its environment from whoever starts it (the agent, or
 * the terminal endpoint on a first attach), and every shell, Claude Code and each tool Claude runs inherit
 * it. A prompt-injected tool call must learn nothing of the agent from there: not where its secrets are
 * (`CREDENTIALS_DIRECTORY`, the directory of the agent token) and none of its settings (`BERTH_*`: ports,
 * the control plane's address, socket paths).
 */
const AGENT_ONLY = /^(BERTH_|CREDENTIALS_DIRECTORY$)/;

export function paneEnvironment(base: NodeJS.ProcessEnv): NodeJS.ProcessEnv {
  return Object.fromEntries(Object.entries(base).filter(([name]) => !AGENT_ONLY.test(name)));
}
