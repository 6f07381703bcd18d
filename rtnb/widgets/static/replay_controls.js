// @ts-check
/**
 * Replay controls: play / pause, speed, and a scrub bar over the recording's
 * time with incidents marked. Seeks are sent when the bar is released (or
 * clicked), not on every pixel of a drag, so a drag costs one seek.
 */

/** @param {number} t unix seconds */
function clock(t) {
  return new Date(t * 1000).toISOString().slice(11, 19) + " UTC";
}

const SPEEDS = [1, 10, 20, 60, 600, null];

/** @param {{ model: any, el: HTMLElement }} ctx */
function render({ model, el }) {
  const root = document.createElement("div");
  root.className = "rtnb-replay";
  root.setAttribute("role", "group");
  root.setAttribute("aria-label", "Replay controls");

  const play = document.createElement("button");
  play.className = "rtnb-replay-play";
  play.type = "button";

  const speed = document.createElement("select");
  speed.className = "rtnb-replay-speed";
  speed.setAttribute("aria-label", "Speed");
  /** @param {number | null} s */
  function speedOption(s) {
    const opt = document.createElement("option");
    opt.value = s === null ? "max" : String(s);
    opt.textContent = s === null ? "max" : `${s}×`;
    return opt;
  }
  for (const s of SPEEDS) speed.append(speedOption(s));

  const track = document.createElement("div");
  track.className = "rtnb-replay-track";
  const marks = document.createElement("div");
  marks.className = "rtnb-replay-marks";
  const bar = document.createElement("input");
  bar.type = "range";
  bar.className = "rtnb-replay-bar";
  bar.min = "0";
  bar.max = "1000";
  bar.step = "1";
  bar.setAttribute("aria-label", "Recording time");
  track.append(marks, bar);

  const label = document.createElement("span");
  label.className = "rtnb-replay-time";
  label.setAttribute("aria-live", "off");
  const note = document.createElement("div");
  note.className = "rtnb-replay-note";

  root.append(play, speed, track, label, note);
  el.append(root);

  let dragging = false;
  const span = () => Math.max(1e-9, model.get("end") - model.get("start"));
  const toValue = (/** @type {number} */ t) =>
    String(Math.round(((t - model.get("start")) / span()) * 1000));
  const toTime = (/** @type {string} */ v) => model.get("start") + (Number(v) / 1000) * span();

  function drawMarks() {
    marks.replaceChildren();
    for (const inc of model.get("incidents") || []) {
      const m = document.createElement("div");
      m.className = "rtnb-replay-incident";
      const left = ((inc.start - model.get("start")) / span()) * 100;
      const width = Math.max(0.5, ((inc.end - inc.start) / span()) * 100);
      m.style.left = `${Math.max(0, left)}%`;
      m.style.width = `${Math.min(100 - Math.max(0, left), width)}%`;
      m.title = `incident ${clock(inc.start)}–${clock(inc.end)} ${inc.reason || ""}`;
      marks.append(m);
    }
    if (model.get("seeded")) {
      const w = document.createElement("div");
      w.className = "rtnb-replay-window";
      w.style.left = "0%";
      w.style.width = `${((model.get("window_start") - model.get("start")) / span()) * 100}%`;
      w.title = "before the recorded frames: no state shown";
      marks.append(w);
      note.textContent = `Frames begin at ${clock(model.get("window_start"))} (from a seed snapshot).`;
    } else {
      note.textContent = "";
    }
  }

  /** @type {number | null} where the last seek asked for, until the kernel is there */
  let target = null;

  function drawPosition() {
    const seeking = model.get("seeking");
    const position = model.get("position");
    if (target !== null && Math.abs(position - target) <= span() / 1000) target = null;
    if (!dragging && target === null) bar.value = toValue(position);
    const at = dragging ? toTime(bar.value) : (target ?? position);
    label.textContent =
      target !== null && seeking >= 0
        ? `${clock(at)} · seeking ${Math.round(seeking * 100)}%`
        : clock(at);
    root.dataset.seeking = String(seeking >= 0);
  }

  function drawPlaying() {
    const on = model.get("playing");
    play.textContent = on ? "❚❚ Pause" : "▶ Play";
    play.setAttribute("aria-pressed", on ? "true" : "false");
  }

  function drawSpeed() {
    const s = model.get("speed");
    const value = s === null ? "max" : String(s);
    if (!Array.from(speed.options).some((o) => o.value === value)) {
      // a speed set from Python (replay(log, speed=3)) gets its own entry, in order
      const after = Array.from(speed.options).find((o) => o.value === "max" || Number(o.value) > s);
      speed.insertBefore(speedOption(s), after ?? null);
    }
    speed.value = value;
  }

  play.addEventListener("click", () => {
    model.send({ t: model.get("playing") ? "pause" : "play" });
  });
  speed.addEventListener("change", () => {
    model.send({ t: "speed", speed: speed.value === "max" ? null : Number(speed.value) });
  });
  bar.addEventListener("input", () => {
    dragging = true;
    drawPosition();
  });
  bar.addEventListener("change", () => {
    dragging = false;
    const at = /** @type {number} */ (toTime(bar.value));
    target = at;
    model.send({ t: "seek", at });
    label.textContent = clock(at);
  });

  model.on("change:position", drawPosition);
  model.on("change:seeking", () => {
    if (model.get("seeking") < 0) target = null; // done (position came with it)
    drawPosition();
  });
  model.on("change:playing", drawPlaying);
  model.on("change:speed", drawSpeed);
  model.on("change:incidents", drawMarks);
  drawMarks();
  drawPosition();
  drawPlaying();
  drawSpeed();
  return () => root.remove();
}

export default { render };
