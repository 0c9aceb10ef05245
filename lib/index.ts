// The public surface of postage-ts: exactly the names in CONTRACT.md, and nothing internal.
export { MicroThread, MicroScheduler, STOP, sleep, call, type MicroSchedulerOptions, type StepResult } from './microthreads/index.js';
export { Fingerprint, type FingerprintDict, type FingerprintTuple, type FingerprintOverrides } from './messaging/fingerprint.js';
export { Encoder, JsonEncoder, type JsonEncoderOptions } from './messaging/encoder.js';
export {
  Message,
  MessageCommand,
  RpcCommand,
  MessageStatus,
  MessageResult,
  MessageResultError,
  MessageResultException,
  type MessageBody,
  type ArgsContent,
  type CommandContent,
  type ResultContent,
  type Category,
  type ResultType,
  type AnyMessage,
  type AnyResult,
} from './messaging/messages.js';
export { Exchange, type ExchangeObject, type ExchangeLike, type ExchangeParameters } from './messaging/exchange.js';
export { loadConfig, DEFAULTS, type PostageConfig, type Hup } from './config.js';
export {
  PostageError,
  ConfigError,
  MalformedMessage,
  StopThread,
  ExitScheduler,
  RejectMessage,
  AckAndRestart,
  FilterError,
  BrokerError,
} from './errors.js';
