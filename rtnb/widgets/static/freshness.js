// @ts-check
/**
 * Freshness pill: status (icon + word + colour), age of the newest data
 * ticking in the browser, attempt and retry countdown, transport and lag;
 * a details popover lists the topics and the last transitions. The live
 * region announces transitions only.
 */
import {
  Announcer,
  describe,
  everyTick,
  fmtClock,
  fmtInt,
  fmtMs,
  openChannel,
  statusBadge,
  uniqueId,
} from "./common.js";

class Pill {
  /**
   * @param {import("./common.js").Model} model
   * @param {HTMLElement} el
   */
  constructor(model, el) {
    this.model = model;
    /** @type {import("./common.js").Fresh | null} */
    this.fresh = null;
    this.freshAt = 0;
    this.lastAnnounce = "";
    this.lastUnrecoverable = -1;
    this.historyKey = "";

    const root = document.createElement("div");
    root.className = "rtnb rtnb-pill-wrap";
    root.dataset.scope = model.get("scope");
    root.dataset.label = model.get("label");
    root.dataset.source = model.get("source_key");
    root.dataset.role = model.get("embedded") ? "embedded" : "standalone";
    this.el = el;
    this.lastShadowCheck = -Infinity;
    const popId = uniqueId("rtnb-pop");
    this.button = document.createElement("button");
    this.button.type = "button";
    this.button.className = "rtnb-pill";
    this.button.setAttribute("aria-controls", popId);
    this.button.setAttribute("aria-haspopup", "dialog");
    this.badge = statusBadge(this.button);
    this.extra = document.createElement("span");
    this.extra.className = "rtnb-pill-extra";
    this.button.append(this.extra);

    this.pop = document.createElement("div");
    this.pop.id = popId;
    this.pop.className = "rtnb rtnb-popover";
    this.pop.setAttribute("role", "dialog");
    this.pop.setAttribute("aria-label", "Connection details");
    this.popBody = document.createElement("div");
    this.pop.append(this.popBody);
    this.usePopover = typeof this.pop.showPopover === "function";
    if (this.usePopover) {
      this.pop.popover = "auto";
      this.button.popoverTargetElement = this.pop;
      this.pop.addEventListener("toggle", (e) => {
        const open = /** @type {any} */ (e).newState === "open";
        this.button.setAttribute("aria-expanded", String(open));
        if (open) this.place();
      });
    } else {
      this.pop.hidden = true;
      this.button.addEventListener("click", () => {
        this.pop.hidden = !this.pop.hidden;
        this.button.setAttribute("aria-expanded", String(!this.pop.hidden));
      });
    }
    this.button.setAttribute("aria-expanded", "false");

    this.announcer = new Announcer(root);
    root.append(this.button, this.pop);
    el.append(root);
    this.root = root;

    this.channel = openChannel(
      model,
      (msg) => {
        if (msg.t !== "fresh") return;
        this.fresh = msg.fresh;
        this.freshAt = performance.now();
        this.tick();
        this.details();
      },
      () => this.tick(),
    );
    this.stopTick = everyTick(() => this.tick());
    this.tick();
    this.channel.hello();
  }

  place() {
    const r = this.button.getBoundingClientRect();
    const top = Math.min(r.bottom + 4, window.innerHeight - this.pop.offsetHeight - 4);
    const left = Math.min(r.left, window.innerWidth - this.pop.offsetWidth - 8);
    this.pop.style.top = `${Math.max(4, top)}px`;
    this.pop.style.left = `${Math.max(4, left)}px`;
  }

  name() {
    return this.model.get("scope") === "topic" ? this.model.get("label") : "connection";
  }

  /**
   * An embedded pill (a Dashboard's) steps aside while a standalone pill of the same
   * connection is shown in the same cell output: one pill per connection in a cell.
   */
  shadow() {
    if (!this.model.get("embedded") || this.model.get("scope") !== "connection") return;
    const now = performance.now();
    if (now - this.lastShadowCheck < 500) return;
    this.lastShadowCheck = now;
    const area =
      this.root.closest(".jp-OutputArea, .output_area, .cell-output-ipywidget-background") ??
      this.root.getRootNode();
    const key = CSS.escape(this.model.get("source_key"));
    const twin = /** @type {ParentNode} */ (area).querySelector(
      `.rtnb-pill-wrap[data-role="standalone"][data-scope="connection"][data-source="${key}"]`,
    );
    const hide = twin !== null;
    if (this.root.dataset.shadowed !== String(hide)) {
      this.root.dataset.shadowed = String(hide);
      this.el.style.display = hide ? "none" : "";
    }
  }

