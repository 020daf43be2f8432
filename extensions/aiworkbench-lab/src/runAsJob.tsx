import { Dialog, showDialog, showErrorMessage } from '@jupyterlab/apputils';
import { NotebookPanel } from '@jupyterlab/notebook';
import { ReactWidget } from '@jupyterlab/ui-components';
import * as React from 'react';

import { ApiError, CreateJob, NotebookParameters, postAPI, requestAPI } from './api';

/** The form: job name, one field per parameter (pre-filled with the notebook's defaults), an optional cron. */
export class RunAsJobForm extends ReactWidget {
  constructor(
    readonly notebook: NotebookParameters,
    readonly defaultName: string
  ) {
    super();
    this.addClass('aiwb-run-as-job');
  }

  /** The job to create (read by the dialog before it closes), or the error naming a field that does not read. */
  getValue(): { job?: CreateJob; error?: ApiError } {
    try {
      return { job: this.read() };
    } catch (e) {
      return { error: e as ApiError };
    }
  }

  private read(): CreateJob {
    const field = (name: string) =>
      this.node.querySelector<HTMLInputElement>(`[name="${name}"]`)!.value;
    const parameters: Record<string, unknown> = {};
    for (const [name, kind] of Object.entries(this.notebook.types)) {
      const raw = field(`param-${name}`);
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
    const cron = field('cron').trim();
    return {
      name: field('name').trim(),
      notebook: this.notebook.path,
      parameters,
      ...(cron ? { cron } : {}),
      timezone: field('timezone').trim() || 'UTC'
    };
  }

  render(): JSX.Element {
    const { parameters, types } = this.notebook;
    return (
      <form className="aiwb-form" onSubmit={e => e.preventDefault()}>
        <label>
          Job name <input name="name" defaultValue={this.defaultName} />
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
      </form>
    );
  }
}

/** Open the form for `panel`'s notebook; create the job, run it now, and tell the panel to refresh. */
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
  try {
    const { job, error } = result.value ?? {};
    if (!job) {
      throw error ?? new ApiError(400, 'the form could not be read');
    }
    await postAPI('jobs', job);
    await postAPI(`jobs/${encodeURIComponent(job.name)}/run`, {});
  } catch (e) {
    await showErrorMessage('Run as job', (e as Error).message);
  } finally {
    form.dispose();
    onDone();
  }
}
