// @ts-check
/**
 * StreamTable front end: a per-model row store fed by kernel snapshots and
 * diffs, and per-view virtualised rendering.
 *
 * - Rows live once per model (RowStore); each view keeps its own sort and
 *   order and renders only the rows in (or near) its viewport, reusing row
 *   elements by entity id so focus and hover survive updates.
 * - Ordering is frozen while the pointer or keyboard focus is inside the
 *   rows, so buttons never move under the cursor; values still update.
 * - Changed cells flash (not under prefers-reduced-motion).
 * - Pending rows are marked; a rejected change shows its error on the
 *   optimistic values for REJECT_HOLD_MS, then the row rolls back.
 */
import {
  Announcer,
  describe,
  everyTick,
  fmtInt,
  fitWidths,
  fmtValue,
  icon,
  reducedMotion,
  showBidi,
  statusBadge,
  uniqueId,
} from "./common.js";
import { RowOrder } from "./table_order.js";
import { FLAG_PENDING, storeFor, stores } from "./table_store.js";

/** Row height in px (fixed: the virtualiser computes positions from it). */
const ROW_H = 28;
/** Rows rendered above and below the viewport. */
const OVERSCAN = 8;

/**
 * @typedef {import("./table_store.js").Row} Row
 * @typedef {import("./table_store.js").Change} Change
 */

class TableView {
  /**
   * @param {import("./common.js").Model} model
   * @param {HTMLElement} el
   */
  constructor(model, el) {
    this.model = model;
    this.store = storeFor(model);
    this.el = el;
    this.rows = new RowOrder(this.store, model.get("sort_by") || null, model.get("order") || {});
    this.visible = true;
    /** @type {number | null} */
    this.raf = null;
    /** @type {Map<string, HTMLTableRowElement>} */
    this.trById = new Map();
    this.colVersionBuilt = -1;
    this.actCol = false;
    /** @type {boolean[]} */
    this.numeric = [];
    this.motion = !reducedMotion();
    this.labels = /** @type {string[]} */ (model.get("action_labels") || []);
    this.lastAnnounce = "";
    this.lastUnrecoverable = -1;
    /** @type {number[] | null} column widths in ch: natural, and fitted to the box */
    this.natural = null;
    /** @type {number[] | null} */
    this.widths = null;
    this.chPx = 0;
    this.fittedTo = -1;
    this.alertKey = "";
    /** @type {ResizeObserver | null} */
    this.ro = null;
    /** @type {IntersectionObserver | null} */
    this.io = null;
    // The DOM parts are built first and assigned here, so each field is known to be set.
    const dom = this.build();
    this.root = dom.root;
    this.badge = dom.badge;
    this.count = dom.count;
    this.paused = dom.paused;
    this.notice = dom.notice;
    this.alerts = dom.alerts;
    this.scroll = dom.scroll;
    this.table = dom.table;
    this.colgroup = dom.colgroup;
    this.thead = dom.thead;
    this.tbody = dom.tbody;
    this.topPad = dom.topPad;
    this.bottomPad = dom.bottomPad;
    this.empty = dom.empty;
    this.emptyCell = dom.emptyCell;
    this.announcer = dom.announcer;
    this.listen();
    this.onChange = (/** @type {Change} */ c) => this.changed(c);
    this.onSpeak = (/** @type {string} */ t) => this.announcer.say(t);
    this.store.listeners.add(this.onChange);
    this.store.speakers.add(this.onSpeak);
    this.stopTick = everyTick(() => this.tick());
    this.schedule();
    this.store.channel.hello();
  }