  tick() {
    this.shadow();
    const f = this.fresh;
    if (!f) {
      this.badge.set("pending", "Waiting for the kernel…");
      return;
    }
    const elapsed = (performance.now() - this.freshAt) / 1000;
    const d = describe(f, elapsed, this.name(), this.channel.kernel());
    this.badge.set(d.style, d.gap ? `${d.text} · ${d.gap}` : d.text, d.status);
    const bits = [f.transport];
    if (typeof f.lag === "number") bits.push(`lag p50 ${fmtMs(f.lag)}`);
    const extra = bits.join(" · ");
    if (this.extra.textContent !== extra) this.extra.textContent = extra;
    if (d.announce !== this.lastAnnounce) {
      if (this.lastAnnounce) this.announcer.say(d.announce);
      this.lastAnnounce = d.announce;
    }
    if (this.lastUnrecoverable >= 0 && f.unrecoverable > this.lastUnrecoverable && d.gap) {
      this.announcer.say(d.gap);
    }
    this.lastUnrecoverable = f.unrecoverable;
  }

  /** Details popover: topics and the last transitions (rebuilt only when they change). */
  details() {
    const f = this.fresh;
    if (!f) return;
    const key = JSON.stringify([f.topics, f.history, f.transport, f.attempt, f.reason]);
    if (key === this.historyKey) return;
    this.historyKey = key;
    const parts = [];
    const h = document.createElement("h3");
    h.textContent = this.model.get("scope") === "topic" ? `Topic ${this.model.get("label")}` : "Connection";
    parts.push(h);
    const facts = document.createElement("dl");
    const fact = (/** @type {string} */ k, /** @type {string} */ v) => {
      const dt = document.createElement("dt");
      dt.textContent = k;
      const dd = document.createElement("dd");
      dd.textContent = v;
      facts.append(dt, dd);
    };
    fact("Connection", `${f.conn} (${f.reason})`);
    fact("Transport", f.transport);
    fact("Attempt", String(f.attempt));
    fact("Gaps", `${fmtInt(f.gaps)} (${fmtInt(f.unrecoverable)} events unrecoverable)`);
    if (typeof f.lag === "number") fact("Lag p50", fmtMs(f.lag));
    parts.push(facts);
    if (f.topics && f.topics.length) {
      const table = document.createElement("table");
      const cap = document.createElement("caption");
      cap.textContent = "Topics";
      const head = document.createElement("tr");
      for (const t of ["Topic", "Status", "Rows", "Gaps"]) {
        const th = document.createElement("th");
        th.scope = "col";
        th.textContent = t;
        head.append(th);
      }
      table.append(cap, head);
      for (const t of f.topics) {
        const tr = document.createElement("tr");
        for (const v of [t.name, t.status, fmtInt(t.entities), fmtInt(t.gaps)]) {
          const td = document.createElement("td");
          td.textContent = v;
          tr.append(td);
        }
        table.append(tr);
      }
      parts.push(table);
    }
    if (f.history && f.history.length) {
      const h4 = document.createElement("h4");
      h4.textContent = "Last transitions";
      const ol = document.createElement("ol");
      ol.className = "rtnb-history";
      for (const t of [...f.history].reverse()) {
        const li = document.createElement("li");
        const from = t.previous ? `${t.previous} → ` : "";
        li.textContent = `${fmtClock(t.at)}  ${from}${t.status} (${t.reason})`;
        ol.append(li);
      }
      parts.push(h4, ol);
    }
    this.popBody.replaceChildren(...parts);
  }

  destroy() {
    this.stopTick();
    this.channel.close();
    this.announcer.destroy();
    this.root.remove();
  }
}

export const freshnessWidget = {
  /** @param {{model: import("./common.js").Model, el: HTMLElement}} ctx */
  render({ model, el }) {
    const pill = new Pill(model, el);
    return () => pill.destroy();
  },
};
export default freshnessWidget;
