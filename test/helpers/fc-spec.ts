/**
 * Firecracker's published API spec (Swagger 2.0), loaded at test time, and a
 * validator for requests against it. Used by the fake firecracker
 * (test/fixtures/fake-firecracker.ts) and asserted on directly by the
 * contract test. It is strict where the real Firecracker is strict: unknown
 * fields are refused (serde deny_unknown_fields), ids are [A-Za-z0-9_]{1,64},
 * and a body id must equal the id in the path.
 */
import { createHash } from "node:crypto";
import { readFileSync } from "node:fs";
import { join } from "node:path";

export const SPEC_PATH = join(import.meta.dir, "..", "fixtures", "firecracker-v1.16.1.yaml");
/** sha256 of the spec exactly as published at tag v1.16.1 (src/firecracker/swagger/firecracker.yaml). */
export const SPEC_SHA256 = "a514abec7b29700c5ca8bdaebbb960e4ffb46fe1fd4869094c6c63630a6fa41c";

export interface Schema {
  $ref?: string;
  type?: string;
  properties?: Record<string, Schema>;
  required?: string[] | null;
  additionalProperties?: boolean | Schema;
  enum?: unknown[];
  items?: Schema;
  minimum?: number;
  maximum?: number;
}

interface Parameter {
  name: string;
  in: "body" | "path" | "query";
  required?: boolean;
  type?: string;
  schema?: Schema;
}

export interface Operation {
  operationId: string;
  summary?: string;
  parameters?: Parameter[];
  responses: Record<string, { description?: string; schema?: Schema }>;
}

export interface Spec {
  swagger: string;
  info: { version: string };
  paths: Record<string, Record<string, Operation>>;
  definitions: Record<string, Schema>;
}

export function specText(): string {
  return readFileSync(SPEC_PATH, "utf8");
}

export function specSha256(): string {
  return createHash("sha256").update(readFileSync(SPEC_PATH)).digest("hex");
}

export function loadSpec(): Spec {
  return Bun.YAML.parse(specText()) as Spec;
}

export interface MatchedOperation {
  template: string;
  method: string;
  op: Operation;
  params: Record<string, string>;
}

/** The operation for METHOD path, with its path parameters; null when the spec has none. */
export function matchOperation(spec: Spec, method: string, path: string): MatchedOperation | { error: string } {
  for (const [template, ops] of Object.entries(spec.paths)) {
    const names: string[] = [];
    const re = new RegExp(
      "^" +
        template.replace(/[.*+?^$()|[\]\\]/g, "\\$&").replace(/\{([^}]+)\}/g, (_m, name: string) => {
          names.push(name);
          return "([^/]+)";
        }) +
        "$",
    );
    const m = re.exec(path);
    if (!m) continue;
    const op = ops[method.toLowerCase()];
    if (!op) return { error: `Invalid request method and/or path: ${method} ${path}.` };
    const params: Record<string, string> = {};
    names.forEach((n, i) => (params[n] = decodeURIComponent(m[i + 1]!)));
    return { template, method: method.toUpperCase(), op, params };
  }
  return { error: `Invalid request method and/or path: ${method} ${path}.` };
}

export function resolveRef(spec: Spec, s: Schema): Schema {
  let cur = s;
  for (let i = 0; cur.$ref; i++) {
    if (i > 20) throw new Error(`$ref loop at ${s.$ref}`);
    const m = /^#\/definitions\/(.+)$/.exec(cur.$ref);
    if (!m || !spec.definitions[m[1]!]) throw new Error(`unresolvable $ref ${cur.$ref}`);
    cur = spec.definitions[m[1]!]!;
  }
  return cur;
}

function _typeOf(v: unknown): string {
  if (v === null) return "null";
  if (Array.isArray(v)) return "array";
  if (typeof v === "number") return Number.isInteger(v) ? "integer" : "number";
  return typeof v;
}

