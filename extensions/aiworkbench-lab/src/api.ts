import { URLExt } from '@jupyterlab/coreutils';
import { ServerConnection } from '@jupyterlab/services';

/** An error the REST API answered: its status, message and the field it names. */
export class ApiError extends Error {
  constructor(
    readonly status: number,
    message: string,
    readonly field?: string,
    readonly checks?: { name: string; passed: boolean; detail: string }[]
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
  let data: any = text;
  try {
    data = text ? JSON.parse(text) : {};
  } catch {
    // not JSON: keep the text for the message
  }
  if (!response.ok) {
    const message =
      typeof data === 'object' && data.message ? data.message : `${response.status} ${text}`;
    throw new ApiError(response.status, message, data?.field, data?.checks);
  }
  return data as T;
}

/** POST a JSON body. */
export function postAPI<T>(endpoint: string, body: unknown): Promise<T> {
  return requestAPI<T>(endpoint, { method: 'POST', body: JSON.stringify(body) });
}

/** The URL of a route, for links (the output notebook as HTML). */
export function apiUrl(endpoint: string): string {
  const settings = ServerConnection.makeSettings();
  return URLExt.join(settings.baseUrl, 'aiworkbench', 'api', endpoint);
}

export interface PhaseItem {
  phase: number;
  key: string;
  title: string;
  ok: boolean;
  evidence?: unknown;
  next_step?: string | null;
}
export interface Phase {
  phase: number;
  name: string;
  items: PhaseItem[];
  next_step?: string | null;
}
export interface Kpi {
  key: string;
  title: string;
  value: number | null;
  unit?: string | null;
  target?: unknown;
  status: 'ok' | 'breach' | 'no data';
  evidence?: unknown;
  trend?: unknown;
}
export interface Kpis {
  kpis: Kpi[];
  window_days?: number;
}
export interface ModelSummary {
  name: string;
  versions: number;
  latest: number | null;
  aliases: Record<string, number>;
}
export interface JobRun {
  id: string;
  job_name: string;
  status: string;
  attempt: number;
  queued_at: number;
  finished_at?: number | null;
  error_message?: string | null;
}
export interface Job {
  id: string;
  name: string;
  notebook: string;
  cron?: string | null;
  last_run?: { id: string; status: string; queued_at: number } | null;
}
