"""Architecture plug-ins: a researcher's own VAE in vaesim's studies.

A spec names ``training.architecture: my_vae:make_vae`` (a module beside the
spec or on the Python path, and a factory in it) or the name of an entry
point of group ``vaesim.architectures``. The factory is called as
``make_vae(num_channels=C, latent_dim=D)`` and returns an ``nn.Module`` with

- ``encode(x) -> (mean, logvar)``: x (B, C, 64, 64) in [0, 1], each (B, D);
- ``decode(z) -> logits`` of the input's shape (B, C, 64, 64);
- ``vaesim_layers``: (module name, role) pairs in network order, roles
  ``encoder``, ``mean``, ``logvar``, ``decoder``, ``output``
  (:mod:`vaesim.models.plugin_table` names them for the study).

vaesim adds the input, the variance ``exp(logvar)`` and the sample
``mean + exp(logvar / 2) * eps`` (:class:`PluginVAE`), so every objective,
the extraction and every finding work on the plug-in as on the built-in VAE.
:func:`check_architecture` tries it before any work: one forward pass on a
small batch, and one line per problem.

Initialisation: ``training.init: glorot`` (the default) re-initialises every
convolution, transposed convolution and dense layer as for the built-in VAE
(Glorot-uniform weights, zero biases; other layers such as BatchNorm keep the
factory's); ``pytorch`` keeps the weights exactly as the factory made them
(a plug-in with its own initialisation uses it). The factory runs after the
run's seed is set, so its own random draws are reproducible.

Plug-in code is imported only by commands that compute (``study plan``,
``study run``, ``train``); commands that read a study use the layer table the
study recorded (``architecture.json``).
"""

from __future__ import annotations

import hashlib
import importlib
import inspect
import logging
from typing import Callable

import torch
from torch import nn

from vaesim.activations.recorder import first_tensor
from vaesim.models.parts import IMAGE_SIZE, Exp, Reparameterize, VAEOutput, initialise
from vaesim.models.plugin_table import (ENTRY_POINT_GROUP, ROLES, ArchitectureTable, register_table,
                                        study_layer_name, with_added_layers)

__all__ = ["PluginVAE", "architecture_problems", "build_plugin_vae", "check_architecture", "load_factory",
           "plugin_table"]

logger = logging.getLogger(__name__)

_ADDED = {"input": "vaesim_input", "encoder.variance": "vaesim_variance", "encoder.sample": "vaesim_sample"}
# attribute names of the wrapper a plug-in's submodule may not have
_RESERVED = ("net", "table", "architecture", "num_channels", "latent_dim", "layer_names", "layer_modules")


class ArchitectureError(ValueError):
    """A plug-in architecture that cannot be used; ``problems`` holds one line each."""

    def __init__(self, name: str, problems: list[str]) -> None:
        self.problems = list(problems)
        super().__init__("\n".join(f"architecture {name!r}: {p}" for p in self.problems))


def load_factory(name: str) -> Callable[..., nn.Module]:
    """The factory of plug-in ``name`` (``module:factory`` or an entry point name); ArchitectureError when it
    cannot be imported. A module beside the spec is found while :func:`vaesim.study.measures.searching`."""
    from vaesim.study.measures import import_plugins

    if ":" in name:
        module_name, _, attr = name.partition(":")
        if not module_name or not attr:
            raise ArchitectureError(name, ["expected 'module:factory' (e.g. my_vae:make_vae)"])
        try:
            import_plugins([module_name], where="")
        except ValueError as error:
            raise ArchitectureError(name, [str(error)]) from None
        module = importlib.import_module(module_name)
        factory = module
        for part in attr.split("."):
            factory = getattr(factory, part, None)
            if factory is None:
                raise ArchitectureError(name, [f"module {module_name!r} ({getattr(module, '__file__', '?')}) has "
                                               f"no attribute {attr!r}; expected the factory function"])
    else:
        from importlib.metadata import entry_points

        points = [p for p in entry_points(group=ENTRY_POINT_GROUP) if p.name == name]
        if not points:
            raise ArchitectureError(name, ["is unknown: not a built-in architecture (conv, fc), not 'module:factory', "
                                           f"and no entry point of group {ENTRY_POINT_GROUP!r} has this name"])
        try:
            factory = points[0].load()
        except Exception as error:  # noqa: BLE001 - any failure of foreign code is one line
            raise ArchitectureError(name, [f"entry point {points[0].value!r} cannot be loaded "
                                           f"({type(error).__name__}: {error})"]) from None
    if not callable(factory):
        raise ArchitectureError(name, [f"{type(factory).__name__} is not callable; expected a factory "
                                       "make_vae(num_channels, latent_dim) -> nn.Module"])
    return factory


