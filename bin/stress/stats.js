'use strict';
// Counters, latency histograms and the summary (JSON and text) of node-lws-stress.
// A worker's summary carries its histograms in sparse form so that the parent
// of `--processes N` can merge them and compute true percentiles.

const KINDS = ['video', 'audio', 'input'];
const MAX_FAILURE_RECORDS = 20;

/**
 * Log-bucketed histogram of microsecond values: bucket i covers
 * [exp(i/K) - 1, exp((i+1)/K) - 1) with K = 1/ln(1.02), i.e. 2 % wide buckets
 * (percentiles are within 2 %). Mergeable: buckets are a fixed scale.
 */
const K = 1 / Math.log(1.02);
class Histogram {
  constructor() {
    this.buckets = new Map();
    this.count = 0;
    this.min = Infinity;
    this.max = 0;
  }

  /** Record a value in microseconds. */
  record(us) {
    const v = Math.max(us, 0);
    const i = Math.floor(Math.log1p(v) * K);
    this.buckets.set(i, (this.buckets.get(i) ?? 0) + 1);
    this.count++;
    if (v < this.min) this.min = v;
    if (v > this.max) this.max = v;
  }

  /** The p-th percentile (0..100) in microseconds, or null when empty. */
  percentile(p) {
    if (this.count === 0) return null;
    const rank = Math.max(1, Math.ceil((p / 100) * this.count));
    const keys = [...this.buckets.keys()].sort((a, b) => a - b);
    let seen = 0;
    for (const i of keys) {
      seen += this.buckets.get(i);
      if (seen >= rank) {
        const mid = Math.expm1((i + 0.5) / K);
        return Math.min(this.max, Math.max(this.min, mid));
      }
    }
    return this.max;
  }

  merge(other) {
    for (const [i, n] of other.buckets) this.buckets.set(i, (this.buckets.get(i) ?? 0) + n);
    this.count += other.count;
    this.min = Math.min(this.min, other.min);
    this.max = Math.max(this.max, other.max);
    return this;
  }

  toJSON() {
    return {
      count: this.count,
      min: this.count ? this.min : 0,
      max: this.max,
      buckets: [...this.buckets.entries()].sort((a, b) => a[0] - b[0]),
    };
  }

  static fromJSON(j) {
    const h = new Histogram();
    if (!j) return h;
    for (const [i, n] of j.buckets) h.buckets.set(i, n);
    h.count = j.count;
    h.min = j.count ? j.min : Infinity;
    h.max = j.max;
    return h;
  }

  /** `{ p50, p99, max }` in milliseconds (3 decimals), nulls when empty. */
  summaryMs() {
    const ms = (us) => (us === null ? null : Math.round(us) / 1000);
    return {
      count: this.count,
      p50: ms(this.percentile(50)),
      p99: ms(this.percentile(99)),
      max: ms(this.count ? this.max : null),
    };
  }
}

function bump(obj, key, n = 1) {
  obj[key] = (obj[key] ?? 0) + n;
}

function newKindCounters() {
  return { sent: 0, received: 0, lost: 0, corrupt: 0, outOfOrder: 0, dropped: 0, bytes: 0 };
}

/** Everything a worker counts; `toJSON()` is its summary. */
class Stats {
  constructor() {
    this.cycles = 0;
    this.cyclesFailed = 0;
    this.bind = {
      ok: 0,
      failures: {},
      failuresExplained: 0,
      holders: {},
      retries: 0,
      retryCodes: {},
      maxAttempts: 0,
      portsUsed: 0,
      distinctPorts: 0,
      portsInEphemeralRange: 0,
    };
    this.connect = { ok: 0, failures: {} };
    // --broadcast: publishes per topic; per subscriber, deliveries due, dropped (--drop) and lost.
    this.broadcast = {
      published: { video: 0, audio: 0 },
      subscribers: 0,
      deliveries: 0,
      dropped: 0,
      lost: 0,
      subscribersWithDrops: 0,
      subscribersWithLosses: 0,
      maxDroppedPerSubscriber: 0,
    };
    this.kinds = { video: newKindCounters(), audio: newKindCounters(), input: newKindCounters() };
    this.latency = { video: new Histogram(), audio: new Histogram(), input: new Histogram() };
    this.timings = {
      listen: new Histogram(),
      connect: new Histogram(),
      serverClose: new Histogram(),
    };
    this.failureCount = 0;
    this.failureKinds = {};
    this.failureRecords = [];
  }

  /** An unexpected failure: makes the run exit 1. */
  fail(what, { cycle, code, message, port } = {}) {
    this.failureCount++;
    bump(this.failureKinds, what);
    if (this.failureRecords.length < MAX_FAILURE_RECORDS) {
      const rec = { what };
      if (cycle !== undefined) rec.cycle = cycle;
      if (port !== undefined) rec.port = port;
      if (code !== undefined) rec.code = code;
      if (message !== undefined) rec.message = String(message).slice(0, 300);
      this.failureRecords.push(rec);
    }
  }

  totals() {
    const t = newKindCounters();
    for (const k of KINDS) for (const f of Object.keys(t)) t[f] += this.kinds[k][f];
    return t;
  }