  /** The widget's DOM, appended to the element; no listeners yet (see listen). */
  build() {
    const title = this.model.get("title") || this.model.get("topic_name");
    const titleId = uniqueId("rtnb-title");
    const root = document.createElement("div");
    root.className = "rtnb rtnb-table";
    root.dataset.topic = this.model.get("topic_name");
    root.dataset.title = title;
    root.style.setProperty("--rtnb-height", `${this.model.get("height")}px`);
    root.style.setProperty("--rtnb-row-h", `${ROW_H}px`);

    const strip = document.createElement("div");
    strip.className = "rtnb-strip";
    const name = document.createElement("span");
    name.className = "rtnb-title";
    name.id = titleId;
    name.textContent = title;
    strip.append(name);
    const badge = statusBadge(strip);
    const count = document.createElement("span");
    count.className = "rtnb-count";
    const paused = document.createElement("span");
    paused.className = "rtnb-paused";
    paused.textContent = "Order paused while the pointer is over the rows";
    paused.hidden = true;
    strip.append(count, paused);

    const notice = document.createElement("div");
    notice.className = "rtnb-notice";
    notice.append(icon("gap"), document.createElement("span"));
    notice.hidden = true;
    // Rejections and action notices, listed in full while they last. Below the rows, so
    // nothing the pointer may be over moves when they come and go.
    const alerts = document.createElement("ul");
    alerts.className = "rtnb-alerts";
    alerts.hidden = true;

    const scroll = document.createElement("div");
    scroll.className = "rtnb-scroll";
    scroll.tabIndex = 0;
    scroll.setAttribute("role", "region");
    scroll.setAttribute("aria-labelledby", titleId);

    const table = document.createElement("table");
    table.setAttribute("aria-labelledby", titleId);
    const colgroup = document.createElement("colgroup");
    const thead = document.createElement("thead");
    const tbody = document.createElement("tbody");
    const topPad = this.spacer();
    const bottomPad = this.spacer();
    const empty = document.createElement("tr");
    empty.className = "rtnb-empty";
    const emptyCell = document.createElement("td");
    emptyCell.textContent = "No rows yet";
    empty.append(emptyCell);
    tbody.append(topPad, bottomPad);
    table.append(colgroup, thead, tbody);
    scroll.append(table);

    const announcer = new Announcer(root);
    root.append(strip, scroll, notice, alerts);
    this.el.append(root);
    return {
      root, badge, count, paused, notice, alerts, scroll, table, colgroup, thead, tbody,
      topPad, bottomPad, empty, emptyCell, announcer,
    };
  }

  /** Scrolling, clicks, the order freeze, resizing and visibility. */
  listen() {
    this.scroll.addEventListener("scroll", () => this.schedule(), { passive: true });
    this.tbody.addEventListener("click", (e) => this.click(e));
    this.thead.addEventListener("click", (e) => this.sortClick(e));
    // Freeze the order while the pointer or focus is in the rows, so targets do not move.
    this.scroll.addEventListener("pointerenter", () => this.freeze(true));
    this.scroll.addEventListener("pointerleave", () => this.freeze(this.scroll.contains(document.activeElement)));
    this.scroll.addEventListener("focusin", () => this.freeze(true));
    this.scroll.addEventListener("focusout", (e) => {
      const next = /** @type {Node | null} */ (e.relatedTarget);
      if (!next || !this.scroll.contains(next)) this.freeze(this.scroll.matches(":hover"));
    });
    if ("ResizeObserver" in window) {
      this.ro = new ResizeObserver(() => {
        if (this.scroll.clientWidth !== this.fittedTo) {
          this.fittedTo = this.scroll.clientWidth;
          this.fitCols();
        }
        this.schedule();
      });
      this.ro.observe(this.scroll);
    }
    if ("IntersectionObserver" in window) {
      this.io = new IntersectionObserver((entries) => {
        this.visible = entries.some((e) => e.isIntersecting);
        if (this.visible) this.schedule();
      });
      this.io.observe(this.scroll);
    }
  }

  spacer() {
    const tr = document.createElement("tr");
    tr.className = "rtnb-spacer";
    tr.setAttribute("aria-hidden", "true");
    const td = document.createElement("td");
    tr.append(td);
    return tr;
  }

  // -- ordering ---------------------------------------------------------------

  /** The rows in display order. */
  get order() {
    return this.rows.order;
  }

  /** @param {Change} c */
  changed(c) {
    this.rows.apply(c);
    this.schedule();
  }

  /** @param {boolean} on */
  freeze(on) {
    if (this.rows.freeze(on)) this.schedule();
    this.paused.hidden = !(this.rows.frozen && this.rows.dirty);
  }

  /** @param {MouseEvent} e */
  sortClick(e) {
    const button = /** @type {HTMLElement} */ (e.target).closest("button[data-key]");
    if (!(button instanceof HTMLElement)) return;
    const key = /** @type {string} */ (button.dataset.key);
    this.rows.cycle(key);
    this.buildHead();
    this.schedule();
    const again = this.thead.querySelector(`button[data-key="${CSS.escape(key)}"]`);
    if (again instanceof HTMLElement) again.focus();
  }

