// @ts-check
/**
 * Live counters of a connection: events/s, duplicates, gaps, degraded
 * seconds. Figures change every second, so there is no live region here
 * (announcing them would be noise); transitions are announced by the
 * freshness pill and the tables.
 */
import { everyTick, fmtInt, openChannel, WORDING } from "./common.js";

const ITEMS = /** @type {const} */ ([
  ["eps", "events/s"],
  ["duplicates", "duplicates"],
  ["gaps", "gaps"],
  ["degraded", "degraded s"],
]);

export const countersWidget = {
  /** @param {{model: import("./common.js").Model, el: HTMLElement}} ctx */
  render({ model, el }) {
    const root = document.createElement("div");
    root.className = "rtnb rtnb-counters";
    root.setAttribute("role", "group");
    root.setAttribute("aria-label", "Live counters");
    /** @type {Record<string, HTMLElement>} */
    const values = {};
    for (const [key, label] of ITEMS) {
      const item = document.createElement("div");
      item.className = "rtnb-counter";
      item.dataset.key = key;
      const v = document.createElement("span");
      v.className = "rtnb-counter-value";
      v.textContent = "–";
      const l = document.createElement("span");
      l.className = "rtnb-counter-label";
      l.textContent = label;
      item.append(v, l);
      root.append(item);
      values[key] = v;
    }
    el.append(root);
    const channel = openChannel(model, (msg) => {
      if (msg.t !== "counters") return;
      const c = msg.counters;
      /** @type {Record<string, string>} */
      const text = {
        eps: fmtInt(Math.round(c.eps)),
        duplicates: fmtInt(c.duplicates),
        gaps: c.unrecoverable ? `${fmtInt(c.gaps)} (${fmtInt(c.unrecoverable)} lost)` : fmtInt(c.gaps),
        degraded: c.degraded.toFixed(1),
      };
      for (const [key] of ITEMS) {
        if (values[key].textContent !== text[key]) values[key].textContent = text[key];
      }
      root.dataset.degraded = String(!!c.degradedNow);
    });
    // The last hop: with no kernel the counters stop, and a rate is not shown as current.
    const stopTick = everyTick(() => {
      const gone = channel.kernel();
      const was = root.dataset.kernel || "";
      if ((gone || "") === was) return;
      root.dataset.kernel = gone || "";
      root.dataset.stale = String(!!gone);
      if (gone) {
        values.eps.textContent = "–";
        root.title = WORDING[gone].replace(/ — .*$/, "");
      } else {
        root.title = "";
      }
    });
    channel.hello();
    return () => {
      stopTick();
      channel.close();
      root.remove();
    };
  },
};
export default countersWidget;
