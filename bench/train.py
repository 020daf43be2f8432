"""Training cost per epoch: a plain PyTorch loop vs plain Lightning vs aiworkbench `fit` with MLflow tracking.

The same MLP and data (default 20,000 rows x 30 features, batch 64, 5 epochs, one thread) go through
  (a)  a plain PyTorch loop over a DataLoader(TensorDataset)           - the reference
  (a') the same loop over in-memory tensor slices                     - the compute floor
  (b)  plain Lightning Trainer.fit with DataLoaders (its default CSV logger, no progress bar)
  (c)  aiworkbench fit: MLflow run with lineage, a metric per step, in-memory batches, checkpoint logged
Validation runs at each epoch end in all of them. Then the model is logged to MLflow in pt2 format, cold (first
export in the process) and warm. Prints ms per epoch (median of epochs 2..N) and the ratios last.

    python bench/train.py                  # the issue's sizes
    python bench/train.py --rows 2000 --epochs 2
"""

import argparse
import statistics
import tempfile
import time
import warnings
from pathlib import Path

import lightning.pytorch as pl
import numpy as np
import pandas as pd
import torch
from torch.utils.data import DataLoader, TensorDataset

from aiworkbench.config import load_settings
from aiworkbench.contracts import infer_contract
from aiworkbench.nets import TabularDataModule
from aiworkbench.project import init_project
from aiworkbench.training import fit, log_model, quiet


class EpochTimer(pl.Callback):
    "Wall time of each training epoch, validation included."

    def __init__(self):
        self.times, self._t0 = [], 0.0

    def on_train_epoch_start(self, trainer, module):
        self._t0 = time.perf_counter()

    def on_validation_epoch_end(self, trainer, module):
        if not trainer.sanity_checking and self._t0:
            self.times.append(time.perf_counter() - self._t0)
            self._t0 = 0.0


def per_epoch_ms(times: list[float]) -> float:
    return 1000 * statistics.median(times[1:] if len(times) > 1 else times)


def plain_loop(model, train_batches, val_batches, epochs: int) -> list[float]:
    opt = model.configure_optimizers()
    times = []
    for _ in range(epochs):
        t0 = time.perf_counter()
        model.train()
        for x, y in train_batches():
            opt.zero_grad()
            loss = torch.nn.functional.cross_entropy(model._raw(x), y)
            loss.backward()
            opt.step()
        model.eval()
        with torch.no_grad():
            for x, y in val_batches():
                torch.nn.functional.cross_entropy(model._raw(x), y)
        times.append(time.perf_counter() - t0)
    return times


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=20_000)
    parser.add_argument("--features", type=int, default=30)
    parser.add_argument("--batch", type=int, default=64)
    parser.add_argument("--epochs", type=int, default=5)
    args = parser.parse_args()
    torch.set_num_threads(1)
    warnings.filterwarnings("ignore")

    rng = np.random.default_rng(0)
    x = rng.normal(size=(args.rows, args.features)).astype("float32")
    frame = pd.DataFrame(x, columns=[f"f{i}" for i in range(args.features)])
    frame["target"] = (x @ rng.normal(size=args.features) > 0).astype(int)
    contract = infer_contract(frame, "bench", target="target")
    data = TabularDataModule(frame, contract, batch_size=args.batch, seed=0)
    tx, ty, vx, vy = data.x[data.train_idx], data.y[data.train_idx], data.x[data.val_idx], data.y[data.val_idx]

    def fresh():
        torch.manual_seed(0)
        return data.model()

    loader = DataLoader(TensorDataset(tx, ty), batch_size=args.batch, shuffle=True)
    val_loader = DataLoader(TensorDataset(vx, vy), batch_size=1024)
    results = {}
    results["(a) plain loop, DataLoader"] = per_epoch_ms(
        plain_loop(fresh(), lambda: loader, lambda: val_loader, args.epochs)
    )

    def slices():
        order = torch.randperm(len(tx))
        return ((tx[order[i : i + args.batch]], ty[order[i : i + args.batch]]) for i in range(0, len(tx), args.batch))

    results["(a') plain loop, tensor slices"] = per_epoch_ms(
        plain_loop(fresh(), slices, lambda: [(vx, vy)], args.epochs)
    )

    with tempfile.TemporaryDirectory() as tmp, quiet():
        timer = EpochTimer()
        trainer = pl.Trainer(
            max_epochs=args.epochs,
            enable_progress_bar=False,
            enable_model_summary=False,
            default_root_dir=tmp,
            callbacks=[timer],
            num_sanity_val_steps=0,
            accelerator="cpu",
        )
        trainer.fit(fresh(), train_dataloaders=loader, val_dataloaders=val_loader)
        results["(b) plain Lightning"] = per_epoch_ms(timer.times)

        settings = load_settings(init_project(Path(tmp) / "project"))
        timer = EpochTimer()
        fitted = fit(
            fresh(),
            data,
            max_epochs=args.epochs,
            settings=settings,
            enable_progress_bar=False,
            callbacks=[timer],
            num_sanity_val_steps=0,
            accelerator="cpu",
            log_model_artifact=False,
        )
        results["(c) aiworkbench fit, tracked"] = per_epoch_ms(timer.times)

        import mlflow

        from aiworkbench.tracking import client, store_scope

        steps = len(client(settings=settings).get_metric_history(fitted.run_id, "train_loss_step"))
        model = fresh()
        log_times = []
        with store_scope(settings=settings), mlflow.start_run(run_id=fitted.run_id):
            for _ in range(2):
                t0 = time.perf_counter()
                log_model(model, data, contract)
                log_times.append(time.perf_counter() - t0)

    ref, lightning_ms = results["(a) plain loop, DataLoader"], results["(b) plain Lightning"]
    print(
        f"{args.rows:,} rows x {args.features} features, batch {args.batch}, {args.epochs} epochs, 1 thread; "
        f"{steps} per-step metric values logged by (c)"
    )
    print(f"{'path':<32} {'ms/epoch':>9} {'vs (a)':>7} {'vs (b)':>7}")
    for name, ms in results.items():
        print(f"{name:<32} {ms:>9.1f} {ms / ref:>7.2f} {ms / lightning_ms:>7.2f}")
    print(f"log model (pt2): first in process {log_times[0]:.2f} s, next {log_times[1]:.2f} s")
    c = results["(c) aiworkbench fit, tracked"]
    print(f"ratio (c)/(b): {c / lightning_ms:.2f}  (c)/(a): {c / ref:.2f}")


if __name__ == "__main__":
    main()
