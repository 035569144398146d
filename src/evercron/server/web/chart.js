// The job page's chart, drawn from the runs themselves: for each run (oldest on the left)
// a bar of its duration and a dot of its start delay (started minus scheduled), coloured
// by status, failures marked with a cross above the bar. Each mark links to its run.

import { h, svg } from "/ui/dom.js";
import { FAILED } from "/ui/parts.js";
import { brief, duration, seconds } from "/ui/time.js";

const WIDTH = 600;
const LEFT = 76;
const TOP = { duration: 20, delay: 146 };
const HEIGHT = { duration: 100, delay: 44 };

export function runChart(newestFirst) {
  const runs = [...newestFirst].reverse().filter((run) => run.started_at);
  if (!runs.length) return h("p", { class: "hint" }, "No runs have started yet.");
  const durations = runs.map((run) => seconds(run.started_at, run.finished_at || new Date().toISOString()));
  const delays = runs.map((run) => Math.max(0, seconds(run.scheduled_at, run.started_at)));
  const most = { duration: Math.max(...durations, 0.001), delay: Math.max(...delays, 0.001) };
  const slot = (WIDTH - LEFT) / Math.max(runs.length, 20);
  const marks = runs.map((run, index) => {
    const x = LEFT + slot * index + slot / 2;
    const tall = (durations[index] / most.duration) * HEIGHT.duration;
    const y = TOP.delay + HEIGHT.delay - (delays[index] / most.delay) * HEIGHT.delay;
    const failed = FAILED.has(run.status);
    const label = `run ${run.id} ${run.status.replace("_", " ")}: duration ${duration(durations[index])}, start delay ${duration(delays[index])}`;
    return svg(
      "a",
      { href: `/runs/${run.id}`, class: `mark status-${run.status}`, tabindex: "-1", dataset: { run: String(run.id), status: run.status } },
      svg("title", {}, label),
      svg("rect", {
        class: "bar",
        x: (x - slot * 0.35).toFixed(1),
        y: (TOP.duration + HEIGHT.duration - Math.max(tall, 1)).toFixed(1),
        width: (slot * 0.7).toFixed(1),
        height: Math.max(tall, 1).toFixed(1),
      }),
      svg("circle", { class: "dot", cx: x.toFixed(1), cy: y.toFixed(1), r: Math.min(3, slot * 0.4).toFixed(1) }),
      failed ? svg("path", { class: "failure", d: cross(x, TOP.duration - 7, Math.min(4, slot * 0.4)) }) : null,
    );
  });
  return svg(
    "svg",
    { class: "chart", viewBox: `0 0 ${WIDTH} 200`, role: "img", "aria-label": `duration and start delay of the last ${runs.length} runs` },
    axis("duration", most.duration),
    axis("delay", most.delay),
    marks,
  );
}

function axis(series, most) {
  const top = TOP[series];
  const bottom = top + HEIGHT[series];
  return svg(
    "g",
    { class: "axis" },
    svg("line", { x1: LEFT - 4, x2: WIDTH, y1: bottom, y2: bottom }),
    svg("line", { x1: LEFT - 4, x2: LEFT - 4, y1: top, y2: bottom }),
    svg("text", { x: LEFT - 8, y: top + 8, "text-anchor": "end" }, brief(most)),
    svg("text", { x: LEFT - 8, y: bottom, "text-anchor": "end" }, "0"),
    svg("text", { x: LEFT - 8, y: top + 22, "text-anchor": "end", class: "series" }, series === "duration" ? "duration" : "start delay"),
  );
}

function cross(x, y, size) {
  return `M${x - size} ${y - size}L${x + size} ${y + size}M${x - size} ${y + size}L${x + size} ${y - size}`;
}
