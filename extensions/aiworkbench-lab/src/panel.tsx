import { Dialog, showDialog } from '@jupyterlab/apputils';
import { Button, ReactWidget } from '@jupyterlab/ui-components';
import * as React from 'react';

import {
  ApiError,
  apiUrl,
  CiRuns,
  FeatureViews,
  Job,
  JobRuns,
  Jobs,
  Kpis,
  LiveQuality,
  Models,
  ModelSummary,
  Phase,
  postAPI,
  requestAPI,
  Services,
  Tables
} from './api';

/** How often an open panel refreshes by itself, milliseconds. */
export const REFRESH_MS = 15000;

interface Loaded<T> {
  data?: T;
  error?: ApiError;
}

/** Fetch `endpoint` whenever `tick` changes; errors are kept to be shown, never swallowed. */
function useApi<T>(endpoint: string, tick: number): Loaded<T> {
  const [state, setState] = React.useState<Loaded<T>>({});
  React.useEffect(() => {
    let live = true;
    requestAPI<T>(endpoint)
      .then(data => live && setState({ data }))
      .catch(error => live && setState(s => ({ data: s.data, error })));
    return () => {
      live = false;
    };
  }, [endpoint, tick]);
  return state;
}

function ErrorLine({ error }: { error?: Error }): JSX.Element | null {
  return error ? (
    <div className="aiwb-error" role="alert">
      {error.message}
    </div>
  ) : null;
}

/** A 404 that means "this part is not installed or has no data yet" is shown as such, not as a failure. */
function NoData({ error, what }: { error?: ApiError; what: string }): JSX.Element {
  if (error && error.status === 404) {
    return (
      <div className="aiwb-nodata">
        No {what} yet: {error.message}
      </div>
    );
  }
  return <ErrorLine error={error} />;
}

function PhaseSection({ tick }: { tick: number }): JSX.Element {
  const { data, error } = useApi<Phase>('phase', tick);
  return (
    <section className="aiwb-section aiwb-phase">
      <h3>Phase</h3>
      {!data ? (
        <NoData error={error} what="phase" />
      ) : (
        <>
          {error && <ErrorLine error={error} />}
          <div className="aiwb-phase-name">
            Phase <span className="aiwb-phase-number">{data.phase}</span>: {data.name}
          </div>
          {data.next_step ? <div className="aiwb-next-step">Next: {data.next_step}</div> : null}
          {data.phases.map(({ phase: p, name }) => {
            const items = data.items.filter(item => item.phase === p);
            const done = items.filter(item => item.ok).length;
            return (
              <details key={p} className="aiwb-phase-group" open={p === data.phase + 1}>
                <summary>
                  <span className={done === items.length ? 'aiwb-ok' : 'aiwb-todo'}>
                    <span className="aiwb-mark">{done === items.length ? '✔' : '○'}</span>
                  </span>{' '}
                  {p}. {name} ({done}/{items.length})
                </summary>
                <ul className="aiwb-checklist">
                  {items.map(item => (
                    <li
                      key={item.key}
                      className={item.ok ? 'aiwb-ok' : 'aiwb-todo'}
                      title={String(item.evidence ?? '')}
                    >
                      <span className="aiwb-mark">{item.ok ? '✔' : '○'}</span> {item.title}
                      <div className="aiwb-evidence">{String(item.evidence ?? '')}</div>
                      {!item.ok && item.next_step ? (
                        <div className="aiwb-next">{item.next_step}</div>
                      ) : null}
                    </li>
                  ))}
                </ul>
              </details>
            );
          })}
        </>
      )}
    </section>
  );
}

