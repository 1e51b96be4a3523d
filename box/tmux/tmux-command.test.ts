import { describe, expect, it } from "vitest";
import { tmuxEnv } from "./tmux-command.ts";

describe("tmuxEnv", () => {
  it("gives tmux a UTF-8 locale when the environment has none (systemd units, env -i)", () => {
    expect(tmuxEnv({ PATH: "/usr/bin" }).LANG).toBe("C.UTF-8");
  });

  it("keeps a locale that was chosen", () => {
    expect(tmuxEnv({ LANG: "de_DE.UTF-8" }).LANG).toBe("de_DE.UTF-8");
    expect(tmuxEnv({ LC_ALL: "en_US.UTF-8" }).LANG).toBeUndefined();
  });

  it("drops an enclosing tmux's variables", () => {
    const env = tmuxEnv({ TMUX: "/tmp/x,1,0", TMUX_PANE: "%1", LANG: "C.UTF-8" });
    expect(env.TMUX).toBeUndefined();
    expect(env.TMUX_PANE).toBeUndefined();
  });
});