def _source(factory) -> tuple[str, str]:
    """(SHA-256 of the source file defining ``factory``, its path)."""
    try:
        path = inspect.getsourcefile(inspect.unwrap(factory)) or inspect.getfile(factory)
        with open(path, "rb") as handle:
            return hashlib.sha256(handle.read()).hexdigest(), str(path)
    except (TypeError, OSError):
        return "unknown", ""


def _declared(net: nn.Module) -> tuple[list[tuple[str, str]], list[str]]:
    """(the (module, role) pairs of ``net.vaesim_layers``, problems)."""
    layers = getattr(net, "vaesim_layers", None)
    if layers is None:
        return [], ["the module has no vaesim_layers; expected a list of (module name, role) pairs, roles "
                    + ", ".join(ROLES)]
    try:
        pairs = [(item[0], item[1]) for item in layers]
        bad = [item for item in layers if len(item) != 2]
    except (TypeError, IndexError, KeyError):
        return [], [f"vaesim_layers is {type(layers).__name__} of {layers!r:.80}; expected a list of "
                    "(module name, role) pairs"]
    problems = [f"vaesim_layers: {item!r} is not a (module name, role) pair" for item in bad]
    modules = dict(net.named_modules())
    seen: dict[str, str] = {}
    for module, role in pairs:
        if not isinstance(module, str) or not isinstance(role, str):
            problems.append(f"vaesim_layers: ({module!r}, {role!r}) must be two strings")
            continue
        if role not in ROLES:
            problems.append(f"vaesim_layers: layer {module!r} has role {role!r}; expected one of {', '.join(ROLES)}")
            continue
        if module not in modules or not module:
            problems.append(f"vaesim_layers: role {role!r} names module {module!r}, which the network does not "
                            f"have; its modules: {', '.join(n for n in list(modules)[1:25] if n)}"
                            + (" ..." if len(modules) > 25 else ""))
            continue
        study = study_layer_name(module, role)
        if study in seen or study in _ADDED:
            problems.append(f"vaesim_layers: {module!r} ({role}) and {seen.get(study, 'vaesim')!r} would both be "
                            f"the study's layer {study!r}; rename one module")
        seen[study] = module
    for role, want in (("encoder", "at least one"), ("mean", "exactly one"), ("logvar", "exactly one"),
                       ("output", "exactly one")):
        count = sum(r == role for _m, r in pairs)
        if (want == "exactly one" and count != 1) or count == 0:
            problems.append(f"vaesim_layers: {count} layer(s) with role {role!r}; expected {want}")
    return pairs, problems