function KpiSection({ tick }: { tick: number }): JSX.Element {
  const { data, error } = useApi<Kpis>('kpis', tick);
  return (
    <section className="aiwb-section aiwb-kpis">
      <h3>KPIs{data?.window_days ? ` (last ${data.window_days} days)` : ''}</h3>
      {!data ? (
        <NoData error={error} what="KPIs" />
      ) : (
        <div>
          {data.kpis.map(k => (
            <div
              key={k.key}
              className={`aiwb-kpi aiwb-status-${k.status.replace(' ', '-')}`}
              data-kpi={k.key}
              title={String(k.evidence ?? '')}
            >
              <div className="aiwb-kpi-head">
                <span className="aiwb-kpi-title">{k.title}</span>
                <span className="aiwb-kpi-status">{k.status}</span>
              </div>
              <div className="aiwb-kpi-line">
                <span className="aiwb-kpi-value">{k.shown}</span>
                <span className="aiwb-kpi-target"> · target {String(k.target ?? '—')}</span>
                <span className="aiwb-kpi-trend"> {k.trend_shown}</span>
              </div>
            </div>
          ))}
        </div>
      )}
      {data && error ? <ErrorLine error={error} /> : null}
    </section>
  );
}

function ModelsSection({ tick, refresh }: { tick: number; refresh: () => void }): JSX.Element {
  const { data, error } = useApi<Models>('models', tick);
  const [actionError, setActionError] = React.useState<ApiError | undefined>();

  const promote = async (m: ModelSummary): Promise<void> => {
    let version = m.latest ?? 1;
    const body = ReactWidget.create(
      <label>
        Move <b>champion</b> of {m.name} to version{' '}
        <input
          type="number"
          min={1}
          defaultValue={version}
          className="aiwb-promote-version"
          onChange={e => (version = Number(e.target.value))}
        />
      </label>
    );
    const result = await showDialog({
      title: `Promote ${m.name}`,
      body,
      buttons: [Dialog.cancelButton(), Dialog.okButton({ label: 'Promote' })]
    });
    if (!result.button.accept) {
      return;
    }
    try {
      await postAPI(`models/${encodeURIComponent(m.name)}/promote`, {
        version,
        reason: 'promoted in JupyterLab'
      });
      setActionError(undefined);
    } catch (e) {
      setActionError(e as ApiError);
    }
    refresh();
  };

  const rollback = async (m: ModelSummary): Promise<void> => {
    const result = await showDialog({
      title: `Roll back ${m.name}`,
      body: `Move champion of ${m.name} back from version ${m.aliases.champion} to the version it replaced?`,
      buttons: [Dialog.cancelButton(), Dialog.warnButton({ label: 'Roll back' })]
    });
    if (!result.button.accept) {
      return;
    }
    try {
      await postAPI(`models/${encodeURIComponent(m.name)}/rollback`, {});
      setActionError(undefined);
    } catch (e) {
      setActionError(e as ApiError);
    }
    refresh();
  };

  return (
    <section className="aiwb-section aiwb-models">
      <h3>Models</h3>
      <ErrorLine error={error} />
      {actionError ? (
        <div className="aiwb-error" role="alert">
          {actionError.message}
          {actionError.checks ? (
            <ul>
              {actionError.checks
                .filter(c => !c.passed)
                .map(c => (
                  <li key={c.name}>
                    {c.name}: {c.detail}
                  </li>
                ))}
            </ul>
          ) : null}
        </div>
      ) : null}
      {data && data.models.length === 0 ? (
        <div className="aiwb-nodata">No registered models yet.</div>
      ) : null}
      {data && data.models.length > 0 ? (
        <table className="aiwb-table">
          <tbody>
            {data.models.map(m => (
              <tr key={m.name} className="aiwb-model" data-model={m.name}>
                <td>{m.name}</td>
                <td>v{m.latest}</td>
                <td className="aiwb-aliases">
                  {Object.entries(m.aliases).map(([a, v]) => (
                    <span key={a} className="aiwb-alias" data-alias={a}>
                      {a}@v{v}
                    </span>
                  ))}
                </td>
                <td>
                  <Button minimal small className="aiwb-promote" onClick={() => promote(m)}>
                    Promote
                  </Button>
                  <Button minimal small className="aiwb-rollback" onClick={() => rollback(m)}>
                    Roll back
                  </Button>
                </td>
              </tr>
            ))}
          </tbody>
        </table>
      ) : null}
    </section>
  );
}

