/**
 * An SSE stream that stays open. The browser's EventSource reconnects a dropped stream by itself (with
 * Last-Event-ID), but gives up for good on an answer that is not a stream, such as a proxy's 502 while the
 * control plane restarts: then a new one is opened after a pause that grows from 2 s to a minute.
 */
export function followStream(url: string, listen: (source: EventSource) => void): { close(): void } {
  let source: EventSource | null = null;
  let reopen: ReturnType<typeof setTimeout> | undefined;
  let failures = 0;
  let closed = false;
  const open = () => {
    const es = new EventSource(url);
    source = es;
    es.addEventListener("open", () => {
      failures = 0;
    });
    es.addEventListener("error", () => {
      if (closed || es.readyState !== EventSource.CLOSED) return;
      reopen = setTimeout(open, Math.min(60, 2 * 2 ** failures++) * 1000);
    });
    listen(es);
  };
  open();
  return {
    close() {
      closed = true;
      clearTimeout(reopen);
      source?.close();
    },
  };
}
