/**
 * JSON values as handlers see them, and the `google.protobuf.Struct` form they travel in.
 *
 * Protobuf numbers are doubles, so a payload's integers (money in cents) arrive as JavaScript numbers
 * exactly as the Rust SDK sees them; integers past 2^53 are not exact on either side.
 */

/** Any JSON value. */
export type JsonValue = null | boolean | number | string | JsonValue[] | JsonObject;

/** A JSON object: a saga payload, a step output. */
export interface JsonObject {
  [key: string]: JsonValue;
}

/** `google.protobuf.Value` as @grpc/proto-loader decodes it (`oneofs: true` sets `kind`). */
export interface ValueMessage {
  kind?: string;
  nullValue?: string | number;
  numberValue?: number;
  stringValue?: string;
  boolValue?: boolean;
  structValue?: StructMessage | null;
  listValue?: { values?: ValueMessage[] } | null;
}

/** `google.protobuf.Struct` as @grpc/proto-loader decodes it. */
export interface StructMessage {
  fields?: Record<string, ValueMessage>;
}

/** A Struct from the wire as a JSON object. */
export function structToJson(message: StructMessage | null | undefined): JsonObject {
  const object: JsonObject = {};
  for (const [key, value] of Object.entries(message?.fields ?? {})) {
    object[key] = valueToJson(value);
  }
  return object;
}

/** A JSON object as a Struct for the wire. */
export function jsonToStruct(object: JsonObject): StructMessage {
  const fields: Record<string, ValueMessage> = {};
  for (const [key, value] of Object.entries(object)) {
    if (value !== undefined) {
      fields[key] = jsonToValue(value);
    }
  }
  return { fields };
}

function valueToJson(value: ValueMessage): JsonValue {
  switch (value.kind ?? presentKind(value)) {
    case 'boolValue':
      return value.boolValue ?? false;
    case 'numberValue':
      return value.numberValue ?? 0;
    case 'stringValue':
      return value.stringValue ?? '';
    case 'structValue':
      return structToJson(value.structValue);
    case 'listValue':
      return (value.listValue?.values ?? []).map(valueToJson);
    default:
      return null;
  }
}

/** The set member of a Value built in memory (the wire decoder names it in `kind`). */
function presentKind(value: ValueMessage): string | undefined {
  const kinds = ['boolValue', 'numberValue', 'stringValue', 'structValue', 'listValue'] as const;
  return kinds.find((kind) => value[kind] !== undefined && value[kind] !== null);
}

function jsonToValue(value: JsonValue): ValueMessage {
  if (value === null) {
    return { nullValue: 'NULL_VALUE' };
  }
  if (Array.isArray(value)) {
    return { listValue: { values: value.map(jsonToValue) } };
  }
  switch (typeof value) {
    case 'boolean':
      return { boolValue: value };
    case 'number':
      return { numberValue: value };
    case 'string':
      return { stringValue: value };
    default:
      return { structValue: jsonToStruct(value) };
  }
}
