/**
 * The participant protocol, loaded from the repository's `proto/saga/v1/participant.proto` (copied into
 * the package at build time, never edited by hand).
 */
import { join } from 'node:path';

import { type GrpcObject, type ServiceClientConstructor, loadPackageDefinition } from '@grpc/grpc-js';
import { loadSync } from '@grpc/proto-loader';

const PROTO_ROOT = join(__dirname, '..', 'assets', 'proto');

/** The fully qualified name of the participant service, as health checks name it. */
export const PARTICIPANT_SERVICE = 'saga.v1.SagaParticipant';

let loaded: ServiceClientConstructor | undefined;

/**
 * The `saga.v1.SagaParticipant` service: its `.service` definition for a server, and a client
 * constructor (`new (participantService())(address, credentials)`) for tests and tools.
 */
export function participantService(): ServiceClientConstructor {
  if (loaded === undefined) {
    const definition = loadSync(join('saga', 'v1', 'participant.proto'), {
      includeDirs: [PROTO_ROOT],
      keepCase: true,
      defaults: true,
      oneofs: true,
      enums: String,
    });
    const saga = (loadPackageDefinition(definition).saga as GrpcObject).v1 as GrpcObject;
    loaded = saga.SagaParticipant as ServiceClientConstructor;
  }
  return loaded;
}
