// @ts-check
/**
 * Shared front-end helpers for rtnb widgets: the kernel channel (sequence
 * numbers, snapshot requests), freshness texts, icons, the rate-limited live
 * region, one shared ticker, number and time formatting.
 *
 * A plain ES module. rtnb/widgets/assets.py prepends it to each widget's
 * module (dropping the `export` keywords and the widget's import of this
 * file): that is the whole build step.
 */

/**
 * @typedef {{
 *   scope: "topic" | "connection", topic?: string, status: string,
 *   last: number | null, age: number | null, gaps: number, unrecoverable: number,
 *   gapAge: number | null, missing: number | null, entities?: number, error?: string | null,
 *   limit?: string | null,
 *   staleAfter?: number | null, quietAge?: number | null,
 *   conn: string, activity: string, reason: string, transport: string, attempt: number,
 *   retryAt: number | null, retryIn: number | null, lag?: number | null,
 *   topics?: Array<{name: string, status: string, gaps: number, unrecoverable: number,
 *                   missing: number | null, entities: number}>,
 *   history?: Array<{at: number, status: string, previous: string | null,
 *                    reason: string, attempt: number}>
 * }} Fresh
 * @typedef {{ get(name: string): any, send(content: any, callbacks?: any, buffers?: any[]): void,
 *   on(name: string, cb: Function): void, off(name: string, cb?: Function): void,
 *   widget_manager?: any }} Model
 */

/** Seconds a "Gap: …" notice stays in a header strip. */
export const GAP_NOTICE_S = 60;
/** Minimum milliseconds between two live-region announcements. */
export const ANNOUNCE_GAP_MS = 2000;
/** Minimum milliseconds between two snapshot requests. */
export const ASK_GAP_MS = 1000;

/**
 * The words for every status: a verbatim copy of WORDING in rtnb/core/wording.py
 * (tests/widgets/test_wording_parity.py keeps them equal), filled by `fill`.
 */
// wording:begin
export const WORDING = /** @type {Record<string, string>} */ ({
  "live": "Live · updated {age} ago",
  "live_no_data": "Live · no data yet",
  "replaying": "Replaying {missing} missed events",
  "replaying_snapshot": "Replaying — refreshing from the server",
  "stale": "Stale — {as_of}, {activity}",
  "pending": "Connecting — {activity}",
  "quiet": "Quiet — no events for {quiet} (expected within {stale_after})",
  "refused": "Refused — {reason}",
  "forbidden": "Forbidden — the server refused topic “{topic}”",
  "forbidden_all": "Forbidden — the server refused every topic",
  "unknown": "Unknown topic — the server has no topic “{topic}”",
  "unknown_all": "Unknown topics — the server has none of them",
  "closed": "Closed — {reason}",
  "as_of": "data as of {clock}",
  "no_data": "no data yet",
  "no_kernel": "No kernel — {as_of}",
  "kernel_restarted": "Kernel restarted — this output is frozen",
  "recorded": "Recorded {clock} UTC — not live",
});
// wording:end

/**
 * `template` with its `{name}` placeholders filled (as Python's str.format).
 * @param {string} template
 * @param {Record<string, string>} values
 */
export function fill(template, values) {
  return template.replace(/\{(\w+)\}/g, (_, k) => (k in values ? values[k] : `{${k}}`));
}

/** Seconds between two keep-alives unless the kernel says otherwise (`ka`): 1. */
export const KEEPALIVE_S = 1;

/** Status → the style it is drawn in (quiet, no kernel and recorded look stale). */
export const STATUS_STYLE = /** @type {Record<string, string>} */ ({
  quiet: "stale",
  no_kernel: "stale",
  kernel_restarted: "stale",
  recorded: "stale",
  refused: "forbidden",
});

/** Status → the word shown beside its icon (colour is never the only cue). */
export const STATUS_WORDS = /** @type {Record<string, string>} */ ({
  live: "Live",
  replaying: "Replaying",
  stale: "Stale",
  forbidden: "Forbidden",
  unknown: "Unknown topic",
  pending: "Connecting",
  closed: "Closed",
  quiet: "Quiet",
  refused: "Refused",
  no_kernel: "No kernel",
  kernel_restarted: "Kernel restarted",
});

