'use strict';
// The machine's TCP sockets, read from Linux's /proc/net/tcp and /proc/net/tcp6, and its
// ephemeral port range.
//
// Shared by the stress CLI (who holds a port that would not bind, and is a port still held after
// server.close()), the soak script and the test suite (listening and TIME_WAIT sockets on a
// port), so that there is one parser of the kernel's format.

const fs = require('node:fs');

/** The kernel's TCP state numbers (include/net/tcp_states.h) as names. */
const TCP_STATES = {
  '01': 'ESTABLISHED',
  '02': 'SYN_SENT',
  '03': 'SYN_RECV',
  '04': 'FIN_WAIT1',
  '05': 'FIN_WAIT2',
  '06': 'TIME_WAIT',
  '07': 'CLOSE',
  '08': 'CLOSE_WAIT',
  '09': 'LAST_ACK',
  '0A': 'LISTEN',
  '0B': 'CLOSING',
};

/** An IPv4 address as /proc writes it: 8 hex digits, the bytes in host (little-endian) order. */
function decodeV4(hex) {
  const n = Number.parseInt(hex, 16);
  return [n & 255, (n >>> 8) & 255, (n >>> 16) & 255, (n >>> 24) & 255].join('.');
}

/** An IPv6 address as /proc writes it: four 32-bit words, each in host order. */
function decodeV6(hex) {
  const bytes = [];
  for (let w = 0; w < 4; w++) {
    const word = hex.slice(w * 8, w * 8 + 8);
    for (let b = 3; b >= 0; b--) bytes.push(Number.parseInt(word.slice(b * 2, b * 2 + 2), 16));
  }
  const groups = [];
  for (let i = 0; i < 16; i += 2) groups.push(((bytes[i] << 8) | bytes[i + 1]).toString(16));
  return compressV6(groups);
}

/** RFC 5952 text form: the longest run of two or more zero groups becomes "::". */
function compressV6(groups) {
  let best = -1;
  let bestLen = 0;
  for (let i = 0; i < 8; ) {
    if (groups[i] !== '0') {
      i++;
      continue;
    }
    let j = i;
    while (j < 8 && groups[j] === '0') j++;
    if (j - i > bestLen) {
      best = i;
      bestLen = j - i;
    }
    i = j;
  }
  if (bestLen < 2) return groups.join(':');
  return `${groups.slice(0, best).join(':')}::${groups.slice(best + bestLen).join(':')}`;
}

const hexPort = (addr) => Number.parseInt(addr.slice(addr.indexOf(':') + 1), 16);

/**
 * TCP sockets of the machine as `{ family, localAddress, localPort, remoteAddress, remotePort,
 * state, rxQueue, txQueue, inode }` (state: a TCP_STATES name; rxQueue: bytes received and not
 * read yet; txQueue: bytes written and not acknowledged yet, the send queue; inode: a string, to
 * match against /proc/self/fd's `socket:[inode]` links, '0' once no descriptor holds the socket).
 * With `port`, only the sockets whose local port it is (their addresses are the only ones
 * decoded). Null when neither file can be read (not Linux).
 */
function tcpSockets({ port } = {}) {
  const out = [];
  let readAny = false;
  for (const [file, family, decode] of [
    ['/proc/net/tcp', 'IPv4', decodeV4],
    ['/proc/net/tcp6', 'IPv6', decodeV6],
  ]) {
    let text;
    try {
      text = fs.readFileSync(file, 'latin1');
    } catch {
      continue;
    }
    readAny = true;
    const lines = text.split('\n');
    for (let i = 1; i < lines.length; i++) {
      const f = lines[i].trim().split(/\s+/);
      if (f.length < 10) continue;
      const localPort = hexPort(f[1]);
      if (port !== undefined && localPort !== port) continue;
      out.push({
        family,
        localAddress: decode(f[1].slice(0, f[1].indexOf(':'))),
        localPort,
        remoteAddress: decode(f[2].slice(0, f[2].indexOf(':'))),
        remotePort: hexPort(f[2]),
        state: TCP_STATES[f[3]] ?? f[3],
        rxQueue: Number.parseInt(f[4].slice(f[4].indexOf(':') + 1), 16),
        txQueue: Number.parseInt(f[4].slice(0, f[4].indexOf(':')), 16),
        inode: f[9],
      });
    }
  }
  return readAny ? out : null;
}

/**
 * The kernel's ephemeral port range (`[first, last]`, from /proc/sys/net/ipv4/ip_local_port_range):
 * where bind(port 0) and connect() take their ports. Linux's default when it cannot be read.
 */
function ephemeralPortRange() {
  try {
    const [a, b] = fs
      .readFileSync('/proc/sys/net/ipv4/ip_local_port_range', 'utf8')
      .trim()
      .split(/\s+/)
      .map(Number);
    if (a > 0 && b >= a) return [a, b];
  } catch {
    /* not Linux */
  }
  return [32768, 60999];
}

module.exports = { TCP_STATES, ephemeralPortRange, tcpSockets };