function JobRuns({ job, tick }: { job: string; tick: number }): JSX.Element {
  const { data, error } = useApi<JobRuns>(`jobs/${encodeURIComponent(job)}/runs?limit=5`, tick);
  return (
    <ul className="aiwb-job-runs">
      <ErrorLine error={error} />
      {data?.runs.map(r => (
        <li key={r.id} className={`aiwb-job-run aiwb-run-${r.status}`} data-run={r.id}>
          {new Date(r.queued_at * 1000).toLocaleString()}{' '}
          <b className="aiwb-run-status">{r.status}</b>{' '}
          {r.worker ? (
            <span className="aiwb-run-where" title={r.host ? `claimed by ${r.host}` : undefined}>
              on {r.worker}
              {r.executor && r.executor !== 'local' ? ` (${r.executor})` : ''}{' '}
            </span>
          ) : null}
          {r.finished ? (
            <a
              href={apiUrl(`job-runs/${r.id}/output?format=html`)}
              target="_blank"
              rel="noreferrer"
            >
              output
            </a>
          ) : null}
          {r.error_message ? <div className="aiwb-run-error">{r.error_message}</div> : null}
        </li>
      ))}
    </ul>
  );
}

function JobsSection({ tick, refresh }: { tick: number; refresh: () => void }): JSX.Element {
  const { data, error } = useApi<Jobs>('jobs', tick);
  const [actionError, setActionError] = React.useState<ApiError | undefined>();
  const act = async (job: Job, what: 'run' | 'cancel'): Promise<void> => {
    try {
      await postAPI(`jobs/${encodeURIComponent(job.name)}/${what}`, {});
      setActionError(undefined);
    } catch (e) {
      setActionError(e as ApiError);
    }
    refresh();
  };
  return (
    <section className="aiwb-section aiwb-jobs">
      <h3>Jobs</h3>
      <ErrorLine error={error ?? actionError} />
      {data && data.jobs.length === 0 ? (
        <div className="aiwb-nodata">No jobs yet: open a notebook and press “Run as job”.</div>
      ) : null}
      {data?.jobs.map(j => (
        <div key={j.id} className="aiwb-job" data-job={j.name}>
          <div className="aiwb-job-head">
            <b>{j.name}</b> <span className="aiwb-job-notebook">{j.notebook}</span>
            {j.cron ? <span className="aiwb-job-cron"> ⏱ {j.cron}</span> : null}
            <Button minimal small className="aiwb-run-now" onClick={() => act(j, 'run')}>
              Run now
            </Button>
            <Button minimal small className="aiwb-cancel" onClick={() => act(j, 'cancel')}>
              Cancel
            </Button>
          </div>
          <JobRuns job={j.name} tick={tick} />
        </div>
      ))}
    </section>
  );
}

/** Epoch seconds (or an ISO time) as the browser's local date and time; '—' when there is none. */
function when(t?: number | string | null): string {
  if (t === undefined || t === null || t === '') {
    return '—';
  }
  return new Date(typeof t === 'number' ? t * 1000 : t).toLocaleString();
}

