/**
 * The dashboard's HTTP side apart from what it serves: which hosts it answers to, the token (header or cookie), and
 * small helpers to read a JSON body and answer.
 */
import { timingSafeEqual } from 'node:crypto';
import type { IncomingMessage, ServerResponse } from 'node:http';

/** A request answered with `status` and `{ error: message }`. */
export class HttpError extends Error {
  constructor(
    readonly status: number,
    message: string,
  ) {
    super(message);
    this.name = 'HttpError';
  }
}

/** Addresses that mean every interface: no one reaches the dashboard by them, so they name no host it answers to. */
const WILDCARDS = new Set(['0.0.0.0', '::', '']);

/** The host name of a `Host` header or an origin, without its port or an IPv6 address's brackets. */
export function hostOf(value: string): string {
  let v = value.trim().toLowerCase();
  const scheme = v.indexOf('://');
  if (scheme !== -1) v = v.slice(scheme + 3).split('/')[0];
  if (v.startsWith('[')) return v.slice(1, v.indexOf(']'));
  return v.replace(/:\d+$/, '');
}

/** The host names a dashboard listening on `host` answers to: loopback, its own address, and `allowHosts`. */
export function answeringTo(host: string, allowHosts: readonly string[]): ReadonlySet<string> {
  return new Set(
    ['localhost', '127.0.0.1', '::1', ...(WILDCARDS.has(host) ? [] : [host]), ...allowHosts].map((h) =>
      h.toLowerCase().replace(/^\[(.*)\]$/, '$1'),
    ),
  );
}

/**
 * Why a request is refused for its `Host`, or undefined: a name the dashboard does not answer to is what a page that
 * rebinds its own DNS name to this address sends.
 */
/** Whether an `Origin` header names this dashboard itself: http, a host it answers to, and its own port. */
export function ownOrigin(origin: string, answersTo: ReadonlySet<string>, port: number): boolean {
  let u: URL;
  try {
    u = new URL(origin);
  } catch {
    return false;
  }
  return u.protocol === 'http:' && (u.port || '80') === String(port) && answersTo.has(hostOf(u.host));
}

export function misdirected(req: { headers: { host?: string } }, answersTo: ReadonlySet<string>): string | undefined {
  const host = req.headers.host;
  if (host === undefined) return 'a request needs a Host header';
  if (answersTo.has(hostOf(host))) return undefined;
  return (
    `this dashboard does not answer to the host '${hostOf(host)}': ` +
    'use its own address or localhost, or start it with --allow-host NAME'
  );
}

/** The token every request carries: the `X-Postage-Token` header, or a cookie named for the dashboard's port. */
export class TokenCheck {
  /** One cookie per port: browsers send a host's cookies to every port on it; two dashboards must not mix theirs. */
  cookieName = 'postage-dashboard';

  constructor(readonly token: string) {}

  same(given: string | undefined): boolean {
    const a = Buffer.from(given ?? '');
    const want = Buffer.from(this.token);
    return a.length === want.length && timingSafeEqual(a, want);
  }

  /** Whether the request carries the token. */
  ok(req: IncomingMessage): boolean {
    const cookie = String(req.headers.cookie ?? '')
      .split(';')
      .map((c) => c.trim().split('='))
      .find(([k]) => k === this.cookieName)?.[1];
    return this.same(String(req.headers['x-postage-token'] ?? '')) || this.same(cookie);
  }

  /** The cookie the page's address sets: no script can read it and no other site's request carries it. */
  get setCookie(): string {
    return `${this.cookieName}=${this.token}; HttpOnly; SameSite=Strict; Path=/`;
  }
}

/** A request's body as a JSON object (at most a megabyte). */
export async function readJson(req: IncomingMessage): Promise<Record<string, unknown>> {
  let raw = '';
  for await (const chunk of req) {
    raw += String(chunk);
    if (raw.length > 1_000_000) throw new HttpError(413, 'request too large');
  }
  try {
    const v: unknown = JSON.parse(raw || '{}');
    if (typeof v === 'object' && v !== null) return v as Record<string, unknown>;
  } catch {
    // Answered below.
  }
  throw new HttpError(400, 'the body must be a JSON object');
}

export function send(res: ServerResponse, status: number, type: string, body: string): void {
  res.writeHead(status, { 'content-type': type, 'cache-control': 'no-store', 'x-content-type-options': 'nosniff' });
  res.end(body);
}

export function json(res: ServerResponse, status: number, v: unknown): void {
  send(res, status, 'application/json', JSON.stringify(v));
}
