/**
 * postage-ts/testing: test the components you build on postage-ts.
 * - `ProcessorHarness`: a processor's real dispatch without a broker.
 * - `testProducer`: a producer that records what it sends and answers its RPCs from canned answers.
 * - `throwawayVhost`, `received`: integration tests against a real broker, awaiting events.
 * - `PrivateBroker`: a RabbitMQ node of a test's own, to stop, kill and restart.
 * - `MemoryStore`: a processor's `store` (outbox, inbox, transactions) in memory.
 * See docs/testing.md.
 */
export { ProcessorHarness, type HarnessDelivery, type HarnessResult } from './harness.js';
export {
  testProducer,
  captured,
  clearCaptured,
  type SentMessage,
  type CannedAnswer,
  type TestProducerOptions,
} from './producers.js';
export { throwawayVhost, received, type ThrowawayVhost, type ReceivedOptions } from './fixtures.js';
export { PrivateBroker, type BrokerExtras } from './private-broker.js';
export {
  MemoryStore,
  type MemoryStoreOptions,
  type MemoryStatement,
  type MemoryOutboxRow,
} from '../stores/memory.js';
export type { DeliveryEvent } from '../receive/processor.js';