/** Every way `value` breaks `schema`, as messages naming the field (empty = valid). */
export function validateValue(spec: Spec, schema: Schema, value: unknown, at = "body"): string[] {
  const s = resolveRef(spec, schema);
  const errs: string[] = [];
  const t = _typeOf(value);
  if (s.type) {
    const ok = s.type === "number" ? t === "number" || t === "integer" : t === s.type;
    if (!ok) return [`${at}: invalid type: ${t}, expected ${s.type}`];
  }
  if (s.enum && !s.enum.includes(value)) errs.push(`${at}: unknown variant ${JSON.stringify(value)}, expected one of ${s.enum.map((e) => JSON.stringify(e)).join(", ")}`);
  if (typeof value === "number") {
    if (s.minimum !== undefined && value < s.minimum) errs.push(`${at}: ${value} is below the minimum ${s.minimum}`);
    if (s.maximum !== undefined && value > s.maximum) errs.push(`${at}: ${value} is above the maximum ${s.maximum}`);
  }
  if (t === "array" && s.items) (value as unknown[]).forEach((v, i) => errs.push(...validateValue(spec, s.items!, v, `${at}[${i}]`)));
  if (t === "object" && (s.type === "object" || s.properties)) {
    const obj = value as Record<string, unknown>;
    const props = s.properties ?? {};
    for (const r of s.required ?? []) if (!(r in obj)) errs.push(`${at}: missing field \`${r}\``);
    for (const [k, v] of Object.entries(obj)) {
      if (props[k]) errs.push(...validateValue(spec, props[k]!, v, `${at}.${k}`));
      else if (s.additionalProperties === true) continue;
      else if (s.additionalProperties && typeof s.additionalProperties === "object") errs.push(...validateValue(spec, s.additionalProperties, v, `${at}.${k}`));
      // Firecracker's structs deny unknown fields
      else errs.push(`${at}: unknown field \`${k}\`, expected one of ${Object.keys(props).map((p) => `\`${p}\``).join(", ")}`);
    }
  }
  return errs;
}

/** Firecracker's id rule (drive_id, iface_id, …): alphanumerics and underscores, 1..64 characters. */
export const FC_ID_RE = /^[A-Za-z0-9_]{1,64}$/;

export type RequestVerdict =
  | { ok: true; match: MatchedOperation; body: unknown }
  | { ok: false; status: 400; fault: string };

/**
 * Check one request as the real API server would before acting on it:
 * path+method exist, path ids are valid, the body parses, matches the
 * operation's schema, and repeats the path's id.
 */
export function validateRequest(spec: Spec, method: string, path: string, rawBody: string): RequestVerdict {
  const match = matchOperation(spec, method, path);
  if ("error" in match) return { ok: false, status: 400, fault: match.error };
  for (const [name, v] of Object.entries(match.params)) {
    if (!FC_ID_RE.test(v)) return { ok: false, status: 400, fault: `Invalid ${name} ${JSON.stringify(v)}: ids are 1 to 64 characters from [A-Za-z0-9_].` };
  }
  const bodyParam = (match.op.parameters ?? []).find((p) => p.in === "body");
  if (!bodyParam) {
    if (rawBody.length > 0) return { ok: false, status: 400, fault: `${method} ${path} takes no body.` };
    return { ok: true, match, body: undefined };
  }
  if (rawBody.length === 0) {
    if (bodyParam.required) return { ok: false, status: 400, fault: "Empty request body." };
    return { ok: true, match, body: undefined };
  }
  let body: unknown;
  try {
    body = JSON.parse(rawBody);
  } catch (e) {
    return { ok: false, status: 400, fault: `An error occurred when deserializing the json body of a request: ${(e as Error).message}.` };
  }
  const errs = validateValue(spec, bodyParam.schema ?? {}, body);
  if (errs.length) return { ok: false, status: 400, fault: `An error occurred when deserializing the json body of a request: ${errs.join("; ")}.` };
  for (const [name, v] of Object.entries(match.params)) {
    const inBody = (body as Record<string, unknown>)[name];
    if (inBody !== undefined && inBody !== v) {
      return { ok: false, status: 400, fault: `The id from the path [${v}] does not match the id from the body [${String(inBody)}]!` };
    }
  }
  return { ok: true, match, body };
}

/** The operation's success response: its lowest 2xx status and that response's schema. */
export function successResponse(op: Operation): { status: number; schema?: Schema } {
  const codes = Object.keys(op.responses).filter((c) => /^2\d\d$/.test(c)).map(Number).sort((a, b) => a - b);
  if (codes.length === 0) throw new Error(`${op.operationId} has no 2xx response in the spec`);
  return { status: codes[0]!, schema: op.responses[String(codes[0])]!.schema };
}