  latencyAll() {
    const h = new Histogram();
    for (const k of KINDS) h.merge(this.latency[k]);
    return h;
  }

  /** Small, cheap snapshot for progress lines (also sent over IPC by workers). */
  snapshot(elapsedMs) {
    const t = this.totals();
    return {
      elapsedMs,
      cycles: this.cycles,
      sent: t.sent,
      received: t.received,
      lost: t.lost,
      corrupt: t.corrupt,
      dropped: t.dropped,
      bytes: t.bytes,
      failures: this.failureCount,
      latency: this.latencyAll().toJSON(),
    };
  }

  toJSON() {
    const t = this.totals();
    const frames = {
      sent: t.sent,
      received: t.received,
      lost: t.lost,
      corrupt: t.corrupt,
      outOfOrder: t.outOfOrder,
      dropped: t.dropped,
      byKind: {},
    };
    for (const k of KINDS) frames.byKind[k] = { ...this.kinds[k] };
    const latencyMs = this.latencyAll().summaryMs();
    latencyMs.byKind = {};
    for (const k of KINDS) latencyMs.byKind[k] = this.latency[k].summaryMs();
    return {
      cycles: this.cycles,
      cyclesFailed: this.cyclesFailed,
      bind: { ...this.bind },
      connect: { ...this.connect },
      broadcast: { ...this.broadcast, published: { ...this.broadcast.published } },
      frames,
      latencyMs,
      bytesReceived: t.bytes,
      timingsMs: {
        listen: this.timings.listen.summaryMs(),
        connect: this.timings.connect.summaryMs(),
        serverClose: this.timings.serverClose.summaryMs(),
      },
      failures: {
        count: this.failureCount,
        byKind: { ...this.failureKinds },
        first: this.failureRecords.slice(),
      },
      histograms: {
        latency: Object.fromEntries(KINDS.map((k) => [k, this.latency[k].toJSON()])),
        timings: Object.fromEntries(Object.entries(this.timings).map(([k, h]) => [k, h.toJSON()])),
      },
    };
  }

  /** Adds a worker's summary (toJSON() plus `counters`; for --processes N). */
  mergeJSON(j, workerIndex) {
    this.cycles += j.cycles;
    this.cyclesFailed += j.cyclesFailed;
    const b = this.bind;
    b.ok += j.bind.ok;
    for (const [c, n] of Object.entries(j.bind.failures)) bump(b.failures, c, n);
    b.failuresExplained += j.bind.failuresExplained;
    for (const [c, n] of Object.entries(j.bind.holders)) bump(b.holders, c, n);
    b.retries += j.bind.retries;
    for (const [c, n] of Object.entries(j.bind.retryCodes)) bump(b.retryCodes, c, n);
    b.maxAttempts = Math.max(b.maxAttempts, j.bind.maxAttempts);
    b.portsUsed += j.bind.portsUsed;
    b.distinctPorts += j.bind.distinctPorts;
    b.portsInEphemeralRange += j.bind.portsInEphemeralRange;
    this.connect.ok += j.connect.ok;
    for (const [c, n] of Object.entries(j.connect.failures)) bump(this.connect.failures, c, n);
    const bc = this.broadcast;
    for (const [k, v] of Object.entries(j.counters.broadcast)) {
      if (k === 'published') for (const [t, n] of Object.entries(v)) bc.published[t] += n;
      else if (k === 'maxDroppedPerSubscriber') bc[k] = Math.max(bc[k], v);
      else bc[k] += v;
    }
    for (const k of KINDS) {
      const dst = this.kinds[k];
      for (const [f, n] of Object.entries(j.frames.byKind[k])) dst[f] += n;
      this.latency[k].merge(Histogram.fromJSON(j.histograms.latency[k]));
    }
    for (const k of Object.keys(this.timings)) {
      this.timings[k].merge(Histogram.fromJSON(j.histograms.timings[k]));
    }
    this.failureCount += j.failures.count;
    for (const [c, n] of Object.entries(j.failures.byKind)) bump(this.failureKinds, c, n);
    for (const r of j.failures.first) {
      if (this.failureRecords.length < MAX_FAILURE_RECORDS) {
        this.failureRecords.push({ worker: workerIndex, ...r });
      }
    }
  }
}

/** Merges progress snapshots of several workers into one. */
function mergeSnapshots(snaps) {
  const out = {
    elapsedMs: 0,
    cycles: 0,
    sent: 0,
    received: 0,
    lost: 0,
    corrupt: 0,
    dropped: 0,
    bytes: 0,
    failures: 0,
  };
  const h = new Histogram();
  for (const s of snaps) {
    if (!s) continue;
    for (const k of Object.keys(out)) {
      if (k === 'elapsedMs') out.elapsedMs = Math.max(out.elapsedMs, s.elapsedMs);
      else out[k] += s[k];
    }
    h.merge(Histogram.fromJSON(s.latency));
  }
  out.latency = h.toJSON();
  return out;
}

module.exports = { Histogram, KINDS, Stats, bump, mergeSnapshots };
