import { URLExt } from '@jupyterlab/coreutils';
import { ServerConnection } from '@jupyterlab/services';

import type { components } from './openapi';

/** One check of a promotion gate, as a refused promotion (409) lists them. */
export interface GateCheck {
  name: string;
  passed: boolean;
  detail: string;
}

/** An error the REST API answered (an `ErrorResponse`): its status, message and the field it names. */
export class ApiError extends Error {
  constructor(
    readonly status: number,
    message: string,
    readonly field?: string | null,
    readonly checks?: GateCheck[] | null
  ) {
    super(message);
  }
}

/** Call `/aiworkbench/api/<endpoint>` with the server's token and XSRF handling; throws `ApiError`. */
export async function requestAPI<T>(endpoint: string, init: RequestInit = {}): Promise<T> {
  const settings = ServerConnection.makeSettings();
  const url = URLExt.join(settings.baseUrl, 'aiworkbench', 'api', endpoint);
  let response: Response;
  try {
    response = await ServerConnection.makeRequest(url, init, settings);
  } catch (error) {
    throw new ApiError(0, `the Jupyter server did not answer: ${error}`);
  }
  const text = await response.text();
  let data: unknown = text;
  try {
    data = text ? JSON.parse(text) : {};
  } catch {
    // not JSON: keep the text for the message
  }
  if (!response.ok) {
    const error = typeof data === 'object' && data ? (data as Partial<ErrorResponse>) : {};
    const message = error.message || `${response.status} ${text}`;
    throw new ApiError(
      response.status,
      message,
      error.field,
      error.checks as unknown as GateCheck[] | null | undefined
    );
  }
  return data as T;
}

/** POST a JSON body (a request model of the API). */
export function postAPI<T>(
  endpoint: string,
  body: PromoteModel | RollbackModel | CreateJob | RunJob | StartSweep | Record<string, never>
): Promise<T> {
  return requestAPI<T>(endpoint, { method: 'POST', body: JSON.stringify(body) });
}

/** The URL of a route, for links (the output notebook as HTML). */
export function apiUrl(endpoint: string): string {
  const settings = ServerConnection.makeSettings();
  return URLExt.join(settings.baseUrl, 'aiworkbench', 'api', endpoint);
}

/** The REST API's models, generated from openapi.yaml into ./openapi.d.ts (`npm run build:types`). */
type Schemas = components['schemas'];
export type Phase = Schemas['ShowPhaseResponse'];
export type Kpis = Schemas['ListKpisResponse'];
export type Kpi = Schemas['Kpi'];
export type Models = Schemas['ListModelsResponse'];
export type ModelSummary = Schemas['ModelSummary'];
export type PromoteModel = Schemas['PromoteModel'];
export type RollbackModel = Schemas['RollbackModel'];
export type Jobs = Schemas['ListJobsResponse'];
export type Job = Schemas['Job'];
export type CreateJob = Schemas['CreateJob'];
export type RunJob = Schemas['RunJob'];
export type JobRuns = Schemas['ListJobRunsResponse'];
export type JobRun = Schemas['JobRun'];
export type NotebookParameters = Schemas['ShowNotebookParametersResponse'];
export type ErrorResponse = Schemas['ErrorResponse'];
export type Tables = Schemas['ListTablesResponse'];
export type LakeTable = Schemas['LakeTable'];
export type FeatureViews = Schemas['ListFeatureViewsResponse'];
export type FeatureView = Schemas['FeatureViewSummary'];
export type Services = Schemas['ListServicesResponse'];
export type Service = Schemas['ServiceSummary'];
export type LiveQuality = Schemas['LiveQuality'];
export type CiRuns = Schemas['ListCiRunsResponse'];
export type CiRun = Schemas['CiRun'];
export type StartSweep = Schemas['StartSweep'];
export type StartedSweep = Schemas['StartSweepResponse'];
export type Sweep = Schemas['ShowSweepResponse'];
export type SweepTrial = Schemas['SweepTrial'];
