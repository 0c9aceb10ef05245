// The public surface of postage-ts, and nothing internal: spec/api-surface.txt lists every name each subpath of
// package.json's `exports` (`postage-ts`, `/testing`, `/nestjs`, `/postgres`, `/redis`, `/contract`) exports, and
// spec/api.spec.ts fails when a subpath is missing from it or differs from that list.
export {
  MicroThread,
  MicroScheduler,
  STOP,
  sleep,
  call,
  type MicroSchedulerOptions,
  type StepResult,
} from './microthreads/index.js';
export {
  Fingerprint,
  type FingerprintDict,
  type FingerprintTuple,
  type FingerprintOverrides,
} from './envelope/fingerprint.js';
export { Encoder, JsonEncoder, type JsonEncoderOptions } from './envelope/encoder.js';
export { EncryptedJsonEncoder, type EncryptionOptions } from './envelope/encryption.js';
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
} from './envelope/messages.js';
export { Exchange, type ExchangeObject, type ExchangeLike, type ExchangeParameters } from './topology/exchange.js';
export { loadConfig, DEFAULTS, type PostageConfig, type Hup } from './config.js';
export {
  configureLogging,
  type LoggingOptions,
  type Logger,
  type AnyLogger,
  type FieldsLogger,
  type NestLoggerService,
} from './log.js';
export {
  PostageError,
  ControlSignal,
  type PostageErrorCode,
  type BrokerErrorCode,
  type ControlSignalCode,
  ConfigError,
  MalformedMessage,
  StopThread,
  ExitScheduler,
  RejectMessage,
  RequeueMessage,
  DeferMessage,
  AckAndRestart,
  FilterError,
  DeliveryLimitExceeded,
  HandlerTimeout,
  ReservedHandlerName,
  ValidationError,
  StreamError,
  StoreError,
  type ValidationIssue,
  BrokerError,
  TopologyError,
  PartitionCountMismatch,
  type SendTarget,
} from './errors.js';
export {
  GenericProducer,
  type Producer,
  type ProducerMiddleware,
  type OutgoingSend,
  type MessageSender,
  type RpcSender,
  type StreamSender,
  type ParamsOf,
  type ProducerOptions,
  type SendOptions,
  type ConsumeRpcOptions,
} from './send/producer.js';
export {
  GenericConsumer,
  type ConsumerEvent,
  type ConsumerEvents,
  type ConsumerOptions,
  type ConsumeMessage,
} from './receive/consumer.js';
export {
  MessageProcessor,
  type ProcessorOptions,
  type RetryOptions,
  type DeliveryEvent,
  type ProcessorMiddleware,
  type MiddlewareContext,
  type ProcessorEvents,
  type ProcessorEvent,
} from './receive/processor.js';
export {
  MemoryIdempotencyStore,
  type IdempotencyStore,
  type IdempotencyClaim,
  type IdempotencyClaimOptions,
  type MemoryIdempotencyOptions,
} from './stores/idempotency.js';
export type * from './stores/public.js';
export { currentDelivery, HEADERS as CONVERSATION_HEADERS, type DeliveryInfo } from './scope/context.js';
export { configureTelemetry, type TelemetryOptions } from './telemetry/settings.js';
export {
  MessageHandler,
  MessageHandlerFullBody,
  RpcHandler,
  MessageFilter,
  Handler,
  type HandlerDecorator,
  type HandlerTag,
  type HandlerOptions,
  type ContentOf,
} from './receive/handlers.js';
export {
  JsonHandler,
  CloudEventHandler,
  type JsonHandlerOptions,
  type CloudEventHandlerOptions,
} from './receive/format-handlers.js';
export type { CloudEventAttributes, CloudEventSendOption } from './formats/cloudevents.js';
export * from './contract/index.js';
export {
  ContractHandler,
  type ContractHandlerDecorator,
  type ContractHandlerOptions,
  type ContractContent,
  type ContractReturn,
} from './contract/handler.js';
export {
  ContractProducer,
  type ContractProducerClass,
  type ContractProducerOptions,
} from './contract/contract-producer.js';
export type { Eks, Eqk, QueueSpec, QueueFlags } from './topology/topology.js';
export type { BrokerOptions, ConnectOptions } from './transport/connection.js';
export type { TlsOptions } from './transport/tls.js';
export type { ConnectionEvent, ConnectionEvents, ReconnectOptions } from './transport/managed.js';
export { connect, Connection, type ConnectionOptions } from './transport/shared.js';
export type { ConnectionStatus } from './transport/status.js';
export type { SharedConnection } from './transport/link.js';
export {
  GenericApplication,
  GenericApplicationExchange,
  PresenceExchange,
  applicationKeys,
  type ApplicationOptions,
} from './application/generic_application.js';
export type { ProcessorDescription, HandlerDescription } from './receive/description.js';
export type { PartitionMove, PartitionsDescription } from './receive/partitions/spread.js';
export { VERSION } from './version.js';
export { serve, type Served, type ServeOptions } from './application/serve.js';
export type { StandardSchemaV1 } from '@standard-schema/spec';
export {
  ErrorQueue,
  type ErrorQueueView,
  type FailedMessage,
  type FailedSelection,
  type ReplayOptions,
  type ReplayReport,
} from './operations/error-queue.js';
export { startDashboard, type Dashboard, type DashboardOptions } from './operations/dashboard/start.js';
export {
  topologyGraph,
  toMermaid,
  toDot,
  toSvg,
  type TopologyGraph,
  type GraphNode,
  type GraphEdge,
} from './operations/topology-graph.js';
