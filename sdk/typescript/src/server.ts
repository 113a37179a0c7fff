/** Serves a participant over gRPC, with `grpc.health.v1.Health`, on an address the caller chooses. */
import {
  type Metadata,
  Server,
  ServerCredentials,
  type ServerUnaryCall,
  type sendUnaryData,
} from '@grpc/grpc-js';
import { HealthImplementation } from 'grpc-health-check';

import type { StepRequestMessage } from './call';
import { StepError, toStepError } from './errors';
import { type JsonObject, type StructMessage, jsonToStruct } from './json';
import { PARTICIPANT_SERVICE, participantService } from './proto';
import type { SagaParticipant } from './service';

/** A running participant server. */
export interface ParticipantServer {
  /** The bound port (the real one when port 0 was asked). */
  readonly port: number;
  /**
   * Stops accepting calls, reports `NOT_SERVING`, and resolves once in-flight calls have ended (or
   * `graceMs` has passed, after which they are cut off).
   */
  shutdown(graceMs?: number): Promise<void>;
}

/**
 * Serves `participant` (usually a {@link ParticipantService}) and `grpc.health.v1.Health` on `address`
 * (`host:port`; port 0 picks a free one). Health reports `saga.v1.SagaParticipant` `SERVING` while it runs.
 */
export async function serve(participant: SagaParticipant, address: string): Promise<ParticipantServer> {
  const server = new Server();
  const health = new HealthImplementation({ '': 'SERVING', [PARTICIPANT_SERVICE]: 'SERVING' });
  health.addToServer(server);
  server.addService(participantService().service, {
    Execute: unary((request, metadata) => participant.execute(request, metadata)),
    Compensate: unary((request, metadata) => participant.compensate(request, metadata)),
  });
  const port = await new Promise<number>((resolve, reject) => {
    server.bindAsync(address, ServerCredentials.createInsecure(), (err, bound) =>
      err ? reject(err) : resolve(bound),
    );
  });
  return {
    port,
    shutdown: (graceMs = 10_000) => {
      health.setStatus('', 'NOT_SERVING');
      health.setStatus(PARTICIPANT_SERVICE, 'NOT_SERVING');
      return new Promise<void>((resolve) => {
        const cutOff = setTimeout(() => server.forceShutdown(), graceMs);
        server.tryShutdown(() => {
          clearTimeout(cutOff);
          resolve();
        });
      });
    },
  };
}

type StepCallHandler = (request: StepRequestMessage, metadata: Metadata) => Promise<JsonObject>;

/** A grpc-js unary handler from a promise-returning step function; a rejection becomes its status. */
function unary(handle: StepCallHandler) {
  return (
    call: ServerUnaryCall<StepRequestMessage, { output: StructMessage }>,
    callback: sendUnaryData<{ output: StructMessage }>,
  ): void => {
    handle(call.request, call.metadata).then(
      (output) => callback(null, { output: jsonToStruct(output) }),
      (err: unknown) => {
        const error: StepError = toStepError(err);
        callback({ code: error.code, details: error.message });
      },
    );
  };
}
