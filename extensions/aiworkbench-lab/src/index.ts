import {
  ILabShell,
  ILayoutRestorer,
  JupyterFrontEnd,
  JupyterFrontEndPlugin
} from '@jupyterlab/application';
import { ToolbarButton } from '@jupyterlab/apputils';
import { DocumentRegistry } from '@jupyterlab/docregistry';
import { INotebookModel, NotebookPanel } from '@jupyterlab/notebook';
import { LabIcon } from '@jupyterlab/ui-components';
import { DisposableDelegate, IDisposable } from '@lumino/disposable';

import { WorkbenchPanel } from './panel';
import { runAsJob } from './runAsJob';

const workbenchIcon = new LabIcon({
  name: 'aiworkbench:workbench',
  svgstr:
    '<svg xmlns="http://www.w3.org/2000/svg" viewBox="0 0 24 24"><g class="jp-icon3" fill="#616161">' +
    '<path d="M3 3h8v8H3zm10 0h8v5h-8zM3 13h8v8H3zm10-3h8v11h-8z"/></g></svg>'
});

/** Adds "Run as job" to every notebook's toolbar. */
class RunAsJobButton implements DocumentRegistry.IWidgetExtension<NotebookPanel, INotebookModel> {
  constructor(private panel: WorkbenchPanel) {}

  createNew(notebook: NotebookPanel): IDisposable {
    const button = new ToolbarButton({
      className: 'aiwb-run-as-job-button',
      label: 'Run as job',
      tooltip: 'Run this notebook as a workbench job (now, or on a cron schedule)',
      onClick: () => void runAsJob(notebook, () => this.panel.refresh())
    });
    notebook.toolbar.insertItem(10, 'aiwbRunAsJob', button);
    return new DisposableDelegate(() => button.dispose());
  }
}

const plugin: JupyterFrontEndPlugin<void> = {
  id: 'aiworkbench-lab:plugin',
  description:
    'The Workbench side panel (phase, KPIs, models, jobs) and the notebook button "Run as job".',
  autoStart: true,
  requires: [ILabShell],
  optional: [ILayoutRestorer],
  activate: (app: JupyterFrontEnd, shell: ILabShell, restorer: ILayoutRestorer | null) => {
    const panel = new WorkbenchPanel();
    panel.title.icon = workbenchIcon;
    shell.add(panel, 'right', { rank: 50 });
    if (restorer) {
      restorer.add(panel, 'aiworkbench-panel');
    }
    app.docRegistry.addWidgetExtension('Notebook', new RunAsJobButton(panel));
    app.commands.addCommand('aiworkbench:open', {
      label: 'Open the Workbench panel',
      execute: () => shell.activateById(panel.id)
    });
  }
};

export default plugin;
