/**
 * A hand-made Standard Schema, as zod, valibot or arktype hand out: postage-ts
 * depends on the interface only, so specs need no schema library.
 */
import type { StandardSchemaV1 } from '@standard-schema/spec';

type Kind = 'number' | 'string';
type Shape = Record<string, Kind>;
type Typed<S extends Shape> = { [K in keyof S]: S[K] extends 'number' ? number : string };

/**
 * `{ parameters: { …shape } }`, a command's content; `coerce` turns numeric strings into numbers; `async` validates in
 * a promise.
 */
export function command<S extends Shape>(
  shape: S,
  options: { coerce?: boolean; async?: boolean; jsonSchema?: boolean } = {},
): StandardSchemaV1<{ parameters: Typed<S> }, { parameters: Typed<S> }> {
  const validate = (value: unknown): StandardSchemaV1.Result<{ parameters: Typed<S> }> => {
    const params = (value as { parameters?: unknown } | null)?.parameters;
    if (typeof params !== 'object' || params === null)
      return { issues: [{ message: 'expected an object', path: ['parameters'] }] };
    const out: Record<string, unknown> = {};
    const issues: StandardSchemaV1.Issue[] = [];
    for (const [key, kind] of Object.entries(shape)) {
      let v = (params as Record<string, unknown>)[key];
      if (options.coerce && kind === 'number' && typeof v === 'string' && v.trim() !== '' && !Number.isNaN(Number(v)))
        v = Number(v);
      if (typeof v !== kind)
        issues.push({
          message: `expected a ${kind}, got ${v === undefined ? 'nothing' : typeof v}`,
          path: ['parameters', { key }],
        });
      else out[key] = v;
    }
    return issues.length > 0 ? { issues } : { value: { parameters: out as Typed<S> } };
  };
  const std: StandardSchemaV1.Props<{ parameters: Typed<S> }> & { jsonSchema?: unknown } = {
    version: 1,
    vendor: 'postage-spec',
    validate: options.async ? (v) => Promise.resolve().then(() => validate(v)) : validate,
  };
  if (options.jsonSchema) {
    const json = () => ({
      type: 'object',
      properties: {
        parameters: {
          type: 'object',
          properties: Object.fromEntries(Object.entries(shape).map(([k, t]) => [k, { type: t }])),
          required: Object.keys(shape),
        },
      },
      required: ['parameters'],
    });
    std.jsonSchema = { input: json, output: json };
  }
  return { '~standard': std };
}
