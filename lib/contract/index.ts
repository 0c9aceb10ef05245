// postage-ts/contract: what a contract module shared between services imports. Nothing here loads amqplib.
export {
  defineContract,
  typeOnly,
  isContract,
  type Contract,
  type ContractEntry,
  type ContractEntries,
  type ContractParams,
  type ContractParamsOut,
  type ContractResultValue,
  type ContractResult,
} from '../envelope/contract.js';
export type {
  ContractMessageSender,
  ContractRpcSender,
  ContractSenders,
  ContractBrand,
} from '../send/contract-senders.js';