  /** @param {MouseEvent} e */
  click(e) {
    const button = /** @type {HTMLElement} */ (e.target).closest("button[data-action]");
    if (!(button instanceof HTMLButtonElement) || button.disabled) return;
    const tr = button.closest("tr");
    const row = tr && /** @type {any} */ (tr)._row;
    if (!row || row.gone) return;
    const action = Number(button.dataset.action);
    this.store.act(row, action, this.labels[action] || "Change");
  }

  // -- rendering ----------------------------------------------------------------

  schedule() {
    if (this.raf === null) this.raf = requestAnimationFrame(() => this.render());
  }

  buildHead() {
    const cols = this.store.columns;
    const tr = document.createElement("tr");
    tr.setAttribute("aria-rowindex", "1");
    const keys = ["id", ...cols];
    this.actCol = this.labels.length > 0 || this.store.showChanges;
    this.numeric = this.numericColumns(keys);
    const last = document.createElement("th");
    last.scope = "col";
    last.className = "rtnb-actions-head";
    last.textContent = this.labels.length ? "Actions" : "Changes";
    for (const key of keys) {
      const th = document.createElement("th");
      th.scope = "col";
      const b = document.createElement("button");
      b.type = "button";
      b.dataset.key = key;
      b.className = "rtnb-sort";
      const label = document.createElement("span");
      label.textContent = key === "_overflow" ? `${this.store.overflow} more fields` : showBidi(key);
      const arrow = document.createElement("span");
      arrow.className = "rtnb-arrow";
      arrow.setAttribute("aria-hidden", "true");
      if (this.rows.sortKey === key) {
        th.setAttribute("aria-sort", this.rows.sortDir === 1 ? "ascending" : "descending");
        arrow.textContent = this.rows.sortDir === 1 ? "▲" : "▼";
      } else {
        arrow.textContent = "";
      }
      b.append(label, arrow);
      th.append(b);
      if (this.numeric[keys.indexOf(key)]) th.classList.add("rtnb-num");
      tr.append(th);
      if (key === "id" && this.actCol) tr.append(last); // actions sit next to the id: always in view
    }
    this.thead.replaceChildren(tr);
    this.buildCols(keys);
    const span = keys.length + (this.actCol ? 1 : 0);
    /** @type {HTMLTableCellElement} */ (this.topPad.firstChild).colSpan = span;
    /** @type {HTMLTableCellElement} */ (this.bottomPad.firstChild).colSpan = span;
    this.emptyCell.colSpan = span;
    for (const tr of this.trById.values()) tr.remove();
    this.trById.clear();
    this.colVersionBuilt = this.store.colVersion;
  }

  /**
   * Columns whose sampled values are mostly numbers (right-aligned headers).
   * @param {string[]} keys
   * @returns {boolean[]}
   */
  numericColumns(keys) {
    const sample = this.order.slice(0, 100);
    return keys.map((_, i) => {
      if (i === 0 || !sample.length) return false;
      let nums = 0;
      for (const r of sample) if (typeof r.v[i - 1] === "number") nums += 1;
      return nums * 2 > sample.length;
    });
  }

  /**
   * Column widths from the header and a sample of values (table-layout: fixed).
   * @param {string[]} keys
   */
  buildCols(keys) {
    const sample = this.order.slice(0, 200);
    const widths = keys.map((k, i) => {
      let n = k.length + 2;
      for (const r of sample) {
        const v = i === 0 ? r.id : r.v[i - 1];
        n = Math.max(n, fmtValue(v).length);
      }
      return Math.min(30, Math.max(6, n + 2));
    });
    const actionW = Math.max(12, ...this.labels.map((l) => l.length + 4));
    const all = this.actCol ? [widths[0], actionW, ...widths.slice(1)] : widths;
    const cols = all.map((w) => {
      const col = document.createElement("col");
      col.style.width = `${w}ch`;
      return col;
    });
    this.colgroup.replaceChildren(...cols);
    this.natural = all;
    this.widths = all;
    this.fitCols();
  }

