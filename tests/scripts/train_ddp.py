"Train with two CPU processes (DDP over gloo); every rank leaves a marker, rank zero prints the result as JSON."

import json
import sys
from pathlib import Path

from sklearn.datasets import load_breast_cancer

from aiworkbench.config import load_settings
from aiworkbench.contracts import infer_contract
from aiworkbench.training import global_rank, train_tabular

root = Path(sys.argv[1])
frame = load_breast_cancer(as_frame=True).frame
contract = infer_contract(frame, "bc", target="target")
result = train_tabular(
    frame,
    contract,
    max_epochs=2,
    settings=load_settings(root),
    experiment="ddp",
    accelerator="cpu",
    devices=2,
    enable_progress_bar=False,
)
(root / f"rank-{global_rank()}.done").write_text("ok")
if result is not None:
    print("RESULT " + json.dumps(result.to_dict()))
