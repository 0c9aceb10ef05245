import type { AnyLogger } from './log.js';
import type { BrokerOptions } from './transport/connection.js';
import type { ReconnectOptions } from './transport/managed.js';
import type { SharedConnection } from './transport/link.js';
import type { Encoder } from './envelope/encoder.js';
import type { FingerprintDict } from './envelope/fingerprint.js';

/** What every component (producer, consumer, processor) is built from. */
export interface ComponentOptions extends BrokerOptions {
  /** Merged over the fingerprint taken from the OS and the class name. */
  fingerprint?: Partial<FingerprintDict>;
  /**
   * Share a connection instead of opening one: a postage-ts connection from
   * `connect()` (it reconnects, and sets this component up again after each
   * loss), or, as the advanced case, a raw amqplib `ChannelModel` (whose owner
   * handles its loss: nothing on it recovers by itself).
   */
  connection?: SharedConnection;
  encoder?: Encoder;
  /**
   * The host's logger: pino (a child of the application's), a `(fields, message)` logger, Nest's `LoggerService`, or
   * `console`; defaults to postage-ts's own.
   */
  logger?: AnyLogger;
  /** Backoff for reconnecting after a lost connection. */
  reconnect?: ReconnectOptions;
}

/** The fields only a fingerprint has (`vhost` is also an option, and means the same in both). */
const FINGERPRINT_FIELDS = ['name', 'type', 'pid', 'host', 'user'];

/**
 * Which form a constructor was called in: Postage's positional one (a
 * fingerprint first, then more arguments) or one options object. Two or more
 * arguments are positional; a lone object is a fingerprint when it has a
 * fingerprint's own fields (name, type, pid, host, user), else options; one
 * that mixes those fields with options is refused rather than guessed at.
 * @internal
 */
export function constructorForm(
  args: readonly unknown[],
  options: Readonly<Record<string, true>>,
  what: string,
): 'positional' | 'options' {
  if (args.length > 1) return 'positional';
  const first = args[0];
  if (first === undefined || first === null || typeof first !== 'object') return 'options';
  const keys = Object.keys(first);
  const fp = keys.filter((k) => FINGERPRINT_FIELDS.includes(k));
  if (fp.length === 0) return 'options';
  const opts = keys.filter((k) => k !== 'vhost' && Object.hasOwn(options, k));
  if (opts.length > 0) {
    throw new TypeError(
      `${what} got one object with a fingerprint's fields (${fp.join(', ')}) and options (${opts.join(', ')}): ` +
        `put the fingerprint in the options, { fingerprint: { ${fp.join(', ')} }, ${opts.join(', ')} }`,
    );
  }
  return 'positional';
}

/**
 * The options a component's constructor was given, in either of its forms: the options object as it is, or the
 * positional arguments, checked against `form`, made into options by `toOptions`.
 * @internal
 */
export function constructorOptions<O extends object, P extends unknown[]>(
  what: string,
  args: readonly unknown[],
  names: Readonly<Record<string, true>>,
  form: readonly Positional[],
  toOptions: (...positional: P) => O,
): O {
  if (constructorForm(args, names, what) === 'options') return (args[0] === undefined ? {} : args[0]) as O;
  checkPositional(what, args, form);
  return toOptions(...(args as P));
}

/** What one positional constructor argument must be. */
export type Positional = readonly [name: string, kind: 'object' | 'array' | 'string'];

/**
 * Refuses a positional argument of the wrong kind, naming the right call: the
 * forms differ between classes (`MessageProcessor(fingerprint, eqk, hup,
 * vhost)`, `GenericApplication(fingerprint, vhost, groups, hup)`), and a base
 * class switched under `super(fp, eqk)` would otherwise take an eqk for a vhost.
 * @internal
 */
export function checkPositional(what: string, args: readonly unknown[], form: readonly Positional[]): void {
  const call = `new ${what}(${form.map(([n]) => n).join(', ')})`;
  args.forEach((a, i) => {
    if (a === undefined) return;
    const at = form[i];
    if (!at)
      throw new TypeError(
        `${call} takes ${form.length} arguments, not ${args.length}: use the options form, new ${what}({ ` +
          'fingerprint, … })',
      );
    const [name, kind] = at;
    const ok =
      kind === 'array'
        ? Array.isArray(a)
        : kind === 'string'
          ? typeof a === 'string'
          : typeof a === 'object' && a !== null && !Array.isArray(a);
    if (ok) return;
    const got = Array.isArray(a)
      ? 'an array (an eqk?)'
      : a === null
        ? 'null'
        : typeof a === 'object'
          ? 'an object'
          : `a ${typeof a}`;
    const wanted = kind === 'object' ? 'an object' : kind === 'array' ? 'an array' : 'a string';
    const others = form
      .filter(([n]) => n !== 'fingerprint')
      .map(([n]) => n)
      .join(', ');
    throw new TypeError(
      `${call}: argument ${i + 1} is the ${name} (${wanted}), not ${got}. ` +
        `Or use the options form, new ${what}({ fingerprint, ${others} })`,
    );
  });
}