  /**
   * Fit the columns to the box: the widest (a title, say) shrink, with an ellipsis and
   * the full text on hover, so the last column (often the time) is not cut off.
   */
  fitCols() {
    const avail = this.scroll.clientWidth;
    if (!avail || !this.natural) return;
    if (!this.chPx) {
      const probe = document.createElement("span");
      probe.style.cssText = "position:absolute;visibility:hidden;width:100ch";
      this.scroll.append(probe);
      this.chPx = probe.getBoundingClientRect().width / 100;
      probe.remove();
      if (!this.chPx) return;
    }
    const widths = fitWidths(this.natural, Math.floor(avail / this.chPx) - 1, this.actCol ? 2 : 1);
    const cols = this.colgroup.children;
    let changed = false;
    for (let i = 0; i < widths.length && i < cols.length; i++) {
      const css = `${widths[i]}ch`;
      const col = /** @type {HTMLElement} */ (cols[i]);
      if (col.style.width !== css) {
        col.style.width = css;
        changed = true;
      }
    }
    this.widths = widths;
    if (changed) {
      // repaint the rows: which cells are cut short (and carry their text on hover) changed
      for (const tr of this.trById.values()) tr.remove();
      this.trById.clear();
      this.schedule();
    }
  }

  /** @returns {HTMLTableRowElement} */
  newRow() {
    const tr = document.createElement("tr");
    const n = this.store.columns.length;
    const th = document.createElement("th");
    th.scope = "row";
    tr.append(th);
    if (this.actCol) {
      const act = document.createElement("td");
      act.className = "rtnb-act-cell";
      tr.append(act);
    }
    for (let i = 0; i < n; i++) tr.append(document.createElement("td"));
    return tr;
  }

  render() {
    this.raf = null;
    const count = `${fmtInt(this.store.rows.size)} ${this.store.rows.size === 1 ? "row" : "rows"}`;
    if (this.count.textContent !== count) this.count.textContent = count;
    // Off-screen tables only keep their count current; rows render when scrolled into view.
    if (!this.visible || !this.el.isConnected) return;
    const active = document.activeElement;
    const focus = this.focusKey(active);
    if (this.colVersionBuilt !== this.store.colVersion) this.buildHead();
    const n = this.order.length;
    const head = this.thead.offsetHeight || ROW_H;
    const top = Math.max(0, this.scroll.scrollTop - head);
    // The viewport is the configured height (the container's max-height): while the
    // table is still filling up, clientHeight is only as tall as what is rendered.
    const height = Math.max(this.scroll.clientHeight, this.model.get("height"));
    const first = Math.max(0, Math.min(n, Math.floor(top / ROW_H) - OVERSCAN));
    const last = Math.min(n, Math.ceil((top + height) / ROW_H) + OVERSCAN);
    this.table.setAttribute("aria-rowcount", String(n + 1));
    /** @type {HTMLTableCellElement} */ (this.topPad.firstChild).style.height = `${first * ROW_H}px`;
    /** @type {HTMLTableCellElement} */ (this.bottomPad.firstChild).style.height = `${(n - last) * ROW_H}px`;
    this.topPad.hidden = first === 0;
    this.bottomPad.hidden = n === last;

    const wanted = new Map();
    for (let i = first; i < last; i++) wanted.set(this.order[i].id, i);
    /** @type {HTMLTableRowElement[]} */
    const free = [];
    for (const [id, tr] of this.trById) {
      if (!wanted.has(id) || /** @type {any} */ (tr)._row !== this.order[wanted.get(id)]) {
        free.push(tr);
        this.trById.delete(id);
      }
    }
    let cursor = this.topPad.nextSibling;
    const now = performance.now();
    for (let i = first; i < last; i++) {
      const row = this.order[i];
      let tr = this.trById.get(row.id);
      if (!tr) {
        tr = free.pop() || this.newRow();
        this.trById.set(row.id, tr);
      }
      tr.setAttribute("aria-rowindex", String(i + 2));
      this.paint(tr, row, now);
      if (tr !== cursor) this.tbody.insertBefore(tr, cursor);
      else cursor = cursor.nextSibling;
    }
    for (const tr of free) tr.remove();
    if (n === 0 && !this.empty.isConnected) this.tbody.insertBefore(this.empty, this.bottomPad);
    if (n > 0 && this.empty.isConnected) this.empty.remove();
    this.emptyCell.textContent = this.store.ready ? "No rows" : "Waiting for data…";
    if (focus && active !== document.activeElement) this.refocus(active, focus);
    this.paused.hidden = !(this.rows.frozen && this.rows.dirty);
  }

