"""What the tools read from Ultralytics' training machinery: devices, datasets, a trainer's state and results.

``yolo-attn compare`` trains through the public front ends (``YOLO(...).train``) and reads, through these functions
only, what those do not return: the device ``select_device`` picks (``ultralytics.utils.torch_utils``), a dataset
YAML's resolved paths and class count (``ultralytics.data.utils.check_det_dataset``), the image suffixes Ultralytics
reads (``IMG_FORMATS``), and a trainer's losses, epoch counter, weights and ``results.csv`` (callbacks' argument).
Each is a fact with a contract test (``tests/test_contract.py``).
"""

from __future__ import annotations

import csv
import importlib
import sys
from pathlib import Path

__all__ = [
    "select_device", "dataset_info", "image_suffixes", "batch_loss", "epoch_losses", "epoch_progress",
    "trained_weights", "logged_train_seconds", "metrics", "attach_loss", "cli_entrypoint",
]


def attach_loss(model) -> None:
    """Make ``model.loss(batch)`` work outside a trainer, as a trainer sets it up: the default hyperparameters
    (``ultralytics.cfg.get_cfg()``) as ``model.args`` and ``model.init_criterion()`` as ``model.criterion``. Raises
    what Ultralytics raises for a model without a loss. (``yolo-attn bench``'s training step of whole models.)"""
    model.args = importlib.import_module("ultralytics.cfg").get_cfg()
    model.criterion = model.init_criterion()


def cli_entrypoint(argv: list[str]) -> None:
    """Run the ``yolo`` command's entry point (``ultralytics.cfg.entrypoint``) on ``argv``, which it reads from
    ``sys.argv`` — directly, or (before 8.4) through ``ultralytics.utils.ARGV``, the same list object: so the list
    is changed in place, not replaced."""
    sys.argv[:] = ["yolo", *argv]
    importlib.import_module("ultralytics.cfg").entrypoint()


def select_device(request: str):
    """The device Ultralytics trains on for a ``device=`` request (``""``: its choice): a ``torch.device`` (the first
    GPU of a list), or what Ultralytics hands back for devices torch does not know. Raises what it raises."""
    torch_utils = importlib.import_module("ultralytics.utils.torch_utils")
    return torch_utils.select_device(request, verbose=False)


def dataset_info(data: str) -> dict:
    """A detection dataset YAML as Ultralytics resolves it (``check_det_dataset``: absolute ``train``/``val`` paths,
    ``nc``, ``names``)."""
    from ultralytics.data.utils import check_det_dataset  # lazy: Ultralytics' data package is heavy

    return check_det_dataset(data)


def image_suffixes() -> frozenset[str]:
    """File suffixes (lower case, no dot) Ultralytics reads as images."""
    from ultralytics.data.utils import IMG_FORMATS  # lazy: as above

    return frozenset(IMG_FORMATS)


def batch_loss(trainer) -> float:
    """The total loss of the batch a trainer just trained on (``on_train_batch_end``)."""
    items = trainer.loss_items
    return sum(float(v) for v in items.values()) if isinstance(items, dict) else float(items.sum())


def epoch_losses(trainer) -> dict[str, float]:
    """The mean losses of the epoch so far by short name (``box``, ``cls``, ``dfl``, ...; ``on_train_epoch_end``)."""
    if trainer.tloss is None:
        return {}
    items = trainer.label_loss_items(trainer.tloss, prefix="")
    return {k.split("/")[-1].replace("_loss", ""): float(v) for k, v in items.items()}


def epoch_progress(trainer) -> tuple[int, int]:
    """``(epoch, epochs)``: the 1-based epoch a trainer is in and how many it runs."""
    return trainer.epoch + 1, trainer.epochs


def trained_weights(trainer) -> Path:
    """The weights a finished training run leaves: ``best.pt`` if written, else ``last.pt``."""
    return Path(trainer.best) if Path(trainer.best).is_file() else Path(trainer.last)


def logged_train_seconds(trainer) -> float:
    """Ultralytics' own clock of a run (``results.csv``, column ``time`` of the last epoch, its validation included):
    for epochs that ran in other processes (multi-GPU DDP), which callbacks do not see; 0 if absent."""
    save_dir = getattr(trainer, "save_dir", None)
    if not save_dir:
        return 0.0
    try:
        with open(Path(save_dir) / "results.csv", newline="") as fh:
            last = list(csv.DictReader(fh))[-1]
        return float({k.strip(): v for k, v in last.items()}["time"])
    except (OSError, IndexError, KeyError, ValueError, TypeError):
        return 0.0


def metrics(results) -> dict:
    """Validation figures of ``Model.train``/``Model.val``'s result: a metrics object's ``results_dict``, or the dict
    Ultralytics 8.4 returns under DDP (the checkpoint's ``train_metrics``); {} for None (DDP in older versions)."""
    if isinstance(results, dict):
        return results
    return getattr(results, "results_dict", None) or {}
