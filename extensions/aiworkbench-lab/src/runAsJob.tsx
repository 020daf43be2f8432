import { Dialog, showDialog, showErrorMessage } from '@jupyterlab/apputils';
import { NotebookPanel } from '@jupyterlab/notebook';
import { ReactWidget } from '@jupyterlab/ui-components';
import * as React from 'react';

import {
  ApiError,
  CreateJob,
  NotebookParameters,
  postAPI,
  requestAPI,
  StartSweep,
  StartedSweep,
  Sweep,
  SweepTrial
} from './api';

/** What the form starts: a job (run now, or on a cron schedule), or an Optuna sweep of the notebook's parameters. */
export type RunAsJobValue = { job?: CreateJob; sweep?: StartSweep; error?: ApiError };

/** `NAME=SPEC` lines as the sweep's search space; an `ApiError` naming the line that does not read. */
export function readSpecs(text: string): Record<string, string> {
  const params: Record<string, string> = {};
  text.split('\n').forEach((raw, i) => {
    const line = raw.trim();
    if (!line || line.startsWith('#')) {
      return;
    }
    const eq = line.indexOf('=');
    if (eq < 1 || !line.slice(eq + 1).trim()) {
      throw new ApiError(
        400,
        `line ${i + 1} \`${line}\` of the sweep's parameters must be NAME=SPEC, e.g. lr=log(1e-4,1e-1)`,
        'params'
      );
    }
    params[line.slice(0, eq).trim()] = line.slice(eq + 1).trim();
  });
  if (Object.keys(params).length === 0) {
    throw new ApiError(400, 'a sweep needs at least one NAME=SPEC line', 'params');
  }
  return params;
}

/** The sweep's fields: what it searches (NAME=SPEC lines), how many trials, how many at once, the metric. */
function SweepFields(props: { example: string; stem: string }): JSX.Element {
  return (
    <fieldset className="aiwb-sweep-fields">
      <legend>Sweep (Optuna; each trial a notebook job)</legend>
      <label>
        Parameters to search, one NAME=SPEC a line: int(a,b), float(a,b), log(a,b), choice(x,y,…)
        <textarea
          name="sweep-params"
          rows={3}
          style={{ width: '90%' }}
          placeholder={props.example}
        />
      </label>
      <label>
        Trials <input name="sweep-trials" type="number" min={1} defaultValue={10} />
      </label>
      <label>
        Parallel <input name="sweep-parallel" type="number" min={1} defaultValue={1} />
      </label>
      <label>
        Metric <input name="sweep-metric" defaultValue="val_loss" />
      </label>
      <label>
        Direction{' '}
        <select name="sweep-direction" defaultValue="minimize">
          <option value="minimize">minimize</option>
          <option value="maximize">maximize</option>
        </select>
      </label>
      <label>
        Sweep name{' '}
        <input
          name="sweep-name"
          placeholder={`empty: ${props.stem}-<date>-<time>; a name again resumes it`}
        />
      </label>
    </fieldset>
  );
}

/** The form body: job or sweep, the job's fields (parameters pre-filled with the notebook's defaults, an optional
 * cron) or the sweep's. */
function FormBody(props: { notebook: NotebookParameters; defaultName: string }): JSX.Element {
  const [mode, setMode] = React.useState<'job' | 'sweep'>('job');
  const { parameters, types } = props.notebook;
  const numeric = Object.entries(types).find(([, kind]) => kind === 'int' || kind === 'float');
  const example = numeric
    ? numeric[1] === 'int'
      ? `${numeric[0]}=int(1,10)`
      : `${numeric[0]}=float(0,1)`
    : 'lr=log(1e-4,1e-1)';
  return (
    <form className="aiwb-form" onSubmit={e => e.preventDefault()}>
      <label>
        Run{' '}
        <select
          name="mode"
          value={mode}
          onChange={e => setMode(e.currentTarget.value as 'job' | 'sweep')}
        >
          <option value="job">as a job (now, or on a schedule)</option>
          <option value="sweep">a sweep of its parameters</option>
        </select>
      </label>
      {mode === 'sweep' ? (
        <SweepFields
          example={example}
          stem={props.notebook.path
            .split('/')
            .pop()!
            .replace(/\.ipynb$/, '')}
        />
      ) : (
        <>
          <label>
            Job name <input name="name" defaultValue={props.defaultName} />
          </label>
          <fieldset>
            <legend>Parameters</legend>
            {Object.keys(types).length === 0 ? (
              <i>This notebook has no cell tagged “parameters”.</i>
            ) : null}
            {Object.entries(types).map(([name, kind]) => (
              <label key={name}>
                {name} <small>({kind})</small>{' '}
                <input
                  name={`param-${name}`}
                  defaultValue={
                    kind === 'str' ? String(parameters[name]) : JSON.stringify(parameters[name])
                  }
                />
              </label>
            ))}
          </fieldset>
          <label>
            Cron schedule <input name="cron" placeholder="e.g. 0 3 * * * (empty: run once now)" />
          </label>
          <label>
            Timezone <input name="timezone" defaultValue="UTC" />
          </label>
        </>
      )}
    </form>
  );
}