const SVG_NS = "http://www.w3.org/2000/svg";
/** Distinct shapes per status, so the icon reads without colour. */
const ICON_PATHS = /** @type {Record<string, string>} */ ({
  live: "M8 3a5 5 0 1 1 0 10A5 5 0 0 1 8 3z", // filled disc
  replaying: "M8 2.5a5.5 5.5 0 1 1-5.2 3.7l1.7.6A3.7 3.7 0 1 0 8 4.3V6L5 3.4 8 .8z", // arrow circle
  stale: "M8 1.5l7 12.5H1zm-.9 4.5v4h1.8V6zm0 5v1.8h1.8V11z", // warning triangle
  forbidden: "M8 1.5a6.5 6.5 0 1 1 0 13 6.5 6.5 0 0 1 0-13zM3.5 7v2h9V7z", // no-entry disc
  pending: "M8 2a6 6 0 1 1 0 12A6 6 0 0 1 8 2zm0 1.8a4.2 4.2 0 1 0 0 8.4 4.2 4.2 0 0 0 0-8.4z", // ring
  unknown: "M8 1.5a6.5 6.5 0 1 1 0 13 6.5 6.5 0 0 1 0-13zM7 10.5v2h2v-2zm1-7a3 3 0 0 0-3 3h2a1 1 0 1 1 1 1H7v2h2v-.2A3 3 0 0 0 8 3.5z", // disc with "?"
  closed: "M3 3h10v10H3z", // square
  gap: "M8 1l7 7-7 7-7-7z", // diamond
  rejected: "M3.8 2.4L8 6.6l4.2-4.2 1.4 1.4L9.4 8l4.2 4.2-1.4 1.4L8 9.4l-4.2 4.2-1.4-1.4L6.6 8 2.4 3.8z",
  hourglass: "M4 1.5h8v3L9.5 8 12 11.5v3H4v-3L6.5 8 4 4.5zm1.6 1.6v.9L8 7l2.4-3v-.9z",
});

/**
 * A 1em decorative SVG icon (hidden from assistive technology).
 * @param {string} name
 * @returns {SVGSVGElement}
 */
export function icon(name) {
  const svg = document.createElementNS(SVG_NS, "svg");
  svg.setAttribute("viewBox", "0 0 16 16");
  svg.setAttribute("aria-hidden", "true");
  svg.setAttribute("focusable", "false");
  svg.classList.add("rtnb-icon", `rtnb-icon-${name}`);
  const path = document.createElementNS(SVG_NS, "path");
  path.setAttribute("d", ICON_PATHS[name] || ICON_PATHS.pending);
  path.setAttribute("fill", "currentColor");
  path.setAttribute("fill-rule", "evenodd");
  svg.append(path);
  return svg;
}

/**
 * Swap an icon element's shape in place.
 * @param {SVGSVGElement} svg
 * @param {string} name
 */
export function setIcon(svg, name) {
  const path = svg.firstElementChild;
  if (path && svg.dataset.name !== name) {
    svg.dataset.name = name;
    path.setAttribute("d", ICON_PATHS[name] || ICON_PATHS.pending);
  }
}

const intFormat = new Intl.NumberFormat(undefined, { maximumFractionDigits: 0 });
const numFormat = new Intl.NumberFormat(undefined, { maximumFractionDigits: 6 });

/** @param {number} n */
export function fmtInt(n) {
  return intFormat.format(n);
}

/**
 * Milliseconds with sensible precision: "0.42 ms", "4.2 ms", "420 ms".
 * @param {number} ms
 */
export function fmtMs(ms) {
  if (ms < 1) return `${ms.toFixed(2)} ms`;
  if (ms < 10) return `${ms.toFixed(1)} ms`;
  return `${intFormat.format(Math.round(ms))} ms`;
}

/** An ISO-8601 date-time with a zone ("2026-12-02T10:17:53Z", "…+01:00", "….123Z"). */
const ISO_TIME = /^\d{4}-\d\d-\d\dT\d\d:\d\d(:\d\d(\.\d+)?)?(Z|[+-]\d\d:?\d\d)$/;

/** @param {number} n */
const pad2 = (n) => String(n).padStart(2, "0");

/**
 * An ISO-8601 date-time as a person reads it, in the browser's zone: "10:17:53" today,
 * "2026-12-01 10:17:53" another day; anything else unchanged.
 * @param {string} s
 * @param {Date} [now]
 */
