/**
 * SDK for sagad saga participants: implement the business work of each action, get gRPC wiring and
 * exactly-once effects from an idempotency barrier kept in your own PostgreSQL database, in the same
 * transaction as the work. The same model, table and rules as the Rust SDK (`saga-participant`).
 *
 * Layout:
 * - {@link Router} (`router`): one async function per action and direction; what a participant author writes.
 * - {@link StepCall} (`call`): one decoded step request, with typed payload accessors that refuse bad input.
 * - {@link StepError}, {@link Refused}, {@link Transient} (`errors`): refusal or transient, and the gRPC
 *   status each becomes.
 * - {@link migrate} (`migrate`): the `saga_barrier` table, with the Rust SDK's migrations.
 * - {@link ParticipantService} (`service`) and `barrier`: the barrier's claim/replay rules.
 * - {@link serve} (`server`): serves it with `grpc.health.v1` on an address you choose.
 */
export { GENERATION_HEADER, IDEMPOTENCY_KEY_HEADER, StepCall, TRACEPARENT_HEADER } from './call';
export type { Direction, StepRequestMessage } from './call';
export { REFUSAL_CODES, Refused, StepError, Transient, isRefusalCode, toStepError } from './errors';
export type { RefusalCode } from './errors';
export { jsonToStruct, structToJson } from './json';
export type { JsonObject, JsonValue } from './json';
export { jsonLogger } from './log';
export type { Level, Logger } from './log';
export { MigrateError, migrate } from './migrate';
export { PARTICIPANT_SERVICE, participantService } from './proto';
export { Router } from './router';
export type { Action, StepHandler } from './router';
export { ParticipantService } from './service';
export type { SagaParticipant, ServiceOptions } from './service';
export { serve } from './server';
export type { ParticipantServer } from './server';
