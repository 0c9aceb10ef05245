import type { Channel, ChannelModel, ConfirmChannel } from 'amqplib';
import { BrokerError } from '../errors.js';
import { channelLimit, openChannelCount } from './amqplib-adapter.js';

/**
 * Opens a channel (a confirm channel with `confirm`), turning a connection
 * that has no channel left into a `BrokerError` that says what to do instead
 * of amqplib's plain `Error`. @internal
 */
export async function openChannel(model: ChannelModel, confirm: true): Promise<ConfirmChannel>;
export async function openChannel(model: ChannelModel, confirm?: false): Promise<Channel>;
export async function openChannel(model: ChannelModel, confirm = false): Promise<Channel> {
  try {
    return confirm ? await model.createConfirmChannel() : await model.createChannel();
  } catch (err) {
    const max = channelLimit(model);
    // amqplib allocates channel numbers itself and throws before asking the broker when none is free.
    if (max !== undefined && openChannelCount(model) >= max) {
      throw new BrokerError(
        `this connection has no channel left (all ${max} are open): each producer takes two and each consumer one. ` +
          `Give some components a connection of their own, close the ones you no longer use, or raise the broker's ` +
          'channel_max.',
        'CHANNELS_EXHAUSTED',
        { cause: err },
      );
    }
    throw err;
  }
}
