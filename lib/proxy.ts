// HTTP proxies for clients: the proxy URL, the environment (HTTPS_PROXY /
// HTTP_PROXY / NO_PROXY, read as curl and undici read them) and the CONNECT
// request that opens the tunnel. The tunnel itself is native (connection.cc:
// the kProxy state), on the client's own socket.
import { BlockList, isIP } from 'node:net';
import { codedError, invalidArgType } from './errors';

export interface ProxyTarget {
  /** The proxy as given, without credentials: for error messages. */
  display: string;
  host: string;
  port: number;
  /** `Proxy-Authorization` header line, or ''. */
  authorization: string;
}

function invalidProxy(value: string, why: string): Error {
  // Never echo credentials back in an error message.
  const shown = value.replace(/\/\/[^@/]*@/, '//***@');
  const err = codedError(
    'ERR_INVALID_PROXY_URL',
    `Invalid proxy URL ${JSON.stringify(shown)}: ${why}`,
  );
  err.name = 'TypeError';
  return err;
}

/**
 * The user:password of `u` (percent-decoded) as HTTP Basic credentials (base64), or '' when the
 * URL has none; throws `malformed()` when they do not decode.
 */
export function basicCredentials(u: URL, malformed: () => Error): string {
  if (!u.username && !u.password) return '';
  let user: string;
  let pass: string;
  try {
    user = decodeURIComponent(u.username);
    pass = decodeURIComponent(u.password);
  } catch {
    throw malformed();
  }
  return Buffer.from(`${user}:${pass}`).toString('base64');
}

/** An http:// proxy URL (a bare `host:port` means http://, as in curl). */
export function parseProxyUrl(value: string): ProxyTarget {
  const text = /^[a-z][a-z0-9+.-]*:\/\//i.test(value) ? value : `http://${value}`;
  let u: URL;
  try {
    u = new URL(text);
  } catch {
    throw invalidProxy(value, 'not a URL');
  }
  if (u.protocol !== 'http:') {
    throw invalidProxy(
      value,
      `only http:// proxies are supported (the tunnel is HTTP CONNECT), not ${u.protocol}`,
    );
  }
  if (!u.hostname) throw invalidProxy(value, 'no host');
  if ((u.pathname !== '/' && u.pathname !== '') || u.search || u.hash) {
    throw invalidProxy(value, 'a proxy URL has no path, query or fragment');
  }
  const host = u.hostname.startsWith('[') ? u.hostname.slice(1, -1) : u.hostname;
  const basic = basicCredentials(u, () =>
    invalidProxy(value, 'malformed percent-encoding in the credentials'),
  );
  const authorization = basic ? `Proxy-Authorization: Basic ${basic}\r\n` : '';
  return {
    display: `http://${u.host}`,
    host,
    port: u.port ? Number(u.port) : 80,
    authorization,
  };
}

/** The environment's proxy for a ws:// (`secure` false) or wss:// URL, or undefined. */
export function proxyFromEnv(
  secure: boolean,
  env: NodeJS.ProcessEnv = process.env,
): string | undefined {
  // Lower case wins over upper case (undici, curl); wss:// falls back to http_proxy.
  const pick = (lower: string, upper: string) => {
    const v = env[lower] ?? env[upper];
    return v && v.trim() !== '' ? v.trim() : undefined;
  };
  const http = pick('http_proxy', 'HTTP_PROXY');
  return secure ? (pick('https_proxy', 'HTTPS_PROXY') ?? http) : http;
}

interface NoProxyRule {
  /** Host name (lower case, no leading dot) or IP literal. */
  host: string;
  /** Match sub-domains only (`*.example.com`), or also the name itself. */
  subdomainsOnly: boolean;
  port: number | undefined;
  cidr: BlockList | undefined;
}

