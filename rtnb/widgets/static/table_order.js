// @ts-check
/**
 * The order of a table view's rows: insertion order, or sorted by a column
 * (in the browser). Updates move only the rows that changed (one O(n) pass
 * plus a binary search each), and the order can be frozen — while the
 * pointer or focus is in the rows — so nothing moves under the cursor.
 */

/** Above this share of changed rows, a sorted view re-sorts instead of merging. */
const RESORT_FRACTION = 0.25;

const collator = new Intl.Collator(undefined, { numeric: true, sensitivity: "base" });

/**
 * Sort key of a row for column index `c` (-1: the entity id).
 * @param {import("./table_store.js").Row} row @param {number} c
 */
function keyOf(row, c) {
  if (c < 0) return row.id;
  const v = row.v[c];
  return v === undefined ? null : v;
}

/**
 * Numbers before text; text in natural order ("inc-9" before "inc-10").
 * @param {any} a @param {any} b
 * @returns {number}
 */
function compareValues(a, b) {
  if (typeof a === "number" && typeof b === "number") return a - b;
  if (typeof a === "number") return -1;
  if (typeof b === "number") return 1;
  return collator.compare(String(a), String(b));
}

/**
 * Compare by a column's own order (`ranks`: value -> position); values it does not list
 * come after the listed ones, in natural order among themselves.
 * @param {Map<any, number>} ranks @param {any} a @param {any} b
 * @returns {number}
 */
function compareRanked(ranks, a, b) {
  const ra = ranks.get(a);
  const rb = ranks.get(b);
  if (ra !== undefined && rb !== undefined) return ra - rb;
  if (ra !== undefined) return -1;
  if (rb !== undefined) return 1;
  return compareValues(a, b);
}

export class RowOrder {
  /**
   * @param {import("./table_store.js").RowStore} store
   * @param {string | null} initial e.g. "price" or "-price" (descending)
   * @param {Record<string, any[]>} [orders] columns with an order of their own,
   *   e.g. {severity: ["low", "medium", "high", "critical"]}
   */
  constructor(store, initial, orders = {}) {
    this.store = store;
    /** @type {Map<string, Map<any, number>>} */
    this.ranks = new Map(
      Object.entries(orders).map(([col, values]) => [col, new Map(values.map((v, i) => [v, i]))]),
    );
    /** @type {import("./table_store.js").Row[]} */
    this.order = [];
    /** @type {string | null} */
    this.sortKey = initial ? initial.replace(/^-/, "") : null;
    this.sortDir = initial && initial.startsWith("-") ? -1 : 1;
    this.frozen = false;
    /** Changes held back while frozen, applied on unfreeze. */
    this.dirty = false;
    this.stamp = 0;
    this.reset();
  }

  sortIndex() {
    if (this.sortKey === null) return null;
    if (this.sortKey === "id") return -1;
    const i = this.store.columns.indexOf(this.sortKey);
    return i < 0 ? null : i;
  }

  /** @returns {(a: import("./table_store.js").Row, b: import("./table_store.js").Row) => number} */
  comparator() {
    const c = /** @type {number} */ (this.sortIndex());
    const dir = this.sortDir;
    const ranks = this.sortKey === null ? undefined : this.ranks.get(this.sortKey);
    return (a, b) => {
      const ka = keyOf(a, c);
      const kb = keyOf(b, c);
      if (ka === null || kb === null) {
        if (ka !== kb) return ka === null ? 1 : -1; // empty values last, either direction
      } else {
        const d = (ranks ? compareRanked(ranks, ka, kb) : compareValues(ka, kb)) * dir;
        if (d) return d;
      }
      return a.id < b.id ? -1 : a.id > b.id ? 1 : 0;
    };
  }

  reset() {
    this.order = Array.from(this.store.rows.values());
    if (this.sortIndex() !== null) this.order.sort(this.comparator());
    this.dirty = false;
  }

  /** @param {import("./table_store.js").Change} c */
  apply(c) {
    if (c.reset) {
      this.reset();
    } else if (this.frozen) {
      // keep every row where it is; new rows go to the end, removed rows stay greyed out
      for (const r of c.added) this.order.push(r);
      if (c.deleted.length || (this.sortIndex() !== null && c.upserted.length)) this.dirty = true;
    } else if (this.sortIndex() === null) {
      for (const r of c.added) this.order.push(r);
      if (c.deleted.length) this.order = this.order.filter((r) => !r.gone);
    } else if (c.upserted.length || c.deleted.length) {
      this.merge(c.upserted);
    }
  }

  /**
   * Move `moved` rows to their sorted places: one O(n) pass plus a binary
   * search per moved row, instead of re-sorting everything.
   * @param {import("./table_store.js").Row[]} moved
   */
  merge(moved) {
    const cmp = this.comparator();
    const live = moved.filter((r) => !r.gone);
    if (live.length > this.order.length * RESORT_FRACTION) {
      this.order = Array.from(this.store.rows.values()).sort(cmp);
      return;
    }
    const stamp = ++this.stamp;
    for (const r of live) r.mark = stamp;
    const kept = this.order.filter((r) => r.mark !== stamp && !r.gone);
    live.sort(cmp);
    const out = new Array(kept.length + live.length);
    let k = 0;
    let o = 0;
    for (const r of live) {
      let lo = k;
      let hi = kept.length;
      while (lo < hi) {
        const mid = (lo + hi) >> 1;
        if (cmp(kept[mid], r) < 0) lo = mid + 1;
        else hi = mid;
      }
      while (k < lo) out[o++] = kept[k++];
      out[o++] = r;
    }
    while (k < kept.length) out[o++] = kept[k++];
    this.order = out;
  }

  /**
   * Freeze or release the order; true if releasing it changed the order.
   * @param {boolean} on
   */
  freeze(on) {
    if (this.frozen === on) return false;
    this.frozen = on;
    if (on || !this.dirty) return false;
    this.order = this.order.filter((r) => !r.gone);
    if (this.sortIndex() !== null) this.order.sort(this.comparator());
    this.dirty = false;
    return true;
  }

  /**
   * A header click: ascending, then descending, then back to insertion order.
   * @param {string} key
   */
  cycle(key) {
    if (this.sortKey !== key) {
      this.sortKey = key;
      this.sortDir = 1;
    } else if (this.sortDir === 1) {
      this.sortDir = -1;
    } else {
      this.sortKey = null;
      this.sortDir = 1;
    }
    this.dirty = false;
    if (this.sortIndex() === null) this.order = Array.from(this.store.rows.values());
    else this.order = this.order.filter((r) => !r.gone).sort(this.comparator());
  }
}
