/**
 * The senders a contract gives a producer: `message_NAME` for its messages, `rpc_NAME` for its RPCs, typed from the
 * entries. Types only: `Producer<T>` adds them where `T` carries a contract (`ContractProducer`).
 */
import type { SendOptions } from './send-options.js';
import type { ContractEntry, ContractParams, ContractResult, ContractResultValue } from '../envelope/contract.js';

/** A sender's arguments: the parameters (optional where the entry takes none, or only optional ones), then options. */
type SendArgs<P, O> = {} extends P ? [params?: P, options?: O] : [params: P, options?: O];
/** With options that must be given (`_queue_only: true`). */
type SendArgsWith<P, O> = {} extends P ? [params: P | undefined, options: O] : [params: P, options: O];

/** `message_NAME` of a contract's message: sends `MessageCommand(NAME, params)`. */
export type ContractMessageSender<P> = (...args: SendArgs<P, SendOptions>) => Promise<void>;

/**
 * `rpc_NAME` of a contract's RPC: calls `RpcCommand(NAME, params)` and resolves to the entry's result type (never
 * rejects for a remote failure); with `_queue_only: true`, to the reply queue's name.
 */
export interface ContractRpcSender<P, R> {
  (...args: SendArgsWith<P, SendOptions & { _queue_only: true }>): Promise<string>;
  (...args: SendArgs<P, SendOptions>): Promise<ContractResult<R>>;
}

/** Every sender a contract `C` gives. */
export type ContractSenders<C> = {
  [N in keyof C & string as C[N] extends { kind: 'rpc' } ? `rpc_${N}` : `message_${N}`]: C[N] extends ContractEntry
    ? C[N]['kind'] extends 'rpc'
      ? ContractRpcSender<ContractParams<C[N]>, ContractResultValue<C[N]>>
      : ContractMessageSender<ContractParams<C[N]>>
    : never;
};

/** What marks a producer's instance type as typed from contract `C` (a type only: nothing at run time). */
export interface ContractBrand<C> {
  readonly '~contract': C;
}
