/**
 * Pane views with two real tmux clients on ptys, a phone (45x30) and a desktop (200x50), attached to the
 * same session: the phone sees one pane full width, its keystrokes reach that pane, the desktop gets its
 * three-pane layout and its own active pane back as soon as it asks (focus or typing), and view keys
 * never reach a program.
 */
import { type IPty, spawn } from "@lydell/node-pty";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { makeTestTmux, type TestTmux, TMUX_MISSING } from "../testing/tmux.ts";
import { waitUntil } from "../testing/wait.ts";
import { tmuxEnv, tmuxServerArgs } from "../tmux/tmux-command.ts";
import { PANE_VIEWS_VERSION, VIEW_KEYS, VIEWS_TITLE_MARK } from "../tmux/views.ts";

interface Client {
  pty: IPty;
  output: () => string;
  type: (s: string) => void;
  close: () => void;
}

let t: TestTmux;
const suite = TMUX_MISSING ? describe.skip : describe;
suite(`tmux pane views${TMUX_MISSING ? ` (skipped: ${TMUX_MISSING})` : ""}`, () => {
  beforeAll(() => {
    t = makeTestTmux("berth-views-");
  });
  afterAll(async () => {
    await t.cleanup();
  });

  const attach = (session: string, cols: number, rows: number): Client => {
    const pty = spawn(
      "tmux",
      [...tmuxServerArgs({ socket: t.socket }), "attach-session", "-t", `=${session}`],
      {
        name: "xterm-256color",
        cols,
        rows,
        env: tmuxEnv() as Record<string, string>,
      },
    );
    let out = "";
    pty.onData((d) => {
      out += d;
    });
    return { pty, output: () => out, type: (s) => pty.write(s), close: () => pty.kill() };
  };
  /** Attaches and waits until tmux lists the client: input typed before that is discarded. */
  const attached = async (session: string, cols: number, rows: number): Promise<Client> => {
    const c = attach(session, cols, rows);
    await waitUntil(
      async () =>
        (await tmux(["list-clients", "-F", "#{client_pid}"])).split("\n").includes(String(c.pty.pid)),
      "the client to attach",
    );
    return c;
  };
  const tmux = (args: string[]) => t.sessions.tmux.run(args).then((s) => s.trim());
  /** Zoomed flag and width of the session's window. */
  const windowState = async (session: string) => {
    const pane = (await t.sessions.panes(session)).claude!;
    return tmux(["display-message", "-p", "-t", pane, "#{window_zoomed_flag} #{window_width}"]);
  };
  /** The zoomed pane and the window's width, or "none" when the window is not zoomed. */
  const zoomedOn = async (session: string) => {
    const rows = (
      await tmux([
        "list-panes",
        "-t",
        `=${session}`,
        "-F",
        "#{window_zoomed_flag} #{pane_active} #{pane_id} #{window_width}",
      ])
    ).split("\n");
    const active = rows.map((r) => r.split(" ")).find((r) => r[1] === "1")!;
    return active[0] === "1" ? `${active[2]} ${active[3]}` : "none";
  };
  const paneWidth = (pane: string) =>
    tmux(["display-message", "-p", "-t", pane, "#{pane_width}"]).then(Number);
  const screen = (pane: string) => tmux(["capture-pane", "-p", "-J", "-t", pane]);

  it("installs once per server, versioned, and announces itself in the title", async () => {
    await t.sessions.ensure("views-1");
    expect(await tmux(["show-options", "-sqv", "@berth-views"])).toBe(PANE_VIEWS_VERSION);
    const desk = attach("views-1", 120, 40);
    try {
      await waitUntil(
        () => desk.output().includes(`views-1 · ${VIEWS_TITLE_MARK}`),
        "the title announcement",
      );
    } finally {
      desk.close();
    }
  });

  it("shows a phone one pane at its full width while a desktop keeps the layout", async () => {
    await t.sessions.ensure("views-2");
    const panes = await t.sessions.panes("views-2");
    const desk = await attached("views-2", 200, 50);
    await waitUntil(async () => (await windowState("views-2")) === "0 200", "the desktop to size the window");
    // The desktop works in the shell pane.
    await tmux(["select-pane", "-t", panes.shell!]);
    const phone = await attached("views-2", 45, 30);
    try {
      // A narrow client that has not asked for a view yet gets the Claude pane alone: the layout is
      // never squeezed to a phone's width (panes of a few columns, whose shells redraw over their output).
      await waitUntil(
        async () => (await zoomedOn("views-2")) === `${panes.claude} 45`,
        "the phone to size the window",
      );
      expect(await paneWidth(panes.claude!)).toBe(45);
      for (const id of [panes.logs!, panes.shell!]) expect(await paneWidth(id)).toBe(45);

      phone.type(VIEW_KEYS.logs);
      await waitUntil(
        async () => (await zoomedOn("views-2")) === `${panes.logs} 45`,
        "the phone's zoom on logs",
      );
      phone.type("echo from-phone\r");
      await waitUntil(
        async () => (await screen(panes.logs!)).includes("from-phone"),
        "the phone's typing",
        20_000,
      );

      // The desktop asks for its layout (the web client does on focus and before typing after a pause):
      // three panes at its size, and its keystrokes reach the shell it was using, not the phone's pane.
      desk.type(`${VIEW_KEYS.layout}echo from-desk\r`);
      await waitUntil(async () => (await windowState("views-2")) === "0 200", "the desktop's layout back");
      await waitUntil(
        async () => (await screen(panes.shell!)).includes("from-desk"),
        "the desktop's typing",
        20_000,
      );
      expect(await screen(panes.logs!)).not.toContain("from-desk");
      expect(await paneWidth(panes.claude!)).toBeGreaterThan(100);
      expect((await tmux(["list-panes", "-t", "=views-2", "-F", "#{pane_id}"])).split("\n")).toHaveLength(3);

      // The phone, typing again, gets its view back; switching panes moves its zoom.
      phone.type(VIEW_KEYS.claude);
      await waitUntil(
        async () => (await zoomedOn("views-2")) === `${panes.claude} 45`,
        "the phone's view again",
      );
      expect(await paneWidth(panes.claude!)).toBe(45);
      phone.type("echo to-claude\r");
      await waitUntil(
        async () => (await screen(panes.claude!)).includes("to-claude"),
        "typing in claude",
        20_000,
      );

      // No view key ever reached a shell as text.
      for (const id of Object.values(panes))
        expect(await tmux(["capture-pane", "-p", "-t", id])).not.toMatch(/97\d\d~/);

      const phoneName = (await tmux(["list-clients", "-F", "#{client_pid} #{client_name}"]))
        .split("\n")
        .find((l) => l.startsWith(`${phone.pty.pid} `))!
        .split(" ")[1];
      expect(await tmux(["show-options", "-sqv", `@berth-view-${phoneName}`])).toBe("claude");
      // The phone leaves: the desktop is the window's only client and gets the layout.
      phone.close();
      await waitUntil(
        async () => (await windowState("views-2")) === "0 200",
        "the layout after the phone left",
      );
      // Its view left with it.
      expect(await tmux(["show-options", "-sqv", `@berth-view-${phoneName}`])).toBe("");
    } finally {
      phone.close();
      desk.close();
    }
  });

  it("gives sessions laid out before views the zoom-aware resize hook", async () => {
    await t.sessions.ensure("views-old");
    // As a session made by an earlier agent had it: select-layout on every resize, which unzooms.
    await tmux(["set-hook", "-t", "views-old", "window-resized", "select-layout main-vertical"]);
    await tmux(["set-option", "-su", "@berth-views"]);
    await t.sessions.ensure("views-old");
    expect(await tmux(["show-hooks", "-t", "views-old", "window-resized"])).toContain("window_zoomed_flag");
    expect(await tmux(["show-options", "-sqv", "@berth-views"])).toBe(PANE_VIEWS_VERSION);
  });

  it("leaves a zoom the user made alone", async () => {
    await t.sessions.ensure("views-3");
    const panes = await t.sessions.panes("views-3");
    const desk = await attached("views-3", 150, 40);
    try {
      await tmux(["resize-pane", "-Z", "-t", panes.shell!]);
      desk.type(VIEW_KEYS.layout);
      desk.type("echo still-zoomed\r");
      await waitUntil(async () => (await screen(panes.shell!)).includes("still-zoomed"), "the typing");
      expect(await windowState("views-3")).toBe("1 150");
    } finally {
      desk.close();
    }
  });
});
