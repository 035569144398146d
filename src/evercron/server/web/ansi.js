// ANSI escape sequences in output: SGR colours and attributes become styled pieces of
// text; every other sequence (cursor moves, titles, erases) is dropped, never shown raw.
// The state carries across chunks, and a sequence split between two chunks is joined.

// CSI (ESC [ params final), OSC (ESC ] ... BEL or ESC \), other two-byte escapes.
const ESCAPE = /\x1b(?:\[([0-9;:?<>=!]*)[ -\/]*([@-~])|\][^\x07\x1b]*(?:\x07|\x1b\\)|[ -\/]*[0-~])/g;
// An escape that may continue in the next chunk.
const UNFINISHED = /\x1b(?:\[[0-9;:?<>=!]*[ -\/]*|\][^\x07\x1b]*\x1b?|[ -\/]*)$/;
// Control characters that have no place in a page (tab, newline and CR are kept).
const CONTROL = /[\x00-\x08\x0b\x0c\x0e-\x1a\x1c-\x1f\x7f]/g;

const PLAIN = Object.freeze({ fg: null, bg: null, bold: false, dim: false, italic: false, underline: false, inverse: false, strike: false });

export class AnsiText {
  constructor() {
    this.style = PLAIN;
    this.pending = "";
  }

  // The pieces of `text`: [{text, style}], style null when plain.
  push(text) {
    text = this.pending + text;
    this.pending = "";
    const unfinished = UNFINISHED.exec(text);
    if (unfinished && unfinished[0].length < 256) {
      this.pending = unfinished[0];
      text = text.slice(0, unfinished.index);
    }
    const pieces = [];
    let at = 0;
    ESCAPE.lastIndex = 0;
    for (let found; (found = ESCAPE.exec(text)); ) {
      this.piece(pieces, text.slice(at, found.index));
      at = ESCAPE.lastIndex;
      if (found[2] === "m" && found[1] !== undefined && !/[?<>=!]/.test(found[1])) {
        this.style = apply(this.style, found[1]);
      }
    }
    this.piece(pieces, text.slice(at));
    return pieces;
  }

  piece(pieces, text) {
    text = text.replace(CONTROL, "");
    if (!text) return;
    const style = this.style === PLAIN ? null : this.style;
    const last = pieces[pieces.length - 1];
    if (last && last.style === style) last.text += text;
    else pieces.push({ text, style });
  }
}

function apply(style, params) {
  const groups = params === "" ? ["0"] : params.split(";");
  let next = { ...style };
  for (let i = 0; i < groups.length; i++) {
    const sub = groups[i].split(":").map((p) => (p === "" ? 0 : Number(p)));
    const code = sub[0];
    if (code === 0) next = { ...PLAIN };
    else if (code === 1) next.bold = true;
    else if (code === 2) next.dim = true;
    else if (code === 3) next.italic = true;
    else if (code === 4) next.underline = true;
    else if (code === 7) next.inverse = true;
    else if (code === 9) next.strike = true;
    else if (code === 21 || code === 22) next.bold = next.dim = false;
    else if (code === 23) next.italic = false;
    else if (code === 24) next.underline = false;
    else if (code === 27) next.inverse = false;
    else if (code === 29) next.strike = false;
    else if (code >= 30 && code <= 37) next.fg = code - 30;
    else if (code >= 90 && code <= 97) next.fg = code - 90 + 8;
    else if (code === 39) next.fg = null;
    else if (code >= 40 && code <= 47) next.bg = code - 40;
    else if (code >= 100 && code <= 107) next.bg = code - 100 + 8;
    else if (code === 49) next.bg = null;
    else if (code === 38 || code === 48) {
      // 38;5;N and 38;2;R;G;B, or with colons: 38:5:N and 38:2:[space]:R:G:B.
      const rest = sub.length > 1 ? sub.slice(1) : groups.slice(i + 1, i + 5).map(Number);
      const colour = extended(rest);
      if (sub.length === 1) i += rest[0] === 5 ? 2 : rest[0] === 2 ? 4 : 0;
      if (code === 38) next.fg = colour;
      else next.bg = colour;
    }
  }
  const plain = Object.keys(PLAIN).every((key) => next[key] === PLAIN[key]);
  return plain ? PLAIN : Object.freeze(next);
}

function extended(rest) {
  if (rest[0] === 5) return rest[1] >= 0 && rest[1] <= 255 ? rest[1] : null;
  if (rest[0] === 2 && rest.length >= 4) {
    const rgb = rest.length >= 5 ? rest.slice(-3) : rest.slice(1, 4);
    return `rgb(${rgb.map((c) => Math.max(0, Math.min(255, c || 0))).join(",")})`;
  }
  return null;
}

// An element's look for a style: classes for the 16 colours and the attributes, a colour
// of its own (through CSSOM, allowed by the page's CSP) for 256 colours and RGB.
export function styleElement(element, style) {
  const classes = [];
  let fg = style.fg;
  let bg = style.bg;
  if (style.inverse) [fg, bg] = [bg === null ? "inverse-fg" : bg, fg === null ? "inverse-bg" : fg];
  colour(element, classes, "fg", fg);
  colour(element, classes, "bg", bg);
  for (const key of ["bold", "dim", "italic", "underline", "strike"]) if (style[key]) classes.push(`ansi-${key}`);
  element.className += (element.className ? " " : "") + classes.join(" ");
}

function colour(element, classes, which, value) {
  if (value === null || value === undefined) return;
  if (typeof value === "string" && value.startsWith("inverse")) classes.push(`ansi-${value}`);
  else if (typeof value === "number" && value < 16) classes.push(`ansi-${which}-${value}`);
  else {
    const css = typeof value === "number" ? palette(value) : value;
    if (which === "fg") element.style.color = css;
    else element.style.backgroundColor = css;
  }
}

// The xterm 256-colour palette above the first 16.
function palette(n) {
  if (n >= 232) {
    const grey = 8 + (n - 232) * 10;
    return `rgb(${grey},${grey},${grey})`;
  }
  const cube = n - 16;
  const level = (c) => (c === 0 ? 0 : 55 + c * 40);
  return `rgb(${level(Math.floor(cube / 36))},${level(Math.floor(cube / 6) % 6)},${level(cube % 6)})`;
}
