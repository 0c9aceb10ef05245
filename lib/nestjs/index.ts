/**
 * `postage-ts/nestjs`: postage-ts as a NestJS module. `@nestjs/common` and
 * `@nestjs/core` (11 or 12) are optional peer dependencies: only this entry
 * point loads them.
 */
export {
  PostageModule,
  type PostageModuleOptions,
  type PostageModuleAsyncOptions,
  type PostageModuleStatics,
  type ProducerClass,
} from './module.js';
export { PostageHealthIndicator, type PostageHealthResult } from './health.js';
export {
  InjectPostage,
  InjectConnection,
  InjectProducer,
  POSTAGE_CONNECTION,
  POSTAGE_COMPONENT_OPTIONS,
  type PostageComponentOptions,
} from './tokens.js';
export type { ProcessorSelection } from './runtime.js';
