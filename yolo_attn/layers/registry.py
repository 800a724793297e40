"""The layer registry: every layer — the shipped ones and the user's own — declares itself here, once.

A layer file declares its YAML name, aliases, channel rule, per-map default arguments, the inner classes its
checkpoints pickle, its reference formulation, attention maps and test declarations with :func:`register_module`,
next to the class. Everything that lists layers reads :data:`REGISTRY`: registration into Ultralytics and torch's
safe globals (``yolo_attn.adapter``), ``yolo-attn layers``, ``insert`` defaults, ``check``, ``show``, ``bench``, the
demo, the README tables and the tests' parametrisation.

This module is plain Python and PyTorch; it knows nothing about Ultralytics. The Ultralytics adapter subscribes with
:func:`subscribe` and installs each spec as it is registered, before or after Ultralytics is imported.

Channel rules (how a model YAML row ``[from, n, Name, [args...]]`` becomes a constructor call):

* ``channels="same"``: ``Name(c1, *args)`` with ``c1 = ch[from]``; output channels = ``c1``.
* ``channels="out"``: ``Name(c1, c2, *args[1:])`` where ``args[0]`` is the output channel count written as
  Ultralytics writes it for ``Conv``/``C2f`` (scaled by the width multiple, capped by max_channels, rounded up to a
  multiple of 8); output channels = ``c2``.
* ``repeats=True``: the row's repeat count ``n`` (depth-scaled as for ``C2f``) is passed as the argument after ``c2``
  (after ``c1`` for ``channels="same"``) and the module is built once instead of ``n`` times.

Examples:
    >>> import torch
    >>> from torch import nn
    >>> @register_module(channels="out", repeats=True)
    ... class MyBlock(nn.Module):
    ...     def __init__(self, c1: int, c2: int, n: int = 1, k: int = 3):
    ...         super().__init__()
    ...         self.m = nn.Sequential(*(nn.Conv2d(c1 if i == 0 else c2, c2, k, padding=k // 2) for i in range(n)))
    ...     def forward(self, x):
    ...         return self.m(x)
    >>> REGISTRY["MyBlock"].args
    ('k',)
    >>> unregister("MyBlock")
"""

from __future__ import annotations

import difflib
import importlib
import inspect
import os
import sys
import threading
import warnings
from dataclasses import dataclass, field
from typing import Any, Callable, Iterable, Mapping, Sequence

from torch import nn

__all__ = [
    "LayerSpec", "LayerTests", "OfficialName", "OfficialResidual", "REGISTRY", "load_weights", "register_module",
    "unregister",
    "subscribe", "lookup", "find", "suggest", "builtin_specs", "discover", "CHANNEL_RULES", "IMPORTS_ENV",
    "ENTRY_POINT_GROUP",
]

CHANNEL_RULES = ("same", "out")
IMPORTS_ENV = "YOLO_ATTN_IMPORTS"
"""Environment variable: comma-separated modules to import (they register layers) wherever Ultralytics is used."""
ENTRY_POINT_GROUP = "yolo_attn.modules"
"""Entry-point group through which installed packages declare modules that register layers."""


@dataclass(frozen=True)
class OfficialName:
    """A YAML name that takes the official constructor's arguments (``FocusedLinearAttention(dim, window_size, ...)``).

    Attributes:
        params: the official constructor's parameter names, ``dim`` first (``dim`` is replaced by the input channels,
            as the tutorials' ``parse_model`` edits do with ``args = [ch[f], *args[1:]]``).
        to_ours: maps ``{official name: value}`` (only what the row gave, ``dim`` excluded) to our keyword arguments;
            raises :class:`LayerArgumentError` naming an official argument ours cannot honour.
    """

    params: tuple[str, ...]
    to_ours: Callable[[dict], dict]


class OfficialResidual(nn.Module):
    """``x + official(x)``, B×C×H×W in and out: an official (or reference) token mixer inside our residual, with
    ``weights``' state loaded into it (``strict=True``: same keys and shapes) — what a residual layer's
    ``official_module`` and ``reference`` return. Its parameter names are the layer's (``attn.…``).

    Args:
        official: the official module (or the layer file's reference restatement of it), freshly built.
        weights: our module that mirrors it (e.g. ``layer.attn``), whose state it gets.
        tokens: the official module takes and returns tokens (B, H·W, C) rather than maps.
    """

    def __init__(self, official: nn.Module, weights: nn.Module, tokens: bool = False):
        super().__init__()
        self.attn, self.tokens = load_weights(official, weights), tokens
        self.train(weights.training)

    def forward(self, x):
        if not self.tokens:
            return x + self.attn(x)
        B, C, H, W = x.shape
        return x + self.attn(x.flatten(2).transpose(1, 2)).transpose(1, 2).reshape(B, C, H, W)