export function fmtTimestamp(s, now = new Date()) {
  if (!ISO_TIME.test(s)) return s;
  const d = new Date(s);
  if (Number.isNaN(d.getTime())) return s;
  const time = `${pad2(d.getHours())}:${pad2(d.getMinutes())}:${pad2(d.getSeconds())}`;
  const day = `${d.getFullYear()}-${pad2(d.getMonth() + 1)}-${pad2(d.getDate())}`;
  const today = `${now.getFullYear()}-${pad2(now.getMonth() + 1)}-${pad2(now.getDate())}`;
  return day === today ? time : `${day} ${time}`;
}

/**
 * Column widths (in ch) that fit ``budget``: the widest columns shrink first, level with
 * each other, never below ``floor`` nor below their natural width; the first ``keep``
 * columns (the id, the actions) keep theirs. Over budget even so: as small as allowed
 * (the table scrolls sideways).
 * @param {number[]} natural
 * @param {number} budget
 * @param {number} keep
 * @param {number} [floor]
 * @returns {number[]}
 */
export function fitWidths(natural, budget, keep, floor = 10) {
  const w = [...natural];
  let total = w.reduce((a, b) => a + b, 0);
  while (total > budget) {
    let max = 0;
    for (let i = keep; i < w.length; i++) max = Math.max(max, w[i]);
    if (max <= floor) break;
    let next = floor;
    let count = 0;
    for (let i = keep; i < w.length; i++) {
      if (w[i] === max) count += 1;
      else if (w[i] > next) next = w[i];
    }
    const cut = Math.min(max - next, Math.ceil((total - budget) / count));
    for (let i = keep; i < w.length; i++) {
      if (w[i] === max) {
        w[i] -= cut;
        total -= cut;
      }
    }
  }
  return w;
}

/**
 * A cell value as text (date-times as fmtTimestamp writes them).
 * @param {unknown} v
 * @returns {string}
 */
export function fmtValue(v) {
  if (v === null || v === undefined) return "";
  if (typeof v === "number") return Number.isInteger(v) ? intFormat.format(v) : numFormat.format(v);
  if (typeof v === "string") return showBidi(v.length <= 35 && v[4] === "-" ? fmtTimestamp(v) : v);
  if (typeof v === "boolean") return v ? "yes" : "no";
  const s = showBidi(JSON.stringify(v));
  return s.length > 200 ? s.slice(0, 199) + "…" : s;
}

// Bidi controls (LRE..RLO, LRI..PDI, LRM, RLM, ALM): shown, never obeyed, so an id
// "\u202eevil-id" cannot display as "di-live" (cells are also isolated in rtnb.css).
const BIDI = /[\u202a-\u202e\u2066-\u2069\u200e\u200f\u061c]/g;

/**
 * ``s`` with every bidi control character shown as its escape ("\u202E").
 * @param {string} s
 * @returns {string}
 */
export function showBidi(s) {
  return s.replace(BIDI, (c) => "\\u" + c.charCodeAt(0).toString(16).toUpperCase().padStart(4, "0"));
}

/**
 * "0.4 s", "12 s", "3 min 4 s", "2 h 5 min".
 * @param {number} s
 */
export function fmtAge(s) {
  if (s < 10) return `${Math.max(0, s).toFixed(1)} s`;
  if (s < 60) return `${Math.floor(s)} s`;
  if (s < 3600) return `${Math.floor(s / 60)} min ${Math.floor(s % 60)} s`;
  return `${Math.floor(s / 3600)} h ${Math.floor((s % 3600) / 60)} min`;
}

/**
 * Wall-clock time of a unix timestamp, "12:03:55" (24 h, the browser's zone).
 * @param {number} unix
 */
export function fmtClock(unix) {
  return new Date(unix * 1000).toLocaleTimeString([], {
    hour: "2-digit",
    minute: "2-digit",
    second: "2-digit",
    hourCycle: "h23", // not hour12: false, which reads midnight as "24:00:00" in some locales
  });
}

/**
 * What the connection is doing, in words, `elapsed` seconds after the payload
 * arrived. Mirrors `activity_text` in rtnb/core/freshness.py: the kernel
 * computed `activity`; only the countdown ticks here, and a countdown that
 * reached zero reads "connecting", as a fresh payload would say.
 * @param {string} activity
 * @param {number} attempt
 * @param {number | null} retryIn
 * @param {number} elapsed
 * @returns {string}
 */