  /**
   * Where keyboard focus is in the rows, as (row id, control), so it can be
   * restored if that element is replaced (a column appeared, the row's
   * actions changed) or moved.
   * @param {Element | null} active
   * @returns {{id: string, action: string | undefined} | null}
   */
  focusKey(active) {
    if (!(active instanceof HTMLElement) || !this.tbody.contains(active)) return null;
    const tr = active.closest("tr");
    if (!tr || !tr.dataset.id) return null;
    return { id: tr.dataset.id, action: active.dataset.action };
  }

  /**
   * @param {Element | null} active
   * @param {{id: string, action: string | undefined}} key
   */
  refocus(active, key) {
    if (active instanceof HTMLElement && active.isConnected) {
      active.focus({ preventScroll: true });
      return;
    }
    const tr = this.trById.get(key.id);
    if (!tr) {
      this.scroll.focus({ preventScroll: true });
      return;
    }
    const same = key.action !== undefined && tr.querySelector(`button[data-action="${key.action}"]`);
    const target = /** @type {HTMLElement} */ (same || tr.querySelector("button") || tr.firstElementChild);
    if (target.tagName === "TH") target.tabIndex = -1;
    target.focus({ preventScroll: true });
  }

  /**
   * Bring one row element up to date; flash the cells whose text changed.
   * @param {HTMLTableRowElement} tr @param {Row} row @param {number} now
   */
  paint(tr, row, now) {
    const t = /** @type {any} */ (tr);
    if (t._row === row && t._ver === row.ver) return;
    const same = t._row === row;
    t._row = row;
    t._ver = row.ver;
    tr.dataset.id = row.id;
    const rej = row.rej && row.rej.until > now ? row.rej : null;
    const local = row.local && row.local.until > now ? row.local : null;
    const pending = !!(row.f & FLAG_PENDING) || !!local;
    tr.className = row.gone ? "rtnb-gone" : rej ? "rtnb-rejected" : pending ? "rtnb-pending" : "";
    const cells = tr.children;
    const idCell = /** @type {HTMLElement} */ (cells[0]);
    const shownId = showBidi(row.id);
    if (idCell.textContent !== shownId) idCell.textContent = shownId;
    const cols = this.store.columns;
    const first = this.actCol ? 2 : 1;
    for (let i = 0; i < cols.length; i++) {
      const td = /** @type {HTMLElement} */ (cells[i + first]);
      let v = row.v[i];
      const undone = rej && Object.prototype.hasOwnProperty.call(rej.patch, cols[i]);
      if (undone) v = rej.patch[cols[i]];
      const text = fmtValue(v);
      if (undone) {
        if (td.dataset.undone !== text) {
          const s = document.createElement("s");
          s.textContent = text;
          td.replaceChildren(s);
          td.dataset.undone = text;
        }
      } else if (td.dataset.undone !== undefined || td.textContent !== text) {
        delete td.dataset.undone;
        td.textContent = text;
        if (same && this.motion) td.className = td.className === "rtnb-flash-a" ? "rtnb-flash-b" : "rtnb-flash-a";
      }
      const num = typeof v === "number";
      if (td.classList.contains("rtnb-num") !== num) td.classList.toggle("rtnb-num", num);
      // on hover: the exact value of a reformatted date-time, the whole of a cut-short text
      const width = this.widths ? this.widths[i + first] : Infinity;
      const tip = typeof v === "string" && text !== v ? v : text.length + 2 > width ? text : "";
      if (td.title !== tip) td.title = tip;
    }
    if (this.actCol) this.paintActions(/** @type {HTMLElement} */ (cells[1]), row, rej, local, pending);
  }

  /**
   * @param {HTMLElement} cell @param {Row} row
   * @param {Row["rej"]} rej @param {Row["local"]} local @param {boolean} pending
   */
  paintActions(cell, row, rej, local, pending) {
    let key;
    if (row.gone) key = "gone";
    else if (rej) key = `rej:${rej.error}`;
    else if (local) key = "sending";
    else if (pending) key = "pending";
    else key = `f:${row.f >> 1}:${row.id}`;
    if (cell.dataset.key === key) return;
    cell.dataset.key = key;
    if (row.gone) {
      cell.replaceChildren(badge("closed", "Removed"));
    } else if (rej) {
      const what = rej.status === "timed_out" ? "Timed out" : "Rejected";
      const b = badge("rejected", what);
      b.title = `${what}: ${rej.error} — rolling back`;
      cell.replaceChildren(b);
    } else if (local) {
      cell.replaceChildren(badge("hourglass", "Sending…"));
    } else if (pending) {
      cell.replaceChildren(badge("hourglass", "Pending…"));
    } else {
      const buttons = [];
      for (let i = 0; i < this.labels.length; i++) {
        if (!(row.f & (2 << i))) continue;
        const b = document.createElement("button");
        b.type = "button";
        b.className = "rtnb-act";
        b.dataset.action = String(i);
        b.textContent = this.labels[i];
        b.setAttribute("aria-label", `${this.labels[i]} ${row.id}`);
        buttons.push(b);
      }
      cell.replaceChildren(...buttons);
    }
  }