function DataSection({ tick }: { tick: number }): JSX.Element {
  const tables = useApi<Tables>('lake/tables', tick);
  const views = useApi<FeatureViews>('features', tick);
  return (
    <section className="aiwb-section aiwb-data">
      <h3>Data</h3>
      <ErrorLine error={tables.error ?? views.error} />
      {tables.data && tables.data.tables.length === 0 ? (
        <div className="aiwb-nodata">
          No lake tables yet:{' '}
          <code>aiwb data write TABLE data.csv --contract contracts/NAME.yaml</code>
        </div>
      ) : null}
      {tables.data && tables.data.tables.length > 0 ? (
        <table className="aiwb-table">
          <tbody>
            {tables.data.tables.map(t => (
              <tr key={t.table} className="aiwb-lake-table" data-table={t.table}>
                <td>
                  <b>{t.table}</b>
                </td>
                <td>v{t.version}</td>
                <td className="aiwb-table-rows">{t.rows ?? '—'} rows</td>
                <td className="aiwb-table-contract">{t.contract ?? 'no contract'}</td>
                <td className="aiwb-when">{when(t.time)}</td>
              </tr>
            ))}
          </tbody>
        </table>
      ) : null}
      {views.data && views.data.views.length === 0 ? (
        <div className="aiwb-nodata">
          No feature views yet: add <code>features/NAME.yaml</code>, then{' '}
          <code>aiwb features apply</code>
        </div>
      ) : null}
      {views.data?.views.map(v => (
        <div key={v.name} className="aiwb-view" data-view={v.name}>
          <div className="aiwb-view-head">
            <b>{v.name}</b> <span className="aiwb-view-source">← {v.source}</span>{' '}
            <span className={`aiwb-badge ${v.applied ? 'aiwb-ok' : 'aiwb-todo'}`}>
              {v.applied ? 'applied' : 'not applied'}
            </span>{' '}
            <span
              className={`aiwb-badge aiwb-view-materialized ${v.materialized ? 'aiwb-ok' : 'aiwb-todo'}`}
              title={
                v.materialized
                  ? `at ${when(v.materialized_at)}`
                  : `aiwb features materialize ${v.name}`
              }
            >
              {v.materialized ? `materialized v${v.materialized_version}` : 'not materialized'}
            </span>
          </div>
          <div className="aiwb-evidence">
            by {v.entities.join(', ')} · {v.features.join(', ')} · ttl {v.ttl ?? '—'}
            {v.materialized ? ` · ${when(v.materialized_at)}` : ''}
          </div>
        </div>
      ))}
    </section>
  );
}

function LiveLine({ live }: { live: LiveQuality }): JSX.Element {
  return (
    <>
      {live.shown}
      {live.p95_ms !== null && live.p95_ms !== undefined
        ? ` · p95 ${live.p95_ms.toFixed(1)} ms`
        : ''}
    </>
  );
}

function ServicesSection({ tick }: { tick: number }): JSX.Element {
  const { data, error } = useApi<Services>('services', tick);
  return (
    <section className="aiwb-section aiwb-services">
      <h3>Services{data ? ` (last ${data.window_days} days)` : ''}</h3>
      <ErrorLine error={error} />
      {data && data.services.length === 0 ? (
        <div className="aiwb-nodata">
          No builds yet: <code>aiwb package MODEL@champion</code> (or <code>aiwb serve</code>)
        </div>
      ) : null}
      {data?.services.map(s =>
        s.live ? (
          <div
            key={s.build_dir ?? `${s.name}-${s.version}`}
            className={`aiwb-service${s.live.concept_drift ? ' aiwb-drifted' : ''}`}
            data-service={`${s.name}@v${s.version}`}
          >
            <div className="aiwb-service-head">
              <b>{s.name}</b> v{s.version} <span className="aiwb-service-runtime">{s.runtime}</span>
              {s.challenger ? (
                <span className="aiwb-alias aiwb-service-challenger">
                  {s.challenger.mode} v{s.challenger.version}
                  {s.challenger.mode === 'canary' && s.challenger.share
                    ? ` ${Math.round(s.challenger.share * 100)}%`
                    : ''}
                </span>
              ) : null}
              {s.follow ? <span className="aiwb-service-follow"> follows its alias</span> : null}
            </div>
            <div className="aiwb-service-live" title={s.live.drift_reason ?? ''}>
              <LiveLine live={s.live} />
            </div>
          </div>
        ) : (
          <div key={s.build_dir ?? s.name} className="aiwb-service" data-service={s.name}>
            <div className="aiwb-service-head">
              <b>{s.name}</b> <span className="aiwb-service-runtime">{s.runtime}</span>{' '}
              {(s.routes ?? []).length} models
              {s.follow ? (
                <span className="aiwb-service-follow"> each follows its alias</span>
              ) : null}
            </div>
            {(s.routes ?? []).map(r => (
              <div
                key={r.route}
                className={`aiwb-service-route${r.live?.concept_drift ? ' aiwb-drifted' : ''}`}
                data-route={r.route}
              >
                <div className="aiwb-service-live" title={r.live?.drift_reason ?? ''}>
                  <code>POST {r.route}</code> <b>{r.model}</b> v{r.version}
                  {r.live ? (
                    <>
                      {' · '}
                      <LiveLine live={r.live} />
                    </>
                  ) : null}
                </div>
              </div>
            ))}
          </div>
        )
      )}
    </section>
  );
}