export function activityText(activity, attempt, retryIn, elapsed) {
  const suffix = attempt > 0 ? ` (attempt ${attempt})` : "";
  if (activity === "reconnecting") {
    if (retryIn === null) return `reconnecting${suffix}`;
    const wait = Math.ceil(retryIn - elapsed);
    return wait > 0 ? `reconnecting in ${wait} s${suffix}` : `connecting${suffix}`;
  }
  if (activity === "connecting") return `connecting${suffix}`;
  if (activity === "degraded") return "connection lost";
  if (activity === "closed") return "connection closed";
  if (activity === "idle") return "not started";
  return "";
}

/**
 * What a freshness payload means now, `elapsed` seconds after it arrived.
 * `text` ticks (ages, countdowns); `announce` only changes on transitions,
 * so it can feed the live region without announcing every second. `kernel`
 * (from the channel) says the kernel is gone: then nothing reads live.
 * `style` is the status whose look the badge takes (quiet looks stale).
 * @param {Fresh} f
 * @param {number} elapsed
 * @param {string} name what the status is about ("incidents", "connection")
 * @param {string | null} [kernel] "no_kernel" | "kernel_restarted" | null
 * @returns {{status: string, style: string, word: string, text: string, announce: string, gap: string}}
 */
export function describe(f, elapsed, name, kernel = null) {
  let status = f.status;
  const age = f.age === null ? null : f.age + elapsed;
  const asOf = f.last === null ? WORDING.no_data : fill(WORDING.as_of, { clock: fmtClock(f.last) });
  if (kernel) status = kernel;
  else if (status === "live" && typeof f.staleAfter === "number" && age !== null && age >= f.staleAfter) {
    status = "quiet"; // ticks into quiet here; the kernel's next payload agrees
  }
  const word = STATUS_WORDS[status] || status;
  let text = word;
  let announce = `${name}: ${word.toLowerCase()}`;
  if (kernel) {
    text = fill(WORDING[kernel], { as_of: asOf });
  } else if (status === "live") {
    text = age === null ? WORDING.live_no_data : fill(WORDING.live, { age: fmtAge(age) });
  } else if (status === "quiet") {
    // a connection's payload names its quietest topic's silence (quietAge)
    const silent = typeof f.quietAge === "number" ? f.quietAge + elapsed : age ?? 0;
    text = fill(WORDING.quiet, { quiet: fmtAge(silent), stale_after: fmtAge(f.staleAfter ?? 0) });
  } else if (status === "replaying") {
    text =
      f.missing && f.missing > 0
        ? fill(WORDING.replaying, { missing: fmtInt(f.missing) })
        : WORDING.replaying_snapshot;
    announce = `${name}: replaying missed events`;
  } else if (status === "stale" && f.limit) {
    // the client froze the topic (its state passed Limits.max_topic_bytes): say why
    text = fill(WORDING.stale, { as_of: asOf, activity: f.limit });
    announce = `${name}: ${text}`;
  } else if (status === "stale" || status === "pending") {
    const how = activityText(f.activity, f.attempt, f.retryIn, elapsed);
    // announced once per transition: the activity and attempt, not the countdown
    const now = how.startsWith("reconnecting in") ? "reconnecting" : how.replace(/ \(attempt \d+\)$/, "");
    const attempt = f.attempt > 0 ? ` (attempt ${f.attempt})` : "";
    announce = `${name}: ${status === "stale" ? "stale, " : ""}${now}${attempt}`;
    text =
      status === "stale"
        ? fill(WORDING.stale, { as_of: asOf, activity: how })
        : fill(WORDING.pending, { activity: how || "waiting for the server" });
  } else if (status === "forbidden" || status === "unknown") {
    text =
      f.scope === "topic"
        ? fill(WORDING[status], { topic: f.topic ?? name })
        : WORDING[`${status}_all`];
  } else if (status === "refused") {
    text = fill(WORDING.refused, { reason: f.error || "the server refused this topic" });
    announce = `${name}: ${text}`;
  } else if (status === "closed") {
    text = fill(WORDING.closed, { reason: f.reason || "connection closed" });
  }
  let gap = "";
  if (!kernel && f.unrecoverable > 0 && f.gapAge !== null && f.gapAge + elapsed < GAP_NOTICE_S) {
    gap = `Gap: ${fmtInt(f.unrecoverable)} events could not be recovered, state refreshed from snapshot`;
  }
  return { status, style: STATUS_STYLE[status] || status, word, text, announce, gap };
}

