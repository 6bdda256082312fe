/** JSON serializers compiled once per schema object (fast-json-stringify), for `res.json(value, schema)`. */
import fastJson from 'fast-json-stringify';

const serializers = new WeakMap<object, (value: unknown) => string>();

/** The serializer of `schema`, compiled on first use. */
export function serializerFor(schema: object): (value: unknown) => string {
  let s = serializers.get(schema);
  if (s === undefined) {
    s = fastJson(schema as Parameters<typeof fastJson>[0]) as (value: unknown) => string;
    serializers.set(schema, s);
  }
  return s;
}
