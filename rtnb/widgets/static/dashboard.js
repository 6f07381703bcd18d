// @ts-check
/**
 * Dashboard: one widget that draws a connection's freshness pill, its live
 * counters and one table per topic, with the standalone widgets' own front-end
 * code (so it looks and behaves as the separate widgets did, and works in every
 * host that runs one anywidget: marimo too).
 *
 * Each part gets a model of its own (`partModel`): `get` reads the part's
 * traits (they never change), a custom message tagged with the part's id
 * reaches only that part's listeners (an untagged one reaches every part),
 * and what a part sends is tagged with its id. The comm's own events
 * (`comm:close`, `comm_live_update`) and the widget manager's kernel status
 * reach every part, so each part's view leaves "Live" when the kernel goes
 * (each part's feed sends its own keep-alives, tagged). The part models live as long
 * as the dashboard's model, so the tables' row stores survive a re-render
 * as a StreamTable's do.
 */
import { countersWidget } from "./counters.js";
import { freshnessWidget } from "./freshness.js";
import { tableWidget } from "./table.js";

/**
 * @typedef {{ id: string, kind: "freshness" | "counters" | "table", traits: Record<string, any> }} Part
 * @typedef {{ part: Part, model: import("./common.js").Model, dispose: (() => void) | null }} Slot
 */

/**
 * @param {import("./common.js").Model} model
 * @param {Part} part
 * @returns {import("./common.js").Model}
 */
function partModel(model, part) {
  /** @type {Map<Function, (msg: any, buffers: any) => void>} */
  const wrapped = new Map();
  return {
    get: (name) => part.traits[name],
    send(content, callbacks, buffers) {
      model.send({ ...content, part: part.id }, callbacks, buffers);
    },
    on(name, cb) {
      if (name.startsWith("change:")) return; // a part's traits never change
      if (name !== "msg:custom") {
        model.on(name, cb); // the comm's own events (closed, live or not) are every part's
        return;
      }
      /** @param {any} msg @param {any} buffers */
      const only = (msg, buffers) => {
        if (msg && (msg.part === undefined || msg.part === part.id)) cb(msg, buffers);
      };
      wrapped.set(cb, only);
      model.on(name, only);
    },
    off(name, cb) {
      if (name.startsWith("change:")) return;
      if (name !== "msg:custom") {
        model.off(name, cb);
        return;
      }
      const only = cb && wrapped.get(cb);
      if (!only || !cb) return;
      wrapped.delete(cb);
      model.off(name, only);
    },
    // the kernel's status as the widget manager reports it (common.js: kernelStatus)
    get widget_manager() {
      return model.widget_manager;
    },
  };
}

/** @type {Record<Part["kind"], any>} */
const WIDGETS = { freshness: freshnessWidget, counters: countersWidget, table: tableWidget };

/** @type {WeakMap<object, Slot[]>} */
const slotsOf = new WeakMap();

/** @param {import("./common.js").Model} model */
function slots(model) {
  let found = slotsOf.get(model);
  if (!found) {
    found = /** @type {Part[]} */ (model.get("parts") || []).map((part) => {
      const pm = partModel(model, part);
      const init = WIDGETS[part.kind]?.initialize;
      return { part, model: pm, dispose: init ? init({ model: pm }) || null : null };
    });
    slotsOf.set(model, found);
  }
  return found;
}

export const dashboardWidget = {
  /** @param {{model: import("./common.js").Model}} ctx */
  initialize({ model }) {
    slots(model);
    return () => {
      for (const slot of slotsOf.get(model) || []) slot.dispose?.();
      slotsOf.delete(model);
    };
  },
  /** @param {{model: import("./common.js").Model, el: HTMLElement}} ctx */
  render({ model, el }) {
    const root = document.createElement("div");
    root.className = "rtnb rtnb-dashboard";
    const header = document.createElement("div");
    header.className = "rtnb-dashboard-header";
    root.append(header);
    /** @type {Array<() => void>} */
    const cleanups = [];
    for (const slot of slots(model)) {
      const widget = WIDGETS[slot.part.kind];
      if (!widget) continue;
      const box = document.createElement("div");
      box.className = `rtnb-dashboard-part rtnb-dashboard-${slot.part.kind}`;
      box.dataset.part = slot.part.id;
      (slot.part.kind === "table" ? root : header).append(box);
      const done = widget.render({ model: slot.model, el: box });
      if (typeof done === "function") cleanups.push(done);
    }
    el.append(root);
    return () => {
      for (const done of cleanups) done();
      root.remove();
    };
  },
};
export default dashboardWidget;