/** @returns {boolean} */
export function reducedMotion() {
  return !!(window.matchMedia && window.matchMedia("(prefers-reduced-motion: reduce)").matches);
}

/**
 * A visually hidden, polite, atomic live region that announces at most once
 * every ANNOUNCE_GAP_MS; messages arriving in between are merged and said
 * together afterwards (never dropped, never one per event).
 */
export class Announcer {
  /** @param {HTMLElement} parent */
  constructor(parent) {
    this.el = document.createElement("div");
    this.el.className = "rtnb-sr";
    this.el.setAttribute("role", "status");
    this.el.setAttribute("aria-live", "polite");
    this.el.setAttribute("aria-atomic", "true");
    parent.append(this.el);
    /** @type {string[]} */
    this.queue = [];
    this.lastAt = -Infinity;
    /** @type {number | null} */
    this.timer = null;
    this.count = 0;
  }

  /** @param {string} text */
  say(text) {
    if (!text || this.queue.includes(text)) return;
    this.queue.push(text);
    const wait = this.lastAt + ANNOUNCE_GAP_MS - performance.now();
    if (wait <= 0) this.flush();
    else if (this.timer === null) this.timer = window.setTimeout(() => this.flush(), wait);
  }

  flush() {
    this.timer = null;
    if (!this.queue.length) return;
    this.el.textContent = this.queue.join(" ");
    this.queue = [];
    this.lastAt = performance.now();
    this.count += 1;
  }

  destroy() {
    if (this.timer !== null) window.clearTimeout(this.timer);
    this.el.remove();
  }
}

/** @type {Set<() => void>} */
const tickers = new Set();
/** @type {number | null} */
let tickTimer = null;

/**
 * Call `fn` ten times a second (one shared timer for every widget on the
 * page; skipped while the tab is hidden). Returns the unsubscribe function.
 * @param {() => void} fn
 */
export function everyTick(fn) {
  tickers.add(fn);
  if (tickTimer === null) {
    tickTimer = window.setInterval(() => {
      if (document.hidden) return;
      for (const f of tickers) {
        try {
          f();
        } catch (err) {
          console.error("rtnb: ticker failed", err);
        }
      }
    }, 100);
  }
  return () => {
    tickers.delete(fn);
    if (!tickers.size && tickTimer !== null) {
      window.clearInterval(tickTimer);
      tickTimer = null;
    }
  };
}

/**
 * JSON carried in a message's first binary buffer (rows, deletes).
 * @param {any[] | undefined} buffers
 */
export function decodeBuffer(buffers) {
  if (!buffers || !buffers.length) return null;
  const b = buffers[0];
  const bytes = b instanceof DataView ? new Uint8Array(b.buffer, b.byteOffset, b.byteLength) : b;
  return JSON.parse(new TextDecoder().decode(bytes));
}

/**
 * The kernel's status as the widget manager reports it ("idle", "busy",
 * "restarting", "autorestarting", "dead", …), or null where the host has no
 * such report (JupyterLab and Notebook 7 have; VS Code, marimo may not).
 * @param {Model} model
 * @returns {string | null}
 */
function kernelStatus(model) {
  try {
    const k = /** @type {any} */ (model).widget_manager?.kernel;
    return k && typeof k.status === "string" ? k.status : null;
  } catch {
    return null;
  }
}

/**
 * Listen to a widget model's custom messages. Every kernel message carries
 * `seq`; a `diff` is only applied on top of the message before it. When one
 * is missing (the page was reconnected, a message was dropped) or no
 * snapshot has arrived yet, ask for a snapshot: custom messages are never
 * replayed. `fresh` / `counters` messages are full state and always apply.
 *
 * Kernel liveness (the last hop): the kernel sends something at least every
 * `ka` seconds (KEEPALIVE_S unless a message says otherwise; an `alive`
 * message when nothing else went out). `kernel()` says "no_kernel" after
 * 2 × ka + 1 s without any, or at once when the widget manager reports the
 * kernel dead or the comm closed, and "kernel_restarted" once it reported a
 * restart; null while all is well (or before the first message: the view
 * then says it waits for the kernel). Time spent in a background tab does
 * not count: the browser may have held our timers and messages, so a tab
 * that comes back (`visibilitychange`, or `resume` after the page was
 * frozen) asks for a keep-alive and re-evaluates at once (`onWake`),
 * alarming only on the manager's word or a silence counted from its return.
 * @param {Model} model
 * @param {(msg: any, data: any) => void} onMessage
 * @param {() => void} [onWake]
 */
