/** The private-node broker of the fault specs is the one postage-ts/testing offers its users. */
export { PrivateBroker, type BrokerExtras } from '../../lib/testing/private-broker.js';