def load_weights(module: nn.Module, weights: nn.Module) -> nn.Module:
    """``module`` moved to ``weights``' device and floating dtype, put in its train/eval mode, and given its state
    with ``strict=True`` (the same keys and shapes): how a reference or official module gets a layer's weights."""
    tensor = next((t for t in (*weights.parameters(), *weights.buffers()) if t.is_floating_point()), None)
    if tensor is not None:
        module.to(device=tensor.device, dtype=tensor.dtype)
    module.load_state_dict(weights.state_dict(), strict=True)
    return module.train(weights.training)


@dataclass(frozen=True)
class LayerTests:
    """What the package's per-layer tests need to know about a layer, declared in its file next to it.

    Every field has a default that suits a layer registered without it (a user's module); the shipped layers declare
    theirs. The tests (``tests/``) are parametrised over the registry and read these.

    Attributes:
        small: a small instance with 16 input channels (unit tests); None: ``cls(16, *default_args(8))``.
        sizes: map sizes (H, W) at which the fast path is compared with the reference (outputs and gradients, eval
            and train mode).
        trace: (size traced at, sizes the trace must reproduce eager at): ``torch.jit.trace`` (every export).
        int_args: valid integer constructor arguments (``c1`` included); each is checked to be refused, naming
            the layer and the argument, when not a positive integer. None declared: none checked (a user's module
            need not validate its arguments; the shipped layers declare every integer argument).
        bad_args: further ``(constructor kwargs, argument the error must name)`` that must be refused.
        folds: how many BatchNorms/affines ``fuse_layers`` folds in ``small()``; None: one per ``ConvBN``.
        scale_robust: half precision stays close to fp32 on inputs ×100 too; False where the math is ill-conditioned
            there (a softmax of unnormalised inputs saturates): only finite outputs are required then.
        flips: for a layer that makes a discrete choice rounding can flip (top-k routing): the largest fraction of
            output positions that may differ from fp32 beyond the half-precision tolerance (each flipped choice
            changes the positions that depend on it); 0: none (every position within tolerance).
    """

    small: Callable[[], nn.Module] | None = None
    sizes: tuple[tuple[int, int], ...] = ((9, 13), (1, 1))
    trace: tuple[tuple[int, int], tuple[tuple[int, int], ...]] = ((20, 20), ((16, 24), (1, 1), (3, 50)))
    int_args: Mapping[str, int] = field(default_factory=dict)
    bad_args: tuple[tuple[Mapping[str, Any], str], ...] = ()
    folds: int | None = None
    scale_robust: bool = True
    flips: float = 0.0