export function openChannel(model, onMessage, onWake) {
  /** @type {number | null} */
  let lastSeq = null;
  let askedAt = -Infinity;
  /** @type {number | null} */
  let lastAt = null;
  let interval = KEEPALIVE_S;
  let visibleAt = performance.now();
  let commLost = false;
  let restarted = false;
  const ask = () => {
    const now = performance.now();
    if (now - askedAt < ASK_GAP_MS) return;
    askedAt = now;
    model.send({ t: "hello" });
  };
  /** @param {any} msg @param {any[]} buffers */
  const handler = (msg, buffers) => {
    if (!msg || typeof msg.seq !== "number") return;
    lastAt = performance.now();
    commLost = false;
    if (typeof msg.ka === "number" && msg.ka > 0) interval = msg.ka;
    if (msg.t === "diff" || msg.t === "alive") {
      // both continue the sequence; before a snapshot there is nothing to continue
      if (lastSeq === null || msg.seq !== lastSeq + 1) {
        if (lastSeq !== null || msg.t === "diff") ask();
        lastSeq = null;
        return;
      }
    }
    lastSeq = msg.seq;
    if (msg.t === "alive") return;
    onMessage(msg, decodeBuffer(buffers));
  };
  const lost = () => {
    commLost = true;
  };
  const onVisibility = () => {
    if (document.hidden) return;
    visibleAt = performance.now();
    try {
      model.send({ t: "ping" });
    } catch {
      commLost = true;
    }
    if (onWake) onWake();
  };
  model.on("msg:custom", handler);
  model.on("comm_live_update", lost);
  model.on("comm:close", lost);
  document.addEventListener("visibilitychange", onVisibility);
  document.addEventListener("resume", onVisibility); // a frozen page thawed (Page Lifecycle API)
  return {
    /** Ask for a snapshot now (a view rendered). */
    hello() {
      askedAt = performance.now();
      model.send({ t: "hello" });
    },
    /** @returns {"no_kernel" | "kernel_restarted" | null} */
    kernel() {
      const status = kernelStatus(model);
      if (status === "restarting" || status === "autorestarting") restarted = true;
      if (restarted) return "kernel_restarted";
      if (status === "dead" || commLost) return "no_kernel";
      if (lastAt === null) return null;
      const since = Math.max(lastAt, visibleAt);
      return performance.now() - since > (2 * interval + 1) * 1000 ? "no_kernel" : null;
    },
    close() {
      model.off("msg:custom", handler);
      model.off("comm_live_update", lost);
      model.off("comm:close", lost);
      document.removeEventListener("visibilitychange", onVisibility);
      document.removeEventListener("resume", onVisibility);
    },
  };
}

let uid = 0;
/** @param {string} prefix */
export function uniqueId(prefix) {
  uid += 1;
  return `${prefix}-${uid}-${Math.random().toString(36).slice(2, 7)}`;
}

/**
 * The status badge (icon + text) used by strips and pills.
 * @param {HTMLElement} parent
 */
export function statusBadge(parent) {
  const el = document.createElement("span");
  el.className = "rtnb-status";
  const svg = icon("pending");
  const text = document.createElement("span");
  text.className = "rtnb-status-text";
  el.append(svg, text);
  parent.append(el);
  return {
    el,
    /**
     * @param {string} status the look (see STATUS_STYLE)
     * @param {string} value the text
     * @param {string} [state] the status itself, when it differs from its look
     */
    set(status, value, state = status) {
      if (el.dataset.status !== status) {
        el.dataset.status = status;
        setIcon(svg, status);
      }
      if (el.dataset.state !== state) el.dataset.state = state;
      if (text.textContent !== value) text.textContent = value;
    },
  };
}