  /** Header strip: freshness text (ticking), gap notice, live-region announcements. */
  tick() {
    const f = this.store.fresh;
    if (!f) {
      this.badge.set("pending", this.store.ready ? "Waiting…" : "Waiting for the kernel…");
      return;
    }
    const elapsed = (performance.now() - this.store.freshAt) / 1000;
    const d = describe(f, elapsed, this.model.get("topic_name"), this.store.channel.kernel());
    this.badge.set(d.style, d.text, d.status);
    if (d.announce !== this.lastAnnounce) {
      if (this.lastAnnounce) this.announcer.say(d.announce);
      this.lastAnnounce = d.announce;
    }
    if (this.lastUnrecoverable >= 0 && f.unrecoverable > this.lastUnrecoverable) {
      this.announcer.say(d.gap || `${fmtInt(f.unrecoverable)} events could not be recovered`);
    }
    this.lastUnrecoverable = f.unrecoverable;
    this.paintAlerts();
    const span = /** @type {HTMLElement} */ (this.notice.lastChild);
    if (span.textContent !== d.gap) span.textContent = d.gap;
    this.notice.hidden = !d.gap;
    // rejected rows whose hold expired, "Sending…" that never got an answer
    const now = performance.now();
    for (const tr of this.trById.values()) {
      const row = /** @type {any} */ (tr)._row;
      if (row && ((row.rej && row.rej.until <= now) || (row.local && row.local.until <= now))) {
        if (row.local && row.local.until <= now) row.local = null;
        row.ver += 1;
        this.schedule();
      }
    }
  }

  /** The full text of every rejection still on screen (and recent action notices). */
  paintAlerts() {
    const now = performance.now();
    const items = [];
    for (const row of this.store.rejected(now)) {
      const rej = /** @type {NonNullable<Row["rej"]>} */ (row.rej);
      const what = rej.status === "timed_out" ? "timed out" : "rejected";
      const patch = Object.entries(rej.patch).map(([k, v]) => `${k} → ${fmtValue(v)}`).join(", ");
      items.push(`${row.id}: change ${patch ? `(${patch}) ` : ""}${what} — ${rej.error}. Rolling back.`);
    }
    for (const n of this.store.notes(now)) items.push(n);
    const key = items.join("\n");
    if (key === this.alertKey) return;
    this.alertKey = key;
    this.alerts.replaceChildren(
      ...items.map((text) => {
        const li = document.createElement("li");
        const span = document.createElement("span");
        span.textContent = text;
        li.append(icon("rejected"), span);
        return li;
      }),
    );
    this.alerts.hidden = !items.length;
  }

  destroy() {
    this.stopTick();
    this.store.listeners.delete(this.onChange);
    this.store.speakers.delete(this.onSpeak);
    if (this.raf !== null) cancelAnimationFrame(this.raf);
    if (this.io) this.io.disconnect();
    if (this.ro) this.ro.disconnect();
    this.announcer.destroy();
    this.root.remove();
  }
}

/**
 * @param {string} name @param {string} text
 * @returns {HTMLSpanElement}
 */
function badge(name, text) {
  const b = document.createElement("span");
  b.className = `rtnb-badge rtnb-badge-${name}`;
  const t = document.createElement("span");
  t.textContent = text;
  b.append(icon(name), t);
  return b;
}

export const tableWidget = {
  /** @param {{model: import("./common.js").Model}} ctx */
  initialize({ model }) {
    const store = storeFor(model);
    return () => {
      store.destroy();
      stores.delete(model);
    };
  },
  /** @param {{model: import("./common.js").Model, el: HTMLElement}} ctx */
  render({ model, el }) {
    const view = new TableView(model, el);
    /** @type {any} */ (el).__rtnb = view; // for the browser tests and bench/widgets.py
    return () => view.destroy();
  },
};
export default tableWidget;
