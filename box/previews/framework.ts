/**
 * Guesses what kind of server a process is from its command line. The guess labels previews in the UI and
 * decides `http` versus plain `tcp`; it never decides whether a port is exposed (the port range and the
 * process owner do that).
 */

export interface FrameworkGuess {
  framework: string | null;
  protocol: "http" | "tcp";
  /** A short display name: the program, or the script it runs for interpreters like node and python. */
  process: string;
}

interface Rule {
  framework: string;
  test: (args: string[], joined: string) => boolean;
}

const base = (p: string) => p.split("/").pop() ?? p;
const has = (args: string[], re: RegExp) => args.some((a) => re.test(base(a)));

// Order matters: a more specific tool wins over the runtime that hosts it.
const RULES: Rule[] = [
  {
    framework: "vite",
    test: (a) => has(a, /^vite(\.js)?$/) || a.some((x) => /\/vite\/bin\/vite\.js$/.test(x)),
  },
  {
    framework: "next",
    test: (a, j) => has(a, /^next$/) || /\bnext-server\b/.test(j) || /\/next\/dist\/bin\/next$/.test(j),
  },
  { framework: "astro", test: (a) => has(a, /^astro(\.js|\.mjs)?$/) },
  { framework: "nuxt", test: (a) => has(a, /^(nuxt|nuxi)(\.m?js)?$/) },
  { framework: "remix", test: (a) => has(a, /^remix$/) || a.includes("@remix-run/dev") },
  { framework: "sveltekit", test: (a, j) => /svelte-kit/.test(j) && has(a, /^(svelte-kit|vite)$/) },
  {
    framework: "storybook",
    test: (a, j) => has(a, /^(storybook|start-storybook)$/) || /storybook\/bin/.test(j),
  },
  { framework: "gatsby", test: (a) => has(a, /^gatsby$/) },
  { framework: "angular", test: (a) => has(a, /^ng$/) && a.includes("serve") },
  {
    framework: "webpack-dev-server",
    test: (a, j) => has(a, /^webpack(-dev-server)?$/) && /serve|dev-server/.test(j),
  },
  { framework: "parcel", test: (a) => has(a, /^parcel$/) },
  {
    framework: "rails",
    test: (a, j) =>
      (has(a, /^rails$/) && /\b(s|server)\b/.test(j)) ||
      /\bpuma\b.*\b(tcp|ssl):\/\//.test(j) ||
      has(a, /^puma$/),
  },
  { framework: "django", test: (a) => a.some((x) => base(x) === "manage.py") && a.includes("runserver") },
  { framework: "flask", test: (a, j) => has(a, /^flask$/) || /-m flask\b/.test(j) },
  {
    framework: "fastapi",
    test: (a, j) => has(a, /^(uvicorn|fastapi|hypercorn)$/) || /-m (uvicorn|fastapi)\b/.test(j),
  },
  { framework: "gunicorn", test: (a) => has(a, /^gunicorn$/) },
  { framework: "python-http.server", test: (_a, j) => /-m\s+(http\.server|SimpleHTTPServer)\b/.test(j) },
  {
    framework: "jupyter",
    test: (a, j) => has(a, /^jupyter(-lab|-notebook)?$/) || /-m (jupyter|jupyterlab|notebook)\b/.test(j),
  },
  { framework: "streamlit", test: (a) => has(a, /^streamlit$/) },
  { framework: "hugo", test: (a) => has(a, /^hugo$/) && a.includes("server") },
  { framework: "jekyll", test: (a) => has(a, /^jekyll$/) && a.some((x) => x === "serve" || x === "s") },
  { framework: "php", test: (a) => has(a, /^php[0-9.]*$/) && a.includes("-S") },
  { framework: "http-server", test: (a) => has(a, /^(http-server|serve|live-server)$/) },
];

const INTERPRETERS = /^(node|nodejs|bun|deno|python[0-9.]*|ruby[0-9.]*|php[0-9.]*|java|sh|bash)$/;

export function guessFramework(argv: readonly string[]): FrameworkGuess {
  const args = argv.filter((a) => a !== "");
  const joined = args.join(" ");
  const rule = RULES.find((r) => r.test(args, joined));
  return {
    framework: rule?.framework ?? null,
    protocol: rule ? "http" : "tcp",
    process: displayName(args),
  };
}

function displayName(args: string[]): string {
  if (args.length === 0) return "unknown";
  const prog = base(args[0]!);
  // A process that rewrote its title ("next-server (v15.0.0)") shows up as a single argv element.
  if (args.length === 1) return args[0]!.slice(0, 200);
  if (INTERPRETERS.test(prog)) {
    const m = args.indexOf("-m");
    if (m >= 0 && args[m + 1]) return `${prog} -m ${args[m + 1]}`.slice(0, 200);
    const script = args.slice(1).find((a) => !a.startsWith("-"));
    if (script) return `${prog} ${base(script)}`.slice(0, 200);
  }
  return prog.slice(0, 200);
}
