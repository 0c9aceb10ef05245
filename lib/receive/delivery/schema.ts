import { isThenable } from '../../microthreads/thread.js';
import type { StandardSchemaV1 } from '@standard-schema/spec';
import { ValidationError, type ValidationIssue } from '../../errors.js';
import type { Yielded } from '../../microthreads/thread.js';
import type { MessageBody } from '../../envelope/messages.js';

import type { Outcome } from './outcome.js';
import { rpcHandler, type Registered } from './registry.js';
import { outcomeOf, type Next, type Scoped } from './state.js';

/** A Standard Schema issue as postage-ts reports it: a message and a path of strings. */
function issueOf(issue: StandardSchemaV1.Issue): ValidationIssue {
  const path = (issue.path ?? []).map((seg) => String(typeof seg === 'object' && seg !== null ? seg.key : seg));
  return { message: issue.message, path };
}

/**
 * What a handler with a schema is given: the content (or the whole body)
 * passed through its schema, and whether the schema made a new value. A
 * failure is a `ValidationError` (permanent: no retry). An async schema is
 * waited on like anything else in the run: within its time limit.
 */
export function* checkSchema(
  h: Registered,
  body: MessageBody<object>,
): Generator<Yielded, { value: unknown; fresh: boolean }, unknown> {
  const given: unknown = h.tag.pass === 'body' ? body : body.content;
  // The handler gets what its schema returns (a transform's output), or never runs.
  const schema = h.tag.schema;
  // Called for handlers with a schema only: one without takes what it is given.
  if (!schema) return { value: given, fresh: false };
  let checked = schema['~standard'].validate(given);
  if (isThenable(checked)) checked = (yield checked) as Awaited<typeof checked>;
  if (checked.issues) throw new ValidationError(`${body.type}/${body.name}`, checked.issues.map(issueOf));
  return { value: checked.value, fresh: checked.value !== given };
}

/** Stage (where a handler of the processor has a schema): each handler's content is checked before any handler runs. */
export function* schema(d: Scoped, next: Next): Generator<Yielded, Outcome, unknown> {
  const body = d.body;
  let inputs: Scoped['inputs'];
  if (body.category === 'rpc') {
    const h = rpcHandler(d.handlers);
    if (h?.tag.schema) (inputs = new Map()).set(h, yield* checkSchema(h, body));
  } else {
    for (const h of d.handlers) if (h.tag.schema) (inputs ??= new Map()).set(h, yield* checkSchema(h, body));
  }
  d.inputs = inputs;
  return yield* outcomeOf(next(d));
}
