import { useEffect, useState } from "preact/hooks";
import { copyText } from "./clipboard.ts";

/** A Copy button that says "Copied" for a moment (and "Copy failed" when the browser refused). */
export function CopyButton({ text, label = "Copy", name }: { text: string; label?: string; name?: string }) {
  const [done, setDone] = useState<"copied" | "failed" | null>(null);
  useEffect(() => {
    if (!done) return;
    const t = setTimeout(() => setDone(null), 1800);
    return () => clearTimeout(t);
  }, [done]);
  return (
    <button
      type="button"
      class={`copy ${done ?? ""}`}
      aria-label={name}
      onClick={async () => setDone((await copyText(text)) ? "copied" : "failed")}
    >
      {done === "copied" ? "Copied" : done === "failed" ? "Copy failed" : label}
    </button>
  );
}