/** The form: run the notebook as a job, or start a sweep of its parameters. */
export class RunAsJobForm extends ReactWidget {
  constructor(
    readonly notebook: NotebookParameters,
    readonly defaultName: string
  ) {
    super();
    this.addClass('aiwb-run-as-job');
  }

  /** The job or sweep to start (read by the dialog before it closes), or the error naming a field that does not read. */
  getValue(): RunAsJobValue {
    try {
      return this.field('mode') === 'sweep' ? { sweep: this.readSweep() } : { job: this.readJob() };
    } catch (e) {
      return { error: e as ApiError };
    }
  }

  private field(name: string): string {
    return this.node.querySelector<HTMLInputElement | HTMLSelectElement | HTMLTextAreaElement>(
      `[name="${name}"]`
    )!.value;
  }

  private whole(name: string, label: string): number {
    const raw = this.field(`sweep-${name}`).trim();
    if (!/^\d+$/.test(raw) || Number(raw) < 1) {
      throw new ApiError(400, `${label} \`${raw}\` must be a whole number of at least 1`, name);
    }
    return Number(raw);
  }

  private readSweep(): StartSweep {
    const name = this.field('sweep-name').trim();
    return {
      notebook: this.notebook.path,
      params: readSpecs(this.field('sweep-params')),
      trials: this.whole('trials', 'Trials'),
      parallel: this.whole('parallel', 'Parallel'),
      metric: this.field('sweep-metric').trim(),
      direction: this.field('sweep-direction') as StartSweep['direction'],
      ...(name ? { name } : {})
    };
  }

  private readJob(): CreateJob {
    const parameters: Record<string, unknown> = {};
    for (const [name, kind] of Object.entries(this.notebook.types)) {
      const raw = this.field(`param-${name}`);
      if (kind === 'str') {
        parameters[name] = raw;
      } else {
        try {
          parameters[name] = JSON.parse(raw);
        } catch {
          throw new ApiError(
            400,
            `parameter \`${name}\`: \`${raw}\` is not a ${kind} value`,
            `parameters.${name}`
          );
        }
      }
    }
    const cron = this.field('cron').trim();
    return {
      name: this.field('name').trim(),
      notebook: this.notebook.path,
      parameters,
      ...(cron ? { cron } : {}),
      timezone: this.field('timezone').trim() || 'UTC'
    };
  }

  render(): JSX.Element {
    return <FormBody notebook={this.notebook} defaultName={this.defaultName} />;
  }
}

function shownValue(value: number | null | undefined): string {
  return value === null || value === undefined ? '' : Number(value).toPrecision(6);
}

function shownParams(params: Record<string, unknown>): string {
  return Object.entries(params)
    .map(([k, v]) => `${k}=${typeof v === 'number' ? Number(v.toPrecision(4)) : String(v)}`)
    .join(', ');
}

/** A sweep's trials, best first, read again every two seconds while it runs. */
export class SweepView extends ReactWidget {
  private report: Sweep | null = null;
  private error = '';
  private timer = 0;

  constructor(readonly name: string) {
    super();
    this.addClass('aiwb-sweep');
    void this.load();
  }

