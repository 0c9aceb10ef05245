import type { Hup } from '../config.js';
import type { Exchange } from '../topology/exchange.js';
import type { FingerprintDict } from '../envelope/fingerprint.js';
import { MessageHandler, registerMachinery, RpcHandler } from '../receive/handlers.js';
import { MessageResult } from '../envelope/messages.js';
import { constructorOptions, type Positional } from '../component-options.js';
import { MessageProcessor, PROCESSOR_OPTIONS, type ProcessorOptions } from '../receive/processor.js';
import { GenericApplicationExchange, OWN_PRESENCE, PresenceExchange } from '../receive/presence.js';
import type { Eqk, QueueFlags, QueueSpec } from '../topology/topology.js';

export { GenericApplicationExchange, PresenceExchange };

/** Postage's positional form of a GenericApplication. */
const APPLICATION_FORM: readonly Positional[] = [
  ['fingerprint', 'object'],
  ['vhost', 'string'],
  ['groups', 'array'],
  ['hup', 'object'],
];

export interface ApplicationOptions extends Omit<ProcessorOptions, 'eqk'> {
  /** Groups joined at start (more with the `join_group` command). */
  groups?: string[];
  /** Extra bindings besides the standard ones. */
  eqk?: Eqk;
}

/** The standard routing keys of a component named `name`, pid `pid`, on `host`. */
export function applicationKeys(name: string, pid: string, host: string) {
  return {
    roundRobin: `${name}/rr`,
    fanout: name,
    host: `@${host}`,
    hostRoundRobin: `${name}@${host}/rr`,
    hostFanout: `${name}@${host}`,
    unique: `${pid}@${host}`,
    presence: 'presence',
    hostPresence: `presence@${host}`,
    group: (g: string) => `${name}#${g}`,
    groupRoundRobin: (g: string) => `${name}#${g}/rr`,
  };
}

const APPLICATION_OPTIONS: Readonly<Record<keyof ApplicationOptions, true>> = { ...PROCESSOR_OPTIONS, groups: true };

const shared = (name: string): QueueSpec => ({ name, flags: { durable: false, autoDelete: true } });

/**
 * A `MessageProcessor` addressable the Postage way: by name (round robin or
 * fanout), by host, by name and host, uniquely by pid@host, by presence, and
 * by groups joined and left at run time. Answers the `ping` RPC with its
 * fingerprint. Its presence is its own queue's (`pid@host`, bound with
 * `presence` and `presence@H`; not with `presence: false`), where it also
 * takes `quit` and `restart`.
 */
export class GenericApplication extends MessageProcessor {
  static exchangeClass: typeof Exchange = GenericApplicationExchange;

  readonly groups: string[];
  /** The component's own queue (`pid@host`): only it consumes from it. */
  readonly uid: { name: string; flags: QueueFlags };

  constructor(options?: ApplicationOptions);
  constructor(fingerprint: Partial<FingerprintDict>, vhost?: string, groups?: string[], hup?: Partial<Hup>);
  constructor(
    ...args:
      | [options?: ApplicationOptions]
      | [fingerprint: Partial<FingerprintDict>, vhost?: string, groups?: string[], hup?: Partial<Hup>]
  ) {
    // Not a processor's (fingerprint, eqk, hup, vhost): an eqk passed on from a subclass that was one is refused here,
    // by name.
    const opts = constructorOptions(
      new.target.name,
      args,
      APPLICATION_OPTIONS,
      APPLICATION_FORM,
      (fingerprint: Partial<FingerprintDict> = {}, vhost?: string, groups: string[] = [], hup?: Partial<Hup>) =>
        ({ fingerprint, vhost, groups, hup }) as ApplicationOptions,
    );
    // The standard bindings need the full fingerprint, which the processor builds: declare them in ready().
    super({ ...opts, eqk: [] });
    const { name, pid, host } = this.fingerprint;
    const keys = applicationKeys(name, pid, host);
    const exchange = (this.constructor as typeof GenericApplication).exchangeClass;
    this.uid = { name: `${pid}@${host}`, flags: { durable: false, exclusive: true, autoDelete: true } };
    this.groups = [];
    const eqk: Eqk = [
      [
        exchange,
        [
          [shared(name), keys.roundRobin],
          [this.uid, keys.fanout],
          [this.uid, keys.host],
          [shared(`${name}@${host}`), keys.hostRoundRobin],
          [this.uid, keys.hostFanout],
          [this.uid, keys.unique],
        ],
      ],
      ...(opts.presence === false
        ? []
        : [
            [
              PresenceExchange,
              [
                [this.uid, keys.presence],
                [this.uid, keys.hostPresence],
              ],
            ] as const,
          ]),
      ...(opts.eqk ?? []),
    ];
    this.#initial = { eqk, groups: [...(opts.groups ?? [])] };
  }

  #initial: { eqk: Eqk; groups: string[] };
  #ready: Promise<void> | undefined;

  override ready(): Promise<void> {
    this.#ready ??= (async () => {
      await this.consumer.ready();
      await this.consumer.addEqk(this.#initial.eqk);
      for (const g of this.#initial.groups) await this.joinGroup(g);
      await super.ready();
    })();
    return this.#ready;
  }

  /** Joins group `g`: `NAME#g` (fanout, on this component's own queue) and `NAME#g/rr` (round robin over the group). */
  async joinGroup(group: string): Promise<void> {
    if (this.groups.includes(group)) return;
    this.groups.push(group);
    const keys = applicationKeys(this.fingerprint.name, this.fingerprint.pid, this.fingerprint.host);
    const exchange = (this.constructor as typeof GenericApplication).exchangeClass;
    await this.consumer.queueBind(exchange, this.uid, keys.group(group));
    await this.consumer.queueBind(exchange, shared(keys.group(group)), keys.groupRoundRobin(group));
    this.log.info({ group }, `joined group ${keys.group(group)}`);
  }

  /**
   * Leaves group `g`. The round-robin queue is shared by the whole group, so
   * leaving stops consuming it instead of unbinding it (Postage unbound it,
   * cutting every other member off); the last member to leave deletes it.
   */
  async leaveGroup(group: string): Promise<void> {
    const i = this.groups.indexOf(group);
    if (i < 0) return;
    this.groups.splice(i, 1);
    const keys = applicationKeys(this.fingerprint.name, this.fingerprint.pid, this.fingerprint.host);
    const exchange = (this.constructor as typeof GenericApplication).exchangeClass;
    await this.consumer.queueUnbind(exchange, this.uid.name, keys.group(group));
    await this.consumer.queueCancel(keys.group(group));
    this.log.info({ group }, `left group ${keys.group(group)}`);
  }

  @RpcHandler('command', 'ping')
  rpcPing(): MessageResult<FingerprintDict> {
    return new MessageResult(this.fingerprint);
  }

  @MessageHandler('command', 'join_group')
  msgJoinGroup(content: { parameters: { group_name: string } }): Promise<void> {
    return this.joinGroup(String(content.parameters.group_name));
  }

  @MessageHandler('command', 'leave_group')
  msgLeaveGroup(content: { parameters: { group_name: string } }): Promise<void> {
    return this.leaveGroup(String(content.parameters.group_name));
  }
}

// Its members are the application's own: a handler may not take their names (see handlers.ts).
registerMachinery(GenericApplication, false);
// Its presence is its own queue's: the processor adds none (a static, so subclasses inherit it; not a public name).
Object.defineProperty(GenericApplication, OWN_PRESENCE, { value: true });
