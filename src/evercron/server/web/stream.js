// A run's output stream (GET /api/v1/runs/{id}/output?follow=1): server-sent events whose
// data is one line of JSON, read with fetch so the token goes in a header.

import { authorization } from "/ui/api.js";

const RETRIES = 20; // a stream ends at each hot upgrade: resume on the new process
const RETRY_MS = 250;

// Follow a run's output until its `end` event, calling onEvent({id, kind, data}) for each
// event, resuming with Last-Event-ID when the stream breaks. With `tail`, start at the
// last `tail` bytes. Resolves to "end", "aborted" or an error message.
export async function followOutput(runId, { tail = null, signal, onEvent }) {
  let lastId = null;
  for (let attempt = 0; attempt <= RETRIES; attempt++) {
    if (signal.aborted) return "aborted";
    const headers = authorization({ Accept: "text/event-stream" });
    if (lastId !== null) headers["Last-Event-ID"] = lastId;
    const query = tail === null ? "" : `&tail=${tail}`;
    try {
      const response = await fetch(`/api/v1/runs/${runId}/output?follow=1${query}`, { headers, signal });
      if (!response.ok) {
        let reason = `HTTP ${response.status}`;
        try {
          reason = (await response.json()).error || reason;
        } catch {}
        return reason;
      }
      for await (const event of events(response.body)) {
        if (event.id !== null) lastId = event.id;
        if (onEvent(event) === "stop") return "aborted";
        if (event.kind === "end") return "end";
      }
    } catch (error) {
      if (signal.aborted) return "aborted";
    }
    await new Promise((resolve) => setTimeout(resolve, RETRY_MS));
  }
  return "the output stream broke too often";
}

async function* events(body) {
  const reader = body.getReader();
  const decoder = new TextDecoder();
  let buffer = "";
  try {
    for (;;) {
      const { value, done } = await reader.read();
      if (done) return;
      buffer += decoder.decode(value, { stream: true });
      let start = 0;
      let end;
      while ((end = buffer.indexOf("\n\n", start)) >= 0) {
        yield parse(buffer.slice(start, end));
        start = end + 2;
      }
      buffer = buffer.slice(start);
    }
  } finally {
    reader.releaseLock();
  }
}

function parse(text) {
  // The daemon writes one `data:` line of JSON per event; CR and LF inside are escaped.
  const event = { id: null, kind: "message", data: null };
  for (const line of text.split("\n")) {
    const colon = line.indexOf(":");
    if (colon <= 0) continue; // a comment (heartbeat) or nothing
    const field = line.slice(0, colon);
    const value = line.slice(colon + 1).replace(/^ /, "");
    if (field === "id") event.id = value;
    else if (field === "event") event.kind = value;
    else if (field === "data") event.data = JSON.parse(value);
  }
  return event;
}

// Output text as the API sends it: bytes that are not UTF-8 arrive as U+DC80..U+DCFF (one
// per byte). They become bytes again and each stream is decoded as one, so a character
// split across two chunks shows whole.
export class OutputText {
  constructor() {
    this.decoders = { stdout: new TextDecoder(), stderr: new TextDecoder() };
    this.encoder = new TextEncoder();
  }

  decode(stream, text) {
    return this.decoders[stream].decode(this.bytes(text), { stream: true });
  }

  // What each stream still holds (an unfinished character), e.g. before a gap.
  flush() {
    return Object.fromEntries(Object.entries(this.decoders).map(([name, decoder]) => [name, decoder.decode()]));
  }

  bytes(text) {
    if (!/[\uDC80-\uDCFF]/u.test(text)) return this.encoder.encode(text);
    const parts = text
      .split(/([\uDC80-\uDCFF]+)/u)
      .map((piece) =>
        /^[\uDC80-\uDCFF]/u.test(piece) ? Uint8Array.from(piece, (c) => c.charCodeAt(0) - 0xdc00) : this.encoder.encode(piece),
      );
    const joined = new Uint8Array(parts.reduce((size, part) => size + part.length, 0));
    let at = 0;
    for (const part of parts) {
      joined.set(part, at);
      at += part.length;
    }
    return joined;
  }
}
