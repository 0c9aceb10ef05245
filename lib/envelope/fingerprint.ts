import os from 'node:os';
import { config } from '../config.js';

/** A component's identity as it travels in every envelope: six strings. */
export interface FingerprintDict {
  name: string;
  type: string;
  pid: string;
  host: string;
  user: string;
  vhost: string;
  [extra: string]: string;
}

export type FingerprintTuple = [name: string, type: string, pid: string, host: string, user: string, vhost: string];

export interface FingerprintOverrides {
  pid?: string | number;
  host?: string;
  user?: string;
  vhost?: string;
}

function osUser(): string {
  try {
    return os.userInfo().username;
  } catch {
    // No passwd entry (some containers): fall back to the environment.
    return process.env.USER ?? process.env.USERNAME ?? 'unknown';
  }
}

/**
 * Who a component is: its name and type from the caller, pid, host, user and
 * vhost from the OS and configuration unless overridden.
 *
 * @example
 * new Fingerprint('echo_receive', 'controller').asDict()
 */
export class Fingerprint {
  readonly name: string;
  readonly type: string;
  readonly pid: string;
  readonly host: string;
  readonly user: string;
  readonly vhost: string;

  constructor(name?: string, type?: string, overrides: FingerprintOverrides = {}) {
    this.name = String(name);
    this.type = String(type);
    this.pid = String(overrides.pid ?? process.pid);
    this.host = String(overrides.host ?? os.hostname());
    this.user = String(overrides.user ?? osUser());
    this.vhost = String(overrides.vhost ?? config().vhost);
  }

  asDict(): FingerprintDict {
    return { name: this.name, type: this.type, pid: this.pid, host: this.host, user: this.user, vhost: this.vhost };
  }

  asTuple(): FingerprintTuple {
    return [this.name, this.type, this.pid, this.host, this.user, this.vhost];
  }
}
