"""The Ultralytics adapter: every touch of Ultralytics internals, in one subpackage, one job per file.

Layout (dependencies point one way: ``yolo_attn.layers`` → this adapter → the model features ``configs``, ``names``,
``transfer`` → the tools → the CLI; the adapter never imports a feature or a tool):

* ``versions.py`` — :data:`CHECKED_VERSIONS`, :class:`IntegrationError` for a fact that no longer holds;
* ``patching.py`` — replacing an Ultralytics function once (marked, original kept); Ultralytics' logger;
* ``rows.py`` — YAML rows and arguments: the class standing for a registered YAML name, built from the row (1, 2);
* ``parse.py`` — the ``parse_model`` wrapper: ``imports:``, checked rows, unknown-layer errors (3);
* ``checkpoints.py`` — loading, safe globals, checkpoint modules, ``BaseModel.load`` pairing, checkpoint files (4, 7);
* ``config_files.py`` — config names through ``yaml_model_load``, scales, the stock model YAMLs (5, 9);
* ``square.py`` — square inputs for layers that need them (6);
* ``models.py`` — building a model and choosing its class from the head; fusing (7);
* ``training.py`` — devices, datasets, a trainer's state, as the tools read them (8);
* ``exporting.py`` — exports to a format a layer's runtime cannot run, refused naming the layer (11);
* ``ultralytics_layers.py`` — Ultralytics' own attention modules by YAML name, channels filled in (12);
* ``console.py`` — yolo_attn's errors under the ``yolo`` command: the message first;
* ``install.py`` — :func:`register`: all of the above installed; the features' hooks are its arguments.

Checked against ultralytics 8.1.47, 8.2.103, 8.3.240 and 8.4.190 (:data:`CHECKED_VERSIONS`); each fact below has a
contract test in ``tests/test_contract.py`` run against every checked version, so an Ultralytics upgrade that breaks
one fails in one named test, and the change it needs is a change to this subpackage only.

Facts relied on (see also ``yolo_attn_autoload.py`` for the start-up hook):

1. ``parse_model`` resolves a YAML layer name through ``globals()[name]`` of ``ultralytics.nn.tasks`` when it is
   not ``nn.X`` / ``torchvision.ops.X``; an unknown name raises ``KeyError(name)``. Unknown (non-Ultralytics)
   layers fall to its final branch ``else: c2 = ch[f]`` and are called as ``m(*args)`` with the YAML args
   unchanged, ``n > 1`` as ``nn.Sequential(m(*args) for _ in range(n))``; then ``ch.append(c2)``.
2. While it builds layer ``i``, ``parse_model`` has the locals ``d`` (the model dict), ``ch`` (output channels so
   far), ``f`` (the row's ``from``), ``i``, ``nc``, ``depth``, ``width``, ``max_channels`` and ``c2`` (already
   ``ch[f]``); it scales a ``Conv``'s channel argument as ``make_divisible(min(c2, max_channels) * width, 8)``
   (``tasks.make_divisible``) unless it equals ``nc``, and a repeat count as ``max(round(n * depth), 1)`` if
   ``n > 1``. The class we put into the ``tasks`` namespace under each registered YAML name is a subclass of the
   layer whose ``__new__`` reads those locals from the calling frame and returns the real layer built by its
   channel rule (``yolo_attn.layers.registry``); for ``channels="out"`` it sets the frame's ``c2`` to the layer's
   output channels, so the ``ch.append(c2)`` that follows records them. When it is not called from ``parse_model``
   it is just the layer. Nothing of Ultralytics is replaced for this, so other plugins can coexist.
3. Internal callers look ``parse_model`` up in the ``tasks`` module at call time, so wrapping it there takes effect;
   the wrapper imports a model YAML's ``imports:`` modules (looked for next to the YAML and in the working
   directory when not importable), checks our rows, passes ``repeats=True`` layers a row count of 1 (their
   depth-scaled count goes to the constructor), and explains unknown names.
4. 8.4.67+ restricted loading (``ULTRALYTICS_SAFE_LOAD=1``) only admits ``nn.Module`` subclasses in YAMLs (ours are)
   and loads checkpoints with ``weights_only=True``; every registered class and the inner classes it declares as
   ``pickled`` are added with ``torch.serialization.add_safe_globals``. A safe load never imports a module the
   checkpoint names; ``torch.serialization.get_unsafe_globals_in_checkpoint`` lists them without importing.
5. ``yaml_model_load`` (in ``tasks``; ``engine.model`` imports it by name) turns a config name into a dict. When the
   name is no local file, the resolvers passed to :func:`register` (the shipped and generated configs:
   ``yolo_attn.configs``, ``yolo_attn.names``) may supply it; the scale is kept from the requested name
   (``guess_model_scale``), as for stock configs.
6. Square batches (for layers that declare ``requires_square_input``, e.g. ``FLA(fixed=True)``): training builds
   its val set in ``DetectionTrainer.build_dataset`` with ``rect=mode == "val"``; ``Model.val``/``yolo val`` pass
   ``rect=True``; all datasets come from ``BaseDataset.__init__(..., rect=...)`` (keyword in every checked version).
   The predictor letterboxes in ``BasePredictor.pre_transform`` with ``auto=True`` (minimal, non-square padding)
   for PyTorch models.
7. ``BaseModel.load(weights, verbose)`` pairs checkpoint tensors by name and shape; ``BaseModel.fuse`` folds only
   Ultralytics' own modules; ``tasks.torch_safe_load`` is where checkpoints are unpickled (a missing module there:
   ``ModuleNotFoundError``, which Ultralytics answers by pip-installing a package of that name); a dict
   ``{"model": model, "train_args": {}}`` saved with ``torch.save`` loads in ``YOLO(path)``. The model class of a
   config follows its head (``RTDETRDecoder`` -> ``RTDETRDetectionModel``) else ``guess_model_task``.
8. ``ultralytics.utils.torch_utils.select_device(device, verbose=...)``; ``ultralytics.data.utils`` has
   ``check_det_dataset`` and ``IMG_FORMATS``; a trainer has ``loss_items``, ``tloss``, ``label_loss_items(loss,
   prefix)``, ``epoch``, ``epochs``, ``best``, ``last``, ``save_dir`` (with ``results.csv``, column ``time``);
   ``ultralytics.utils.LOGGER`` is a ``logging.Logger``; a built model computes ``loss(batch)`` outside a trainer
   once ``args = ultralytics.cfg.get_cfg()`` and ``criterion = init_criterion()`` are set; ``ultralytics.cfg.entrypoint``
   (the ``yolo`` command) reads the ``sys.argv`` list (before 8.4 as ``ultralytics.utils.ARGV``, the same object).
9. The installed Ultralytics ships its model YAMLs under ``ultralytics/cfg/models/**``.
10. ``ultralytics.utils.torch_utils.get_flops(model, imgsz)`` (the GFLOPs of its model summary, thop) takes an int
    or ``[H, W]`` and returns GFLOPs, 0 when it cannot profile (:func:`summary_flops`, shown by ``yolo-attn check``).
11. Every export goes through ``ultralytics.engine.exporter.Exporter.__call__(self, model)``, which reads the format
    from ``self.args.format``; wrapping it there refuses a format before anything is written.
12. ``ultralytics.nn.modules.conv`` defines ``ChannelAttention(channels)``, ``SpatialAttention(kernel_size=7)`` and
    ``CBAM(c1, kernel_size=7)``, and none of the three is a name in the ``tasks`` namespace (no YAML reaches them,
    and yolo_attn's ``CBAM`` is not shadowed).
"""

from __future__ import annotations

from .checkpoints import (SAFE_GLOBALS, CheckpointImportError, add_load_aligner, checkpoint_model, load_checkpoint,
                          safe_globals, save_checkpoint)
from .config_files import add_config_resolver, guess_scale, load_config, stock_config_files
from .console import TRACEBACK_ENV
from .exporting import UnsupportedExportError
from .install import register
from .models import build_model, front_end, is_rtdetr, model_class, summary_flops
from .parse import DeclaredImportError, UnknownLayerError
from .patching import log, quiet
from .rows import registered
from .square import square_layers
from .versions import CHECKED_VERSIONS, IntegrationError

__all__ = [
    "register", "registered", "build_model", "model_class", "front_end", "is_rtdetr", "summary_flops",
    "CHECKED_VERSIONS",
    "UnknownLayerError", "IntegrationError", "CheckpointImportError", "DeclaredImportError", "UnsupportedExportError",
    "SAFE_GLOBALS", "safe_globals",
    "add_config_resolver", "add_load_aligner", "square_layers", "load_config", "guess_scale", "stock_config_files",
    "load_checkpoint", "checkpoint_model", "save_checkpoint", "log", "quiet", "TRACEBACK_ENV",
]