@dataclass(frozen=True)
class LayerSpec:
    """Everything the package knows about one registered layer (see the module docstring for the channel rules).

    Attributes:
        name: the YAML name (``"LSKA"``).
        cls: the module class; built as ``cls(c1, ...)`` per the channel rule.
        channels: ``"same"`` or ``"out"``.
        repeats: the row's repeat count is an argument (built once), as for ``C2f``.
        aliases: other YAML names taking the same arguments.
        official: YAML names taking an official constructor's arguments, mapped onto ours.
        defaults: per-map default YAML args: ``defaults(grid)`` for a map of side ``grid`` at the usual input size
            (None: unknown), e.g. LSKA's kernel that covers the map. None: the constructor's own defaults.
        pickled: further classes its checkpoints pickle (inner modules), made torch safe globals with ``cls``.
        plausible: ``plausible(c1, kwargs)`` returns the reason a YAML row's arguments are implausible (heads
            narrower than 4 channels ...) or None; checked when a model is parsed, not for direct Python calls.
        official_code: the official implementation it matches (README table).
        paper: the paper (README table).
        summary: one line on what it is (README table).
        reference: ``reference(layer)``: the layer's reference formulation with ``layer``'s weights (``strict=True``),
            a module B×C×H×W in and out whose parameters have the layer's names: the paper's math written plainly
            in the official module's structure (its attribute names, so official checkpoints load), at every map
            size the layer accepts. The fast path is compared against it (tests, ``yolo-attn bench``); ``yolo-attn
            show`` draws its attention maps. ``layer`` is unfused. None: no reference (a user's module).
        textbook_bytes: ``textbook_bytes(c, side, batch, train)``: memory of the reference's token×token
            matrices (bench skips the reference row when too large); None when it has none.
        official_module: ``official_module(ns, layer)``: the official implementation of ``layer`` — built from the
            official classes in the namespace ``ns`` (a module defining them under their official names, e.g. a
            file importing them from the official repository) with ``layer``'s weights loaded with ``strict=True`` — as a module that takes and
            returns B×C×H×W like ``layer`` (our residual included). ``layer`` is unfused. ``yolo-attn bench
            --official FILE`` times it as the *official* variant; None: no official counterpart.
        maps_caption: what the layer's ``attention_maps(x, cells)`` method draws (``yolo-attn show``): given its
            input (1, C, H, W) and query cells (row, column), it returns one H×W map per cell. An instance whose
            configuration has no spatial map (``CBAM(no_spatial=True)``) has ``has_maps == False``: not drawn.
        maps_per_query: False for a layer whose attention does not depend on a query (a gate): its
            ``attention_maps`` returns a single map.
        unsupported_formats: export formats (Ultralytics' ``format=`` names) whose runtime cannot run the layer,
            each mapped to the reason naming the operator (``{"ncnn": "torch.topk (...)"}``): exporting a model
            that holds the layer to such a format is refused with that reason before anything is written.
        tests: the per-layer tests' declarations (:class:`LayerTests`).
        order: position among the registered layers (``yolo-attn layers``, tables, error messages): ascending;
            layers without one follow in registration order.
        builtin: shipped with yolo_attn.
    """

    name: str
    cls: type
    channels: str = "same"
    repeats: bool = False
    aliases: tuple[str, ...] = ()
    official: Mapping[str, OfficialName] = field(default_factory=dict)
    defaults: Callable[[int | None], list] | None = None
    pickled: tuple[type, ...] = ()
    plausible: Callable[[int, dict], str | None] | None = None
    official_code: str = ""
    paper: str = ""
    summary: str = ""
    reference: Callable[[nn.Module], nn.Module] | None = None
    textbook_bytes: Callable[[int, int, int, bool], int] | None = None
    official_module: Callable[[Any, nn.Module], nn.Module] | None = None
    maps_caption: str = ""
    maps_per_query: bool = True
    unsupported_formats: Mapping[str, str] = field(default_factory=dict)
    tests: LayerTests = field(default_factory=LayerTests)
    order: float = float("inf")
    builtin: bool = False

    @property
    def fixed_params(self) -> int:
        """How many leading constructor parameters the channel rule fills (c1; c2; n)."""
        return 1 + (self.channels == "out") + bool(self.repeats)

    @property
    def params(self) -> list[inspect.Parameter]:
        """The constructor parameters a YAML row writes (after those the channel rule fills)."""
        return list(inspect.signature(self.cls).parameters.values())[self.fixed_params:]

    @property
    def args(self) -> tuple[str, ...]:
        """Names of the YAML arguments (for ``channels="out"``, ``c2`` is the first YAML argument, not listed)."""
        return tuple(p.name for p in self.params if p.kind in (p.POSITIONAL_ONLY, p.POSITIONAL_OR_KEYWORD))

    @property
    def names(self) -> tuple[str, ...]:
        """The YAML name, its aliases and its official names."""
        return (self.name, *self.aliases, *self.official)

    @property
    def safe_globals(self) -> tuple[type, ...]:
        return (self.cls, *self.pickled)

    def default_args(self, grid: int | None = None) -> list:
        """YAML args for a map of side ``grid`` (None: no map known); ``[]`` means the constructor's defaults."""
        return list(self.defaults(grid)) if self.defaults is not None else []

    def small(self) -> nn.Module:
        """A small instance with 16 input channels (``tests.small``, else the per-map defaults of an 8×8 map)."""
        return self.tests.small() if self.tests.small is not None else self.cls(16, *self.default_args(8))


REGISTRY: dict[str, LayerSpec] = {}
"""YAML name -> spec, by declared ``order`` (the shipped layers first), then registration order."""

