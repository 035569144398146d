// Building elements. Every string becomes a text node or an attribute value, never markup,
// so a job's name, command or output can never turn into HTML.

const SVG = "http://www.w3.org/2000/svg";

// h("a", {href: "/runs/1", class: "mark", on: {click: f}}, "text", child, ...)
export function h(tag, props = {}, ...children) {
  return build(document.createElement(tag), props, children);
}

// The same for SVG elements (the run chart).
export function svg(tag, props = {}, ...children) {
  return build(document.createElementNS(SVG, tag), props, children);
}

function build(element, props, children) {
  for (const [key, value] of Object.entries(props)) {
    if (value === null || value === undefined || value === false) continue;
    if (key === "on") {
      for (const [event, handler] of Object.entries(value)) element.addEventListener(event, handler);
    } else if (key === "dataset") {
      Object.assign(element.dataset, value);
    } else if (key === "text") {
      element.textContent = value;
    } else if (key === "hidden" || key === "disabled" || key === "checked" || key === "value") {
      element[key] = value;
    } else {
      element.setAttribute(key, value === true ? "" : String(value));
    }
  }
  append(element, children);
  return element;
}

function append(element, children) {
  for (const child of children) {
    if (child === null || child === undefined || child === false) continue;
    if (Array.isArray(child)) append(element, child);
    else element.append(child instanceof Node ? child : String(child));
  }
}

// A button that runs `handler`; it is disabled while the handler's promise is pending.
export function button(label, handler, props = {}) {
  const element = h("button", { type: "button", ...props }, label);
  element.addEventListener("click", async (event) => {
    element.disabled = true;
    try {
      await handler(event);
    } finally {
      element.disabled = false;
    }
  });
  return element;
}

// Replace what a container shows.
export function show(container, ...children) {
  container.replaceChildren();
  append(container, children);
  return container;
}

// Make `tbody` hold `rows` in order: rows no longer shown go first, so that rows kept
// never move (moving one would take the keyboard's focus from a link or button in it).
export function placeRows(tbody, rows) {
  const kept = new Set(rows);
  for (const row of [...tbody.children]) if (!kept.has(row)) row.remove();
  rows.forEach((row, index) => {
    const there = tbody.children[index];
    if (there !== row) tbody.insertBefore(row, there || null);
  });
}

// Call `action` once input has paused for `ms`.
export function debounce(action, ms) {
  let timer = null;
  return (...args) => {
    clearTimeout(timer);
    timer = setTimeout(() => action(...args), ms);
  };
}
