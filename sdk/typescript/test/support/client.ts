/** A real gRPC client of the participant protocol, with promise-returning calls. */
import { type Client, type ServiceError, credentials, Metadata } from '@grpc/grpc-js';

import { type JsonObject, type StepRequestMessage, jsonToStruct, participantService, structToJson } from '../../src';

type Rpc = 'Execute' | 'Compensate';

/** A step request with its payload as JSON. */
export type StepRequestJson = Partial<Omit<StepRequestMessage, 'payload'>> & { payload?: JsonObject };

export class ParticipantClient {
  private readonly client: Client & Record<Rpc, Function>;

  constructor(port: number) {
    const Constructor = participantService();
    this.client = new Constructor(`127.0.0.1:${port}`, credentials.createInsecure()) as unknown as Client &
      Record<Rpc, Function>;
  }

  execute(request: StepRequestJson, metadata?: Metadata): Promise<JsonObject> {
    return this.call('Execute', request, metadata);
  }

  compensate(request: StepRequestJson, metadata?: Metadata): Promise<JsonObject> {
    return this.call('Compensate', request, metadata);
  }

  close(): void {
    this.client.close();
  }

  private call(
    rpc: Rpc,
    request: StepRequestJson,
    metadata = new Metadata(),
  ): Promise<JsonObject> {
    const message = { ...request, payload: jsonToStruct(request.payload ?? {}) };
    return new Promise((resolve, reject) => {
      this.client[rpc](message, metadata, (err: ServiceError | null, response: { output: never }) =>
        err ? reject(err) : resolve(structToJson(response.output)),
      );
    });
  }
}

/** Expects `promise` to fail with gRPC status `code`; returns the error. */
export async function rejection(promise: Promise<unknown>): Promise<ServiceError> {
  try {
    await promise;
  } catch (err) {
    return err as ServiceError;
  }
  throw new Error('expected the call to fail');
}