_names: dict[str, str] = {}  # every YAML name (name, aliases, official names) -> spec name
_listeners: list[Callable[[LayerSpec], None]] = []
_lock = threading.RLock()


def _check_name(name: Any, what: str) -> str:
    if not isinstance(name, str) or not name.isidentifier():
        raise ValueError(f"register_module: {what} must be a Python identifier (as written in a model YAML), "
                         f"got {name!r}.")
    return name


def _same_class(a: type, b: type) -> bool:
    """The same class, or the same class re-defined (a module reloaded, a notebook cell run again)."""
    return a is b or (a.__module__, a.__qualname__) == (b.__module__, b.__qualname__)


def register_module(cls: type | None = None, *, name: str | None = None, channels: str = "same",
                    repeats: bool = False, aliases: Iterable[str] = (), **declared: Any):
    """Register an ``nn.Module`` subclass as a layer name for Ultralytics model YAMLs; usable as a decorator.

    ``@register_module`` or ``@register_module(channels="out", repeats=True)``. The class's constructor takes the
    input channels first. Registering makes the name (and ``aliases``) resolvable by Ultralytics' ``parse_model``
    (now, or as soon as Ultralytics is imported), the class a torch safe global (``ULTRALYTICS_SAFE_LOAD=1``), and the
    layer visible to ``yolo-attn layers``/``insert``/``check``. A name Ultralytics itself defines is never shadowed.

    Args:
        cls: the class (when used without parentheses).
        name: YAML name; default ``cls.__name__``.
        channels: ``"same"`` (output channels = input channels) or ``"out"`` (first YAML arg = output channels,
            scaled like Ultralytics' ``Conv``).
        repeats: pass the row's depth-scaled repeat count as the argument after ``c2`` and build once.
        aliases: further YAML names with the same arguments.
        **declared: further :class:`LayerSpec` fields (``pickled=(Inner,)``, ``defaults=``, ``plausible=``,
            ``official=``, ``official_code=``, ``paper=``, ``summary=``, ``reference=``, ``textbook_bytes=``,
            ``official_module=``, ``maps_caption=``, ``maps_per_query=``, ``unsupported_formats=``, ``tests=``,
            ``order=``, ``builtin=``).

    Returns:
        ``cls`` unchanged (so the decorator leaves the class as it was).
    """
    if cls is None:
        return lambda c: register_module(c, name=name, channels=channels, repeats=repeats, aliases=aliases,
                                         **declared)
    if not (isinstance(cls, type) and issubclass(cls, nn.Module)):
        raise TypeError(f"register_module: {cls!r} is not an nn.Module subclass.")
    if channels not in CHANNEL_RULES:
        raise ValueError(f"register_module({cls.__name__}): channels must be one of {CHANNEL_RULES}, got {channels!r}.")
    unknown = set(declared) - {f for f in LayerSpec.__dataclass_fields__} - {"name", "cls", "channels", "repeats",
                                                                             "aliases"}
    if unknown:
        raise TypeError(f"register_module({cls.__name__}): unknown option(s) {', '.join(sorted(unknown))}.")
    spec = LayerSpec(name=_check_name(name or cls.__name__, "name"), cls=cls, channels=channels,
                     repeats=bool(repeats), aliases=tuple(_check_name(a, "an alias") for a in aliases), **declared)
    n_fixed = spec.fixed_params
    params = list(inspect.signature(cls).parameters.values())
    positional = [p for p in params if p.kind in (p.POSITIONAL_ONLY, p.POSITIONAL_OR_KEYWORD)]
    if len(positional) < n_fixed and not any(p.kind is p.VAR_POSITIONAL for p in params):
        need = ", ".join(["c1", "c2", "n"][:1 + (channels == "out")] + (["n"] if repeats else []))
        raise TypeError(f"register_module({spec.name}): the constructor must take ({need}, ...) first for "
                        f"channels={channels!r}, repeats={repeats}; it takes ({', '.join(p.name for p in params)}).")
    with _lock:
        for yaml_name in spec.names:
            owner = _names.get(yaml_name)
            if owner is not None and not _same_class(REGISTRY[owner].cls, cls):
                raise ValueError(f"register_module: the YAML name '{yaml_name}' is already registered by "
                                 f"{REGISTRY[owner].cls.__module__}.{REGISTRY[owner].cls.__qualname__}; pass "
                                 f"name=... to register {cls.__qualname__} under another name.")
        old = REGISTRY.get(spec.name)
        if old is not None:
            for yaml_name in old.names:
                _names.pop(yaml_name, None)
        REGISTRY[spec.name] = spec
        ordered = sorted(REGISTRY.values(), key=lambda s: s.order)  # stable: registration order among equals
        REGISTRY.clear()
        REGISTRY.update((s.name, s) for s in ordered)
        for yaml_name in spec.names:
            _names[yaml_name] = spec.name
        listeners = list(_listeners)
    for listener in listeners:
        listener(spec)
    return cls


