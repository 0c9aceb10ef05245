/**
 * `postage asyncapi`: the AsyncAPI 3.0 document of a component module (read without a broker) and of the running
 * fleet (through describe), checked against the AsyncAPI 3.0.0 JSON Schema (`@asyncapi/specs`, with ajv).
 */
import { expect } from 'chai';
import { Ajv } from 'ajv';
import formats from 'ajv-formats';
import specs from '@asyncapi/specs';
import { parse } from 'yaml';
import { asyncApiDocument, toYaml } from '../../lib/operations/asyncapi-document.js';
import { makeLogger } from '../../lib/log.js';
import { postage } from '../support/cli.js';
import { Harness } from '../support/components.js';
import { brokerUrl } from '../support/broker.js';
import { PricingService } from './fixtures/pricing-service.js';

/** A parsed document, read by path (a spec that reads a wrong path fails on the value). */
interface Doc {
  [key: string]: Doc;
}
const addFormats = formats.default;

// The bundled schema carries the draft-07 meta-schema itself: ajv's own copy would clash with it.
const ajv = new Ajv({ strict: false, allErrors: true, meta: false, validateSchema: false });
addFormats(ajv);
const validate = ajv.compile(specs.schemas['3.0.0']);

function expectValid(doc: unknown): void {
  const ok = validate(doc);
  expect(ok, JSON.stringify(validate.errors?.slice(0, 5), null, 2)).to.equal(true);
}

// No broker on this port: a command that tried to connect would fail.
const NO_BROKER = { url: 'amqp://guest:guest@127.0.0.1:1/' };