function CiSection({ tick }: { tick: number }): JSX.Element {
  const { data, error } = useApi<CiRuns>('ci/runs?limit=5', tick);
  return (
    <section className="aiwb-section aiwb-ci">
      <h3>CI</h3>
      <ErrorLine error={error} />
      {data && data.runs.length === 0 ? (
        <div className="aiwb-nodata">
          No CI runs yet: <code>aiwb ci</code> (and <code>aiwb ci init --ci github</code> to run it
          on every push)
        </div>
      ) : null}
      <ul className="aiwb-job-runs">
        {data?.runs.map(r => (
          <li key={r.run_id} className={`aiwb-ci-run aiwb-run-${r.outcome}`} data-ci-run={r.run_id}>
            {when(r.started)} <b className="aiwb-run-status">{r.outcome ?? 'running'}</b>
            {r.commit ? <code className="aiwb-ci-commit"> {r.commit.slice(0, 12)}</code> : null}
            {r.seconds !== null && r.seconds !== undefined ? ` in ${r.seconds.toFixed(1)} s` : ''}
            {r.promoted ? ` · promoted ${r.model ?? ''} v${r.promoted}` : ''}
            <div className="aiwb-evidence aiwb-ci-stages">
              {Object.entries(r.stages)
                .map(([stage, s]) => `${stage} ${s.toFixed(1)} s`)
                .join(' · ')}
            </div>
          </li>
        ))}
      </ul>
    </section>
  );
}

/** The Workbench side panel: phase, KPIs, models, jobs, data, services, CI; refreshed on focus, on show and every REFRESH_MS. */
export class WorkbenchPanel extends ReactWidget {
  private tick = 0;
  private timer: number | undefined;
  private onFocus = () => this.refresh();

  constructor() {
    super();
    this.id = 'aiworkbench-panel';
    this.addClass('aiwb-panel');
    this.title.caption = 'Workbench';
  }

  refresh(): void {
    this.tick += 1;
    this.update();
  }

  protected onAfterAttach(): void {
    window.addEventListener('focus', this.onFocus);
    this.timer = window.setInterval(() => this.isVisible && this.refresh(), REFRESH_MS);
  }

  protected onBeforeDetach(): void {
    window.removeEventListener('focus', this.onFocus);
    window.clearInterval(this.timer);
  }

  protected onAfterShow(): void {
    this.refresh();
  }

  render(): JSX.Element {
    const refresh = () => this.refresh();
    return (
      <div className="aiwb-body">
        <div className="aiwb-toolbar">
          <b>Workbench</b>
          <Button minimal small className="aiwb-refresh" onClick={refresh} title="Refresh">
            ↻
          </Button>
        </div>
        <PhaseSection tick={this.tick} />
        <KpiSection tick={this.tick} />
        <ModelsSection tick={this.tick} refresh={refresh} />
        <JobsSection tick={this.tick} refresh={refresh} />
        <DataSection tick={this.tick} />
        <ServicesSection tick={this.tick} />
        <CiSection tick={this.tick} />
      </div>
    );
  }
}