def unregister(name: str) -> None:
    """Remove a registered layer from the registry (the Ultralytics entry stays until the process ends)."""
    with _lock:
        spec = REGISTRY.pop(name)
        for yaml_name in spec.names:
            _names.pop(yaml_name, None)


def subscribe(listener: Callable[[LayerSpec], None]) -> None:
    """Call ``listener(spec)`` for every spec registered so far and every one registered later."""
    with _lock:
        if listener in _listeners:
            return
        _listeners.append(listener)
        specs = list(REGISTRY.values())
    for spec in specs:
        listener(spec)


def lookup(yaml_name: str) -> LayerSpec | None:
    """The spec a YAML name (name, alias or official name) stands for, or None."""
    owner = _names.get(yaml_name)
    return REGISTRY.get(owner) if owner else None


def suggest(yaml_name: str, extra: Sequence[str] = ()) -> list[str]:
    """Registered YAML names (and ``extra`` names) close to ``yaml_name``, best first (case-insensitive)."""
    pool = {n.lower(): n for n in (*_names, *extra)}
    hits = difflib.get_close_matches(yaml_name.lower(), list(pool), n=3, cutoff=0.6)
    return [pool[h] for h in hits]


def find(name: str) -> LayerSpec:
    """The spec ``name`` stands for, as a tool's argument (``--layer lska``): a YAML name, alias or official name,
    in any case. Raises ``ValueError`` naming the closest registered names."""
    spec = lookup(name) or next((REGISTRY[owner] for n, owner in _names.items() if n.lower() == str(name).lower()),
                                None)
    if spec is None:
        hint = suggest(str(name))
        raise ValueError(f"'{name}' is not a registered layer" + (f" (did you mean {' or '.join(hint)}?)" if hint
                         else "") + f"; registered: {', '.join(REGISTRY)}")
    return spec


def builtin_specs() -> dict[str, LayerSpec]:
    """The layers shipped with yolo_attn, by name."""
    return {k: s for k, s in REGISTRY.items() if s.builtin}


_discovered: set[str] = set()


def discover() -> list[str]:
    """Import the modules named in ``YOLO_ATTN_IMPORTS`` and the ``yolo_attn.modules`` entry points (each registers
    its layers as it is imported). Idempotent; returns what was imported now.

    Runs when yolo_attn registers with Ultralytics, so the plain ``yolo`` command, DDP workers and fresh processes
    loading a checkpoint find the user's layers (and make them safe globals) with no import in the user's script.
    A module that fails to import is reported with a warning naming it and does not stop the others.
    """
    wanted = [(name.strip(), f"{IMPORTS_ENV}") for name in os.environ.get(IMPORTS_ENV, "").split(",") if name.strip()]
    try:
        from importlib.metadata import entry_points

        eps = entry_points(group=ENTRY_POINT_GROUP) if sys.version_info >= (3, 10) else \
            entry_points().get(ENTRY_POINT_GROUP, [])
        wanted += [(ep.value.split(":")[0].strip(), f"entry point {ep.name!r} ({ENTRY_POINT_GROUP})") for ep in eps]
    except Exception as e:  # broken metadata of some installed distribution
        warnings.warn(f"yolo_attn: could not read the {ENTRY_POINT_GROUP} entry points: {e!r}", RuntimeWarning,
                      stacklevel=2)
    done = []
    for module, source in wanted:
        if module in _discovered:
            continue
        _discovered.add(module)
        try:
            importlib.import_module(module)
            done.append(module)
        except Exception as e:
            warnings.warn(f"yolo_attn: could not import '{module}' (from {source}): {e!r}; its layers are not "
                          "registered.", RuntimeWarning, stacklevel=2)
    return done
