// @ts-check
/**
 * The rows of one StreamTable model, shared by all its views: applies the
 * kernel's snapshots and diffs (in sequence, see openChannel), keeps
 * rejected changes on screen for REJECT_HOLD_MS before rolling back, and
 * tells views what changed.
 */
import { openChannel } from "./common.js";

/** How long a rejected change stays visible before the row rolls back (ms). */
export const REJECT_HOLD_MS = 4000;
/** How long a clicked action shows "Sending…" without word from the kernel (ms). */
export const LOCAL_HOLD_MS = 15000;
/** Row flag bit 0: an optimistic change on the row is unconfirmed. */
export const FLAG_PENDING = 1;

/**
 * @typedef {{ id: string, f: number, v: any[], ver: number, gone: boolean,
 *   rej: null | {error: string, status: string, patch: Record<string, any>, until: number},
 *   local: null | {label: string, until: number}, mark: number }} Row
 * @typedef {{ reset: boolean, upserted: Row[], added: Row[], deleted: Row[] }} Change
 */

export class RowStore {
  /** @param {import("./common.js").Model} model */
  constructor(model) {
    this.model = model;
    /** @type {Map<string, Row>} */
    this.rows = new Map();
    /** @type {string[]} */
    this.columns = [];
    /** How many field names the kernel folded into the "_overflow" column. */
    this.overflow = 0;
    this.colVersion = 0;
    /** A "Changes" column is shown once a row had a pending or rejected change. */
    this.showChanges = false;
    /** @type {import("./common.js").Fresh | null} */
    this.fresh = null;
    this.freshAt = 0;
    this.ready = false;
    /** @type {Set<(c: Change) => void>} */
    this.listeners = new Set();
    /** @type {Set<(text: string) => void>} */
    this.speakers = new Set();
    this.messages = 0;
    /** @type {Set<Row>} */
    this.rejectedRows = new Set();
    /** @type {{text: string, until: number}[]} */
    this.noteList = [];
    this.channel = openChannel(model, (msg, data) => this.apply(msg, data));
  }

  /** @param {Change} change */
  emit(change) {
    for (const fn of this.listeners) fn(change);
  }

  /** @param {string} text */
  speak(text) {
    for (const fn of this.speakers) fn(text);
  }

  /** @param {any} msg @param {any} data */
  apply(msg, data) {
    this.messages += 1;
    if (msg.columns) {
      this.columns = msg.columns;
      this.overflow = msg.overflow || 0;
      this.colVersion += 1;
    }
    if (msg.fresh) {
      this.fresh = msg.fresh;
      this.freshAt = performance.now();
    }
    const sparse = (data && data.s) || [];
    const dense = (data && data.u) || [];
    const upserts = sparse.length ? dense.concat(sparse.map((/** @type {any[]} */ r) => densify(r, this.columns.length))) : dense;
    const deletes = (data && data.d) || [];
    /** @type {Change} */
    let change;
    if (msg.t === "snapshot") {
      const old = this.rows;
      this.rows = new Map();
      for (const [id, f, ...v] of upserts) {
        const prev = old.get(id);
        const row = prev || { id, f, v, ver: 0, gone: false, rej: null, local: null, mark: 0 };
        row.f = f;
        row.v = v;
        row.ver += 1;
        row.local = null;
        this.rows.set(id, row);
      }
      for (const [id, row] of old) if (!this.rows.has(id)) row.gone = true;
      this.ready = true;
      change = { reset: true, upserted: [], added: [], deleted: [] };
    } else if (msg.t === "diff") {
      change = { reset: false, upserted: [], added: [], deleted: [] };
      for (const [id, f, ...v] of upserts) {
        let row = this.rows.get(id);
        if (row) {
          row.f = f;
          row.v = v;
          row.ver += 1;
          row.local = null;
        } else {
          row = { id, f, v, ver: 1, gone: false, rej: null, local: null, mark: 0 };
          this.rows.set(id, row);
          change.added.push(row);
        }
        change.upserted.push(row);
      }
      for (const id of deletes) {
        const row = this.rows.get(id);
        if (row) {
          row.gone = true;
          this.rows.delete(id);
          change.deleted.push(row);
        }
      }
    } else {
      return;
    }
    for (const r of msg.rejected || []) this.reject(r, change);
    for (const n of msg.notices || []) this.notice(n, change);
    if (!this.showChanges && (msg.rejected || upserts.some((/** @type {any[]} */ u) => u[1] & FLAG_PENDING))) {
      this.showChanges = true;
      this.colVersion += 1;
    }
    this.emit(change);
  }

  /** @param {any} r @param {Change} change */
  reject(r, change) {
    const row = this.rows.get(r.id);
    const what = r.status === "timed_out" ? "timed out" : "rejected";
    this.speak(`Change to ${r.id} ${what}: ${r.error}. Rolled back.`);
    if (!row) return;
    row.rej = { error: r.error, status: r.status, patch: r.patch || {}, until: performance.now() + REJECT_HOLD_MS };
    this.rejectedRows.add(row);
    row.ver += 1;
    if (!change.upserted.includes(row)) change.upserted.push(row);
    window.setTimeout(() => {
      if (row.rej && performance.now() >= row.rej.until - 5) {
        row.rej = null;
        row.ver += 1;
        this.emit({ reset: false, upserted: [row], added: [], deleted: [] });
      }
    }, REJECT_HOLD_MS);
  }

  /** @param {any} n @param {Change} change */
  notice(n, change) {
    const row = this.rows.get(n.id);
    if (row && row.local) {
      row.local = null;
      row.ver += 1;
      if (!change.upserted.includes(row)) change.upserted.push(row);
    }
    this.noteList.push({ text: n.text, until: performance.now() + REJECT_HOLD_MS });
    this.speak(n.text);
  }

  /**
   * Rows whose rejection is still shown.
   * @param {number} now
   * @returns {Row[]}
   */
  rejected(now) {
    const out = [];
    for (const row of this.rejectedRows) {
      if (row.rej && row.rej.until > now) out.push(row);
      else this.rejectedRows.delete(row);
    }
    return out;
  }

  /**
   * Action notices from the kernel still shown.
   * @param {number} now
   * @returns {string[]}
   */
  notes(now) {
    this.noteList = this.noteList.filter((n) => n.until > now);
    return this.noteList.map((n) => n.text);
  }

  /** @param {Row} row @param {number} action @param {string} label */
  act(row, action, label) {
    if (!this.showChanges) {
      this.showChanges = true;
      this.colVersion += 1;
    }
    row.local = { label, until: performance.now() + LOCAL_HOLD_MS };
    row.ver += 1;
    this.model.send({ t: "act", id: row.id, action });
    this.emit({ reset: false, upserted: [row], added: [], deleted: [] });
  }

  destroy() {
    this.channel.close();
    this.listeners.clear();
    this.speakers.clear();
  }
}

/**
 * A sparse row ``[id, flags, i0, v0, i1, v1, ...]`` as a dense one ``[id, flags, v...]``.
 * @param {any[]} row @param {number} n
 * @returns {any[]}
 */
export function densify(row, n) {
  const out = new Array(n + 2).fill(null);
  out[0] = row[0];
  out[1] = row[1];
  for (let k = 2; k + 1 < row.length; k += 2) out[row[k] + 2] = row[k + 1];
  return out;
}

/** @type {WeakMap<object, RowStore>} */
export const stores = new WeakMap();
/** @param {import("./common.js").Model} model */
export function storeFor(model) {
  let store = stores.get(model);
  if (!store) {
    store = new RowStore(model);
    stores.set(model, store);
  }
  return store;
}
