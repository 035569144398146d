// A run's output in the page: stdout and stderr told apart, ANSI colours rendered, the
// head and the tail of a large output only, updates batched per animation frame (a run
// printing ten thousand lines a second keeps the tab responsive), follow/pause scrolling
// and search.

import { AnsiText, styleElement } from "/ui/ansi.js";
import { h } from "/ui/dom.js";

export const HEAD_CHARS = 1 << 20; // the first MiB is kept...
export const TAIL_CHARS = 1 << 20; // ...and the last: never more than a few MB in the page
const MAX_MATCHES = 10000;

export class OutputView {
  constructor() {
    this.head = h("span", { class: "head" });
    this.gapNote = h("span", { class: "gap note", hidden: true });
    this.tail = h("span", { class: "tail" });
    this.pre = h("pre", { class: "output", tabindex: "0", "aria-label": "output" }, this.head, this.gapNote, this.tail);
    this.queue = [];
    this.queued = 0;
    this.frame = null;
    this.received = 0; // characters written so far
    this.headChars = 0;
    this.tailChars = 0;
    this.hidden = 0; // characters dropped from the page to keep it small
    this.gapText = "";
    this.restart();
    this.follow = true;
    this.onFollow = () => {};
    this.matches = [];
    this.current = -1;
    this.query = "";
    this.onMatches = () => {};
    this.searchTimer = null;
    // Scrolling up (wheel, keys) pauses following; the Follow button resumes it.
    this.pre.addEventListener("wheel", (event) => event.deltaY < 0 && this.setFollow(false), { passive: true });
    this.pre.addEventListener("keydown", (event) => {
      if (["ArrowUp", "PageUp", "Home"].includes(event.key)) this.setFollow(false);
    });
  }

  restart() {
    this.ansi = { stdout: new AnsiText(), stderr: new AnsiText() };
    this.carriage = { stdout: false, stderr: false };
  }

  get headFull() {
    return this.received >= HEAD_CHARS;
  }

  // Output text of one stream (already decoded).
  write(stream, text) {
    if (!text) return;
    this.received += text.length;
    this.push({ stream, text });
  }

  // A line of the page's own (bytes not kept, a gap), between the output.
  note(text) {
    this.push({ note: text });
  }

  // What the middle gap says: the page shows the head and the tail only.
  gap(text) {
    this.gapText = text;
    this.push({ gap: true });
  }

  push(item) {
    this.queue.push(item);
    this.queued += item.text ? item.text.length : 0;
    // No frames come while the tab is hidden: do the work now rather than pile it up.
    if (this.queued > HEAD_CHARS + 2 * TAIL_CHARS) this.flush();
    else if (this.frame === null) this.frame = requestAnimationFrame(() => this.flush());
  }

  flush() {
    if (this.frame !== null) cancelAnimationFrame(this.frame);
    this.frame = null;
    const items = this.queue;
    this.queue = [];
    this.queued = 0;
    const head = document.createDocumentFragment();
    const tail = document.createDocumentFragment();
    for (const item of items) {
      if (item.gap) {
        this.showGap();
        this.restart(); // the tail starts somewhere in the middle
      } else if (item.note !== undefined) {
        const note = h("span", { class: "note" }, `${item.note}\n`);
        if (this.headChars < HEAD_CHARS) head.append(note);
        else {
          tail.append(note);
          this.tailChars += note.textContent.length;
        }
      } else {
        for (const piece of this.ansi[item.stream].push(this.lines(item.stream, item.text))) {
          this.place(head, tail, item.stream, piece);
        }
      }
    }
    this.head.append(head);
    this.tail.append(tail);
    this.trim();
    if (this.follow) this.pre.scrollTop = this.pre.scrollHeight;
    if (this.query) this.searchSoon();
  }