describe('postage asyncapi', function () {
  this.timeout(60_000);

  for (const demo of ['basic_echo', 'rpc_echo', 'advanced_echo']) {
    it(`writes a valid AsyncAPI 3.0 document of demos/${demo}/receive.ts, no broker needed, YAML or JSON`, async () => {
      const [yaml, json] = await Promise.all([
        postage(['asyncapi', `demos/${demo}/receive.ts`], NO_BROKER),
        postage(['asyncapi', `demos/${demo}/receive.ts`, '--format', 'json'], NO_BROKER),
      ]);
      expect(yaml.code, yaml.stderr).to.equal(0);
      expect(json.code, json.stderr).to.equal(0);
      const doc = JSON.parse(json.stdout) as Doc;
      expectValid(doc);
      // The YAML is the same document.
      expect(parse(yaml.stdout)).to.deep.equal(doc);
      expect(Object.values(doc.operations).some((o) => String(o.action) === 'receive')).to.equal(true);
    });
  }

  it("documents a schema'd module: contracts, replies, plain JSON, CloudEvents, sends", async () => {
    const run = await postage(['asyncapi', 'spec/contract/fixtures/pricing-service.ts', '--format', 'json'], NO_BROKER);
    expect(run.code, run.stderr).to.equal(0);
    const doc = JSON.parse(run.stdout) as Doc;
    expectValid(doc);
    const messages = doc.components.messages as Doc;

    // The contract's parameter schema inside the envelope, as JSON Schema.
    const price = messages['command.price.rpc'];
    expect(price.payload.properties.name).to.deep.equal({ const: 'price' });
    expect(price.payload.properties.content.properties.parameters).to.deep.include({ required: ['sku', 'qty'] });
    expect(price.payload.properties.content.properties.parameters.properties.qty).to.deep.equal({ type: 'number' });

    // Received from the queue, with a reply; sent by the producer on its eks.
    const ops = Object.values(doc.operations as Doc) as Doc[];
    const receive = ops.find((o) => String(o.action) === 'receive' && String(o.title).includes('price'))!;
    expect(receive.channel.$ref).to.equal('#/channels/queue.pricing');
    expect(receive.reply.messages[0].$ref).to.equal('#/channels/replies/messages/result.price');
    const send = ops.find((o) => String(o.action) === 'send' && String(o.title) === 'PricingClient calls price')!;
    expect(send.channel.$ref).to.equal('#/channels/route.pricing-exchange.pricing.requests');
    expect(doc.channels['route.pricing-exchange.pricing.requests'].bindings.amqp.exchange).to.deep.equal({
      name: 'pricing-exchange',
      type: 'topic',
      durable: false,
      autoDelete: true,
    });
    expect(doc.channels['queue.pricing'].bindings.amqp.queue).to.deep.equal({
      name: 'pricing',
      durable: false,
      autoDelete: true,
    });

    // Plain JSON: the schema is the body's; a CloudEvent: the binary-mode headers.
    expect(messages['json.pricing.orders._'].payload.required).to.deep.equal(['orderId', 'qty']);
    expect(messages['json.pricing.orders._'].headers).to.equal(undefined);
    const ce = messages['cloudevent.com.example.stock.changed'];
    expect(ce.headers.required).to.include('cloudEvents_type');
    expect(ce.headers.properties.cloudEvents_type).to.deep.include({ const: 'com.example.stock.changed' });

    // The built-in handlers (quit, describe…) are machinery, not the component's API.
    expect(Object.keys(messages).some((m) => /\.(quit|describe|ping)\b/.test(m))).to.equal(false);
  });

  it('documents a partitioned processor by the exchange and key its senders use, and says it is partitioned', async () => {
    const run = await postage(
      ['asyncapi', 'spec/contract/fixtures/partitioned-ledger.ts', '--format', 'json'],
      NO_BROKER,
    );
    expect(run.code, run.stderr).to.equal(0);
    const doc = JSON.parse(run.stdout) as Doc;
    expectValid(doc);
    const queue = doc.channels['queue.ledger'];
    expect(queue, `channels: ${Object.keys(doc.channels).join(', ')}`).to.not.equal(undefined);
    expect(String(queue.description))
      .to.contain("bound to ledger-exchange with key 'ledger.#'")
      .and.contain('4 partitions')
      .and.contain('_partition_key');
    expect(Object.keys(queue.messages).sort()).to.deep.equal([
      'cloudevent.com.example.ledger._',
      'command.post',
      'json.ledger.json.__',
    ]);
    const route = doc.channels['route.ledger-exchange.ledger.__'];
    expect(route.bindings.amqp.exchange).to.deep.include({ name: 'ledger-exchange', type: 'topic' });
    // The partition queues and their hash exchange are the library's own wiring, not where senders send.
    expect(Object.keys(doc.channels).filter((c) => /\.p\d|partitions/.test(c))).to.deep.equal([]);
    const receives = Object.values(doc.operations as Doc).filter((o) => String(o.action) === 'receive');
    expect(receives.map((o) => String(o.title)).sort()).to.deep.equal([
      'ledger handles cloudevent com.example.ledger.*',
      'ledger handles command post',
      'ledger handles json ledger.json.#',
    ]);
  });

  it('keeps apart the handlers and bindings whose keys differ only by * and #', async () => {
    const doc = asyncApiDocument({
      title: 't',
      processors: [
        {
          fingerprint: { name: 'c' },
          bindings: [
            { exchange: 'shop', key: 'orders.*', queue: 'c' },
            { exchange: 'shop', key: 'orders.#', queue: 'c' },
          ],
          handlers: [
            { type: 'json', category: 'message', name: 'orders.*' },
            { type: 'json', category: 'message', name: 'orders.#' },
          ],
        } as unknown as Parameters<typeof asyncApiDocument>[0]['processors'][number],
      ],
    }) as unknown as Doc;
    expectValid(doc);
    expect(Object.keys(doc.operations)).to.have.length(2);
    expect(Object.keys(doc.components.messages)).to.have.length(2);
    expect(Object.keys(doc.channels).filter((c) => c.startsWith('route.'))).to.have.length(2);
  });

  it('writes the running fleet’s document through describe when no module is given', async () => {
    const h = new Harness();
    try {
      await h.start(new PricingService({ url: await brokerUrl(), logger: makeLogger('silent') }));
      const run = await postage(['asyncapi', '--format', 'json']);
      expect(run.code, run.stderr).to.equal(0);
      const doc = JSON.parse(run.stdout) as Doc;
      expectValid(doc);
      expect(doc.info.description).to.match(/answered describe/);
      expect(
        doc.components.messages['command.price.rpc'].payload.properties.content.properties.parameters.required,
      ).to.deep.equal(['sku', 'qty']);
    } finally {
      await h.close();
    }
  });

  it('says what it does under postage help asyncapi, and refuses a format it does not write', async () => {
    const help = await postage(['help', 'asyncapi'], NO_BROKER);
    expect(help.code).to.equal(0);
    expect(help.stdout).to.match(/^usage: postage asyncapi \[MODULE\] \[--format yaml\|json\]/);
    const bad = await postage(['asyncapi', 'demos/rpc_echo/receive.ts', '--format', 'xml'], NO_BROKER);
    expect(bad.code).to.equal(2);
    expect(bad.stderr).to.contain('--format must be yaml or json');
  });

  it('writes YAML that reads back as the document, quoting what a plain scalar would misread', () => {
    const doc = asyncApiDocument({
      title: 'yes: no # not a comment',
      processors: [],
      producers: [
        {
          name: 'P',
          targets: [{ exchange: 'x', key: 'true' }],
          sends: [{ kind: 'message', name: 'n', params: { type: 'object', enum: ['null', '2', '-1', 'a: b', ''] } }],
        },
      ],
    });
    expectValid(doc);
    expect(parse(toYaml(doc))).to.deep.equal(doc);
    // (The validator does refuse what 3.0 is not: 2.x's 'publish' action.)
    const op = Object.keys(doc.operations as object)[0];
    const old = { ...doc, operations: { [op]: { ...(doc.operations as Doc)[op], action: 'publish' } } };
    expect(validate(old)).to.equal(false);
  });
});
