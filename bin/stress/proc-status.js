'use strict';
// Memory of a process from Linux's /proc/<pid>/status: VmRSS (now) and VmHWM (the peak RSS
// since it started), and the open-files limit from /proc/<pid>/limits.

const fs = require('node:fs');

/** `{ rssKiB, hwmKiB }` of process `pid`, or null when /proc cannot tell (not Linux, gone). */
function procStatus(pid) {
  let text;
  try {
    text = fs.readFileSync(`/proc/${pid}/status`, 'latin1');
  } catch {
    return null;
  }
  const kib = (name) => {
    const m = new RegExp(`^${name}:\\s+(\\d+) kB`, 'm').exec(text);
    return m ? Number(m[1]) : null;
  };
  const rssKiB = kib('VmRSS');
  const hwmKiB = kib('VmHWM');
  return rssKiB === null || hwmKiB === null ? null : { rssKiB, hwmKiB };
}

/** `{ soft, hard }` limit of open descriptors of process `pid` (Infinity: unlimited), or null. */
function fdLimit(pid = 'self') {
  try {
    const text = fs.readFileSync(`/proc/${pid}/limits`, 'latin1');
    const m = /^Max open files\s+(\S+)\s+(\S+)/m.exec(text);
    if (!m) return null;
    const n = (v) => (v === 'unlimited' ? Number.POSITIVE_INFINITY : Number(v));
    return { soft: n(m[1]), hard: n(m[2]) };
  } catch {
    return null;
  }
}

module.exports = { fdLimit, procStatus };