function parseNoProxy(value: string): NoProxyRule[] | 'all' {
  const rules: NoProxyRule[] = [];
  for (let entry of value.split(/[\s,]+/)) {
    entry = entry.trim().toLowerCase();
    if (!entry) continue;
    if (entry === '*') return 'all';
    let port: number | undefined;
    const bracketed = /^\[([^\]]+)\](?::(\d+))?$/.exec(entry);
    if (bracketed) {
      entry = bracketed[1];
      port = bracketed[2] ? Number(bracketed[2]) : undefined;
    } else if (/^[^:]+:\d+$/.test(entry)) {
      const i = entry.lastIndexOf(':');
      port = Number(entry.slice(i + 1));
      entry = entry.slice(0, i);
    }
    let cidr: BlockList | undefined;
    const slash = entry.indexOf('/');
    if (slash > 0) {
      const ip = entry.slice(0, slash);
      const bits = Number(entry.slice(slash + 1));
      const family = isIP(ip);
      if (family && Number.isInteger(bits) && bits >= 0 && bits <= (family === 4 ? 32 : 128)) {
        cidr = new BlockList();
        cidr.addSubnet(ip, bits, family === 4 ? 'ipv4' : 'ipv6');
      } else continue; // not a usable rule
    }
    let subdomainsOnly = false;
    if (entry.startsWith('*.')) {
      entry = entry.slice(2);
      subdomainsOnly = true;
    } else if (entry.startsWith('.')) {
      entry = entry.slice(1); // curl: ".example.com" also matches example.com
    }
    rules.push({ host: entry.replace(/\.$/, ''), subdomainsOnly, port, cidr });
  }
  return rules;
}

/**
 * Whether NO_PROXY (or no_proxy) says `host:port` is reached directly: `*`
 * matches everything; `example.com` and `.example.com` match that name and every
 * name under it; `*.example.com` only the names under it; IP literals match
 * exactly, `10.0.0.0/8` by prefix; `:port` restricts a rule to one port.
 */
export function bypassesProxy(
  host: string,
  port: number,
  env: NodeJS.ProcessEnv = process.env,
): boolean {
  const value = env.no_proxy ?? env.NO_PROXY;
  if (!value) return false;
  const rules = parseNoProxy(value);
  if (rules === 'all') return true;
  const name = host.toLowerCase().replace(/\.$/, '');
  const family = isIP(name);
  for (const r of rules) {
    if (r.port !== undefined && r.port !== port) continue;
    if (r.cidr) {
      if (family && r.cidr.check(name, family === 4 ? 'ipv4' : 'ipv6')) return true;
      continue;
    }
    if (family) {
      if (isIP(r.host) === family && normalizeIp(r.host) === normalizeIp(name)) return true;
      continue;
    }
    if (!r.subdomainsOnly && name === r.host) return true;
    if (name.endsWith(`.${r.host}`)) return true;
  }
  return false;
}

function normalizeIp(ip: string): string {
  if (isIP(ip) !== 6) return ip;
  // One spelling of each IPv6 address, through the URL parser.
  try {
    return new URL(`http://[${ip}]/`).hostname;
  } catch {
    return ip;
  }
}

/** The proxy option, resolved for one target: undefined means a direct connection. */
export function chooseProxy(
  option: unknown,
  secure: boolean,
  host: string,
  port: number,
): ProxyTarget | undefined {
  if (option === undefined || option === false || option === null) return undefined;
  if (typeof option !== 'string') {
    throw invalidArgType('proxy', "a proxy URL string or 'env'", option);
  }
  if (option === 'env') {
    const fromEnv = proxyFromEnv(secure);
    if (!fromEnv || bypassesProxy(host, port)) return undefined;
    return parseProxyUrl(fromEnv);
  }
  return parseProxyUrl(option);
}

/** The CONNECT request for `host:port` (an IPv6 literal in brackets). */
export function connectRequest(proxy: ProxyTarget, host: string, port: number): string {
  const authority = `${isIP(host) === 6 ? `[${host}]` : host}:${port}`;
  return `CONNECT ${authority} HTTP/1.1\r\nHost: ${authority}\r\n${proxy.authorization}\r\n`;
}