  private async load(): Promise<void> {
    try {
      this.report = await requestAPI<Sweep>(`sweeps/${encodeURIComponent(this.name)}`);
      this.error = '';
    } catch (e) {
      this.error = (e as Error).message;
    }
    if (this.isDisposed) {
      return;
    }
    this.update();
    const r = this.report;
    if (!r || r.running || (r.counts.running ?? 0) > 0 || this.error) {
      this.timer = window.setTimeout(() => void this.load(), 2000);
    }
  }

  dispose(): void {
    window.clearTimeout(this.timer);
    super.dispose();
  }

  render(): JSX.Element {
    const r = this.report;
    if (!r) {
      return (
        <div className={this.error ? 'aiwb-error' : 'aiwb-nodata'}>{this.error || 'Loading…'}</div>
      );
    }
    const running = r.running || (r.counts.running ?? 0) > 0;
    const row = (t: SweepTrial) => (
      <tr key={t.number} className={`aiwb-sweep-trial aiwb-trial-${t.state}`} data-trial={t.number}>
        <td>{t.number}</td>
        <td>{t.state}</td>
        <td>{shownValue(t.value)}</td>
        <td>{shownParams(t.params)}</td>
        <td>{t.error ?? ''}</td>
      </tr>
    );
    return (
      <div data-running={String(running)} data-sweep={r.name}>
        <p>
          {r.direction} <b>{r.metric}</b> over <code>{r.notebook}</code>:{' '}
          <span className="aiwb-sweep-counts">
            {r.counts.complete ?? 0} complete, {r.counts.fail ?? 0} failed, {r.counts.running ?? 0}{' '}
            running
          </span>
          {running ? ' …' : ''}
        </p>
        {r.error ? <p className="aiwb-error">The sweep stopped: {r.error}</p> : null}
        {this.error ? <p className="aiwb-error">{this.error}</p> : null}
        {r.best ? (
          <p className="aiwb-sweep-best">
            Best: trial {r.best.number}, {r.metric} = {shownValue(r.best.value)} (
            {shownParams(r.best.params)})
          </p>
        ) : null}
        <table>
          <thead>
            <tr>
              <th>trial</th>
              <th>state</th>
              <th>{r.metric}</th>
              <th>params</th>
              <th>error</th>
            </tr>
          </thead>
          <tbody>{r.trials.map(row)}</tbody>
        </table>
      </div>
    );
  }
}

/** Show a sweep's trials until the dialog is closed (they keep running in the server when it is). */
export async function showSweep(name: string): Promise<void> {
  const view = new SweepView(name);
  try {
    await showDialog({
      title: `Sweep ${name}`,
      body: view,
      buttons: [Dialog.okButton({ label: 'Close' })]
    });
  } finally {
    view.dispose();
  }
}

/** Open the form for `panel`'s notebook; create the job and run it now, or start the sweep and show its trials. */
export async function runAsJob(panel: NotebookPanel, onDone: () => void): Promise<void> {
  if (panel.context.model.dirty) {
    await panel.context.save();
  }
  let notebook: NotebookParameters;
  try {
    notebook = await requestAPI<NotebookParameters>(
      `notebooks/parameters?path=${encodeURIComponent(panel.context.path)}`
    );
  } catch (e) {
    await showErrorMessage('Run as job', (e as Error).message);
    return;
  }
  const stem = panel.context.path
    .split('/')
    .pop()!
    .replace(/\.ipynb$/, '');
  const form = new RunAsJobForm(notebook, stem.replace(/[^A-Za-z0-9_.:/-]/g, '-'));
  const result = await showDialog({
    title: `Run ${panel.context.path} as a job`,
    body: form,
    buttons: [Dialog.cancelButton(), Dialog.okButton({ label: 'Create and run' })]
  });
  if (!result.button.accept) {
    form.dispose();
    return;
  }
  let started: StartedSweep | null = null;
  try {
    const { job, sweep, error } = result.value ?? {};
    if (sweep) {
      started = await postAPI<StartedSweep>('sweeps', sweep);
    } else if (job) {
      await postAPI('jobs', job);
      await postAPI(`jobs/${encodeURIComponent(job.name)}/run`, {});
    } else {
      throw error ?? new ApiError(400, 'the form could not be read');
    }
  } catch (e) {
    await showErrorMessage('Run as job', (e as Error).message);
  } finally {
    form.dispose();
    onDone();
  }
  if (started) {
    await showSweep(started.name);
    onDone();
  }
}
