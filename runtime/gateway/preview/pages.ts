/**
 * The proxy's own HTML pages. They are static text: no request data and never a box address, so nothing
 * in them can leak where a preview runs or reflect script.
 */
const STYLE =
  "body{font:16px/1.5 system-ui,sans-serif;max-width:36rem;margin:4rem auto;padding:0 1rem;color:#222}" +
  "h1{font-size:1.3rem}p{color:#555}";

const PAGES = {
  upstream_down: {
    status: 502,
    title: "The dev server is not answering",
    text: "Berth reached the workspace, but nothing answered on this preview's port. Start the dev server (or check that it listens on 0.0.0.0 or the box's address), then reload.",
  },
  box_not_running: {
    status: 502,
    title: "The workspace is not running",
    text: "This preview's workspace is asleep or stopped. Wake it from Berth, then reload.",
  },
  port_forbidden: {
    status: 403,
    title: "This port cannot be previewed",
    text: "Previews use ports 1024-65535, except the box's own services.",
  },
  not_own_listener: {
    status: 403,
    title: "This port is not the workspace's",
    text: "A process outside this workspace listens on this port. Previews only reach dev servers started in the workspace.",
  },
  bad_path: {
    status: 400,
    title: "Bad request path",
    text: "The path contains segments the preview proxy does not forward.",
  },
  not_found: {
    status: 404,
    title: "Preview not found",
    text: "There is no open preview here, or it is not yours.",
  },
  sign_in: {
    status: 401,
    title: "Open this preview from Berth",
    text: "Previews on their own host need a fresh sign-in link. Open it again from Berth, or ask its owner for a share link.",
  },
  link_invalid: {
    status: 401,
    title: "This link no longer works",
    text: "The sign-in code was used or expired, or the share link was revoked. Open the preview again from Berth.",
  },
  forbidden_origin: {
    status: 403,
    title: "Cross-origin WebSocket refused",
    text: "A preview's WebSocket may only be opened by the preview's own pages.",
  },
} as const;

export type PageName = keyof typeof PAGES;

export function page(name: PageName): { status: number; html: string } {
  const p = PAGES[name];
  return {
    status: p.status,
    html: `<!doctype html><html lang="en"><head><meta charset="utf-8"><meta name="viewport" content="width=device-width,initial-scale=1"><title>${p.title}</title><style>${STYLE}</style></head><body><h1>${p.title}</h1><p>${p.text}</p><p><small>Berth preview proxy · ${p.status}</small></p></body></html>`,
  };
}

/** For WebSocket handshakes, where only a status line and a short text body fit. */
export const REASONS: Record<number, string> = {
  400: "Bad Request",
  401: "Unauthorized",
  403: "Forbidden",
  404: "Not Found",
  502: "Bad Gateway",
  503: "Service Unavailable",
};