def architecture_problems(factory, name: str, num_channels: int, latent_dim: int, batch: int = 2
                          ) -> tuple[nn.Module | None, list[tuple[str, str]], list[str]]:
    """Build the plug-in and try it: (the module or None, its declared layers, one line per problem)."""
    call = f"{name.partition(':')[2] or name}(num_channels={num_channels}, latent_dim={latent_dim})"
    try:
        net = factory(num_channels=num_channels, latent_dim=latent_dim)
    except Exception as error:  # noqa: BLE001 - any failure of foreign code is one line
        return None, [], [f"{call} raised {type(error).__name__}: {error}"]
    if not isinstance(net, nn.Module):
        return None, [], [f"{call} returned {type(net).__name__}; expected a torch.nn.Module"]
    problems = [f"the module has no {method}(); expected {sig}" for method, sig in
                (("encode", "encode(x) -> (mean, logvar)"), ("decode", "decode(z) -> logits shaped like x"))
                if not callable(getattr(net, method, None))]
    pairs, declared_problems = _declared(net)
    problems += declared_problems
    clash = [n for n, _ in net.named_children() if n in _ADDED.values() or n in _RESERVED
             or hasattr(PluginVAE, n)]
    problems += [f"submodule {n!r} has a name vaesim's wrapper uses; rename it" for n in clash]
    if problems:
        return net, pairs, problems
    modules = dict(net.named_modules())
    fired: dict[str, tuple] = {}

    def hook(name: str):
        def record(_module, _inputs, output) -> None:  # returns None: the output stays the module's
            fired.setdefault(name, tuple(first_tensor(output).shape))
        return record

    handles = [modules[m].register_forward_hook(hook(m)) for m, _ in pairs]
    x = torch.rand(batch, num_channels, IMAGE_SIZE, IMAGE_SIZE, generator=torch.Generator().manual_seed(0))
    was_training = net.training
    try:
        net.eval()
        with torch.no_grad():
            try:
                encoded = net.encode(x)
            except Exception as error:  # noqa: BLE001
                return net, pairs, [f"encode(x) with x {tuple(x.shape)} raised {type(error).__name__}: {error}"]
            if not (isinstance(encoded, (tuple, list)) and len(encoded) == 2
                    and all(torch.is_tensor(t) for t in encoded)):
                what = (f"one tensor {tuple(encoded.shape)}" if torch.is_tensor(encoded)
                        else type(encoded).__name__)
                return net, pairs, [f"encode(x) returned {what}; expected a pair (mean, logvar) of tensors "
                                    f"({batch}, {latent_dim})"]
            for label, tensor in zip(("mean", "logvar"), encoded):
                if tuple(tensor.shape) != (batch, latent_dim):
                    problems.append(f"encode(x) returned {label} of shape {tuple(tensor.shape)}; expected "
                                    f"({batch}, {latent_dim}) for x {tuple(x.shape)}")
            if problems:
                return net, pairs, problems
            try:
                logits = net.decode(encoded[0])
            except Exception as error:  # noqa: BLE001
                return net, pairs, [f"decode(z) with z ({batch}, {latent_dim}) raised {type(error).__name__}: "
                                    f"{error}"]
            if not torch.is_tensor(logits) or tuple(logits.shape) != tuple(x.shape):
                shape = tuple(logits.shape) if torch.is_tensor(logits) else type(logits).__name__
                problems.append(f"decode(z) returned {shape}; expected logits shaped like the input {tuple(x.shape)}")
    finally:
        for handle in handles:
            handle.remove()
        net.train(was_training)
    for module, role in pairs:
        if module not in fired:
            problems.append(f"vaesim_layers: layer {module!r} ({role}) never ran in encode/decode; list only "
                            "modules the forward pass uses")
        elif fired[module][0] != batch:
            problems.append(f"vaesim_layers: layer {module!r} gave an output of shape {fired[module]}; expected "
                            f"the batch ({batch}) first")
        elif role in ("mean", "logvar") and fired[module] != (batch, latent_dim):
            problems.append(f"vaesim_layers: the {role} layer {module!r} gave {fired[module]}; expected "
                            f"({batch}, {latent_dim})")
    return net, pairs, problems