  // CR LF and a lone CR end a line (a progress bar's updates each get one).
  lines(stream, text) {
    if (this.carriage[stream]) text = "\r" + text;
    this.carriage[stream] = text.endsWith("\r");
    if (this.carriage[stream]) text = text.slice(0, -1);
    return text.indexOf("\r") < 0 ? text : text.replace(/\r\n?/g, "\n");
  }

  place(head, tail, stream, piece) {
    let text = piece.text;
    const room = HEAD_CHARS - this.headChars;
    if (room > 0) {
      const part = text.slice(0, room);
      head.append(this.node(stream, piece.style, part));
      this.headChars += part.length;
      text = text.slice(room);
    }
    if (text) {
      tail.append(this.node(stream, piece.style, text));
      this.tailChars += text.length;
    }
  }

  node(stream, style, text) {
    if (stream === "stdout" && style === null) return document.createTextNode(text);
    const span = h("span", stream === "stderr" ? { class: "stderr" } : {}, text);
    if (style !== null) styleElement(span, style);
    return span;
  }

  // Keep the last TAIL_CHARS: drop the oldest of the tail.
  trim() {
    let excess = this.tailChars - TAIL_CHARS;
    if (excess <= 0) return;
    this.hidden += excess;
    this.tailChars -= excess;
    while (excess > 0 && this.tail.firstChild) {
      const first = this.tail.firstChild;
      const size = first.textContent.length;
      if (size <= excess) {
        first.remove();
        excess -= size;
      } else {
        const text = first.nodeType === Node.TEXT_NODE ? first : first.firstChild;
        text.deleteData(0, excess);
        excess = 0;
      }
    }
    this.showGap();
  }

  showGap() {
    const hidden = this.hidden ? `${this.hidden.toLocaleString("en")} characters are not shown here. ` : "";
    this.gapNote.textContent = `\n[… ${this.gapText || hidden}Download the output to read all of it …]\n\n`;
    this.gapNote.hidden = false;
  }

  setFollow(on) {
    if (this.follow === on) return;
    this.follow = on;
    if (on) this.pre.scrollTop = this.pre.scrollHeight;
    this.onFollow(on);
  }

  // -- search ----------------------------------------------------------------------------

  search(query) {
    this.query = query;
    this.current = -1;
    this.findMatches();
    if (this.matches.length) this.step(1);
  }

  step(direction) {
    if (!this.matches.length) return;
    this.current = (this.current + direction + this.matches.length) % this.matches.length;
    this.setFollow(false);
    const range = this.matches[this.current];
    if (globalThis.CSS && CSS.highlights) CSS.highlights.set("evercron-current", new Highlight(range));
    const where = range.getBoundingClientRect();
    const box = this.pre.getBoundingClientRect();
    this.pre.scrollTop += where.top - box.top - this.pre.clientHeight / 3;
    this.onMatches(this.current + 1, this.matches.length);
  }

  searchSoon() {
    if (this.searchTimer !== null) return;
    this.searchTimer = setTimeout(() => {
      this.searchTimer = null;
      this.findMatches();
    }, 1000);
  }

  findMatches() {
    this.matches = [];
    const needle = this.query.toLowerCase();
    if (needle) {
      const walker = document.createTreeWalker(this.pre, NodeFilter.SHOW_TEXT);
      for (let node; (node = walker.nextNode()) && this.matches.length < MAX_MATCHES; ) {
        const text = node.data.toLowerCase();
        for (let at = text.indexOf(needle); at >= 0 && this.matches.length < MAX_MATCHES; at = text.indexOf(needle, at + needle.length)) {
          const range = new Range();
          range.setStart(node, at);
          range.setEnd(node, at + needle.length);
          this.matches.push(range);
        }
      }
    }
    if (globalThis.CSS && CSS.highlights) {
      CSS.highlights.set("evercron-search", new Highlight(...this.matches));
      if (this.current < 0 || this.current >= this.matches.length) CSS.highlights.delete("evercron-current");
    }
    this.onMatches(Math.min(this.current + 1, this.matches.length), this.matches.length);
  }
}