def check_architecture(name: str, num_channels: int, latent_dim: int) -> ArchitectureTable:
    """Import, build and try plug-in ``name``; register and return its layer table. ArchitectureError lists
    every problem, one line each."""
    factory = load_factory(name)
    state = torch.get_rng_state()
    try:
        _net, pairs, problems = architecture_problems(factory, name, num_channels, latent_dim)
    finally:
        torch.set_rng_state(state)  # a check never changes what the run draws next
    if problems:
        raise ArchitectureError(name, problems)
    digest, path = _source(factory)
    table = with_added_layers(name, digest, path, pairs)
    register_table(table)
    return table


def plugin_table(name: str, num_channels: int = 1, latent_dim: int = 10) -> ArchitectureTable:
    """The registered table of ``name``, checking the plug-in first when this process has not."""
    from vaesim.models.plugin_table import known_table

    return known_table(name) or check_architecture(name, num_channels, latent_dim)


class PluginVAE(nn.Module):
    """A plug-in network with vaesim's VAE interface (``forward(x, noise) -> VAEOutput``, ``encode``,
    ``decode``, ``layer_names``, ``layer_modules``, ``config()``).

    The plug-in's own submodules, parameters and buffers are registered on
    this module under their own names, so ``state_dict()`` has exactly the
    plug-in's keys (a checkpoint loads into the researcher's own class, and
    theirs into this one) and a hook on a declared module name records it.
    """

    def __init__(self, net: nn.Module, architecture: str, num_channels: int, latent_dim: int,
                 table: ArchitectureTable) -> None:
        super().__init__()
        object.__setattr__(self, "net", net)  # not a child: its children are ours
        for child, module in net.named_children():
            self.add_module(child, module)
        for pname, parameter in net.named_parameters(recurse=False):
            self.register_parameter(pname, parameter)
        for bname, buffer in net.named_buffers(recurse=False):
            self.register_buffer(bname, buffer, persistent=bname not in net._non_persistent_buffers_set)
        self.vaesim_input = nn.Identity()
        self.vaesim_variance = Exp()
        self.vaesim_sample = Reparameterize()
        self.architecture = architecture
        self.num_channels = num_channels
        self.latent_dim = latent_dim
        self.table = table
        self.layer_names = tuple(table.layer_names())
        #: study layer name -> module name on this model (what a forward hook is put on)
        self.layer_modules = {study: _ADDED.get(study, module) for study, module, _role in table.layers}

    def _apply(self, fn, recurse=True):
        super()._apply(fn, recurse)
        for bname in list(self.net._buffers):  # the plug-in's own top-level buffers follow ours
            self.net._buffers[bname] = self._buffers[bname]
        return self

    def train(self, mode: bool = True) -> "PluginVAE":
        super().train(mode)
        self.net.training = mode
        return self

    def config(self) -> dict:
        """Everything :func:`vaesim.models.build_vae` needs to rebuild this model."""
        return {"architecture": self.architecture, "num_channels": self.num_channels, "latent_dim": self.latent_dim}

    def encode(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """x (B, C, 64, 64) -> (mean, logvar), each (B, latent_dim)."""
        return self.net.encode(self.vaesim_input(x))

    def decode(self, z: torch.Tensor) -> torch.Tensor:
        """z (B, latent_dim) -> logits (B, C, 64, 64)."""
        return self.net.decode(z)

    def forward(self, x: torch.Tensor, noise: torch.Tensor | None = None) -> VAEOutput:
        mean, logvar = self.encode(x)
        self.vaesim_variance(logvar)  # the variance layer, computed for hooks
        sample = self.vaesim_sample(mean, logvar, noise)
        return VAEOutput(self.decode(sample), mean, logvar, sample)


def build_plugin_vae(name: str, num_channels: int, latent_dim: int, *, init: str = "glorot") -> PluginVAE:
    """Build plug-in ``name`` (checked on first use in this process) wrapped as a :class:`PluginVAE`."""
    table = plugin_table(name, num_channels, latent_dim)
    factory = load_factory(name)
    net = factory(num_channels=num_channels, latent_dim=latent_dim)
    return initialise(PluginVAE(net, name, num_channels, latent_dim, table), init)
