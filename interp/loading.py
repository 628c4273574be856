"""Load any Hugging Face model (hub id, local directory, or in-memory module) for reading."""
from __future__ import annotations

import os
import re
import warnings
from pathlib import Path
from dataclasses import dataclass, field
from typing import Any

import torch
from torch import nn

from interp.errors import InterpInputError

ENCODER_ONLY_TYPES = {"bert", "roberta", "distilbert", "electra", "albert", "xlm-roberta", "deberta", "deberta-v2",
                      "camembert", "modernbert"}
FINAL_NORM_NAMES = ("norm", "ln_f", "final_layer_norm", "final_layernorm", "final_norm")
CONTEXT_FIELDS = ("max_position_embeddings", "n_positions", "n_ctx", "seq_length")
HUB_ID = re.compile(r"^[A-Za-z0-9][\w.-]*(/[\w.-]+)?$")


@dataclass
class LoadedModel:
    """A model with its tokenizer and the module handles the readers need."""

    model: nn.Module
    tokenizer: Any
    name: str
    # Per-backend wrappers (nnsight envoy, TransformerLens bridge), built lazily and reused.
    backend_state: dict = field(default_factory=dict, repr=False, compare=False)

    @property
    def config(self):
        return self.model.config

    @property
    def n_layers(self) -> int:
        return len(self.blocks)

    @property
    def d_model(self) -> int:
        cfg = self.config
        return getattr(cfg, "hidden_size", None) or getattr(cfg, "n_embd", None) or cfg.d_model

    @property
    def max_context(self) -> int | None:
        """Longest input in tokens the model's position scheme allows (None if unbounded)."""
        for name in CONTEXT_FIELDS:
            value = getattr(self.config, name, None)
            if isinstance(value, int) and value > 0:
                return value
        return None

    @property
    def base_model(self) -> nn.Module:
        """The transformer without its LM head: residual reads never need the logits."""
        return getattr(self.model, "base_model", self.model)

    @property
    def device(self) -> torch.device:
        """Where inputs go: the input embedding's device (blocks may live elsewhere with a ``device_map``)."""
        return self.model.get_input_embeddings().weight.device

    @property
    def devices(self) -> set[torch.device]:
        """Every device holding a parameter (more than one when split with a ``device_map``)."""
        return {p.device for p in self.model.parameters()}

    @property
    def is_encoder_only(self) -> bool:
        return self.config.model_type in ENCODER_ONLY_TYPES

    def _memo(self, name: str, compute):
        """Module lookups walk the whole model, so keep them until ``.model`` is replaced."""
        cached = self.backend_state.get(name)
        if cached is None or cached[0] is not self.model:
            cached = self.backend_state[name] = (self.model, compute())
        return cached[1]

    @property
    def blocks(self) -> nn.ModuleList:
        return self._memo("blocks", lambda: find_blocks(self.model))

    @property
    def final_norm(self) -> nn.Module | None:
        """The norm applied after the last block, which HF folds into the last hidden state."""
        return self._memo("final_norm", self._find_final_norm)

    def _find_final_norm(self) -> nn.Module | None:
        if self.is_encoder_only:
            return None
        parent = _parent_of(self.model, self.blocks)
        for name in FINAL_NORM_NAMES:
            if isinstance(getattr(parent, name, None), nn.Module):
                return getattr(parent, name)
        return None


def find_blocks(model: nn.Module) -> nn.ModuleList:
    """The ModuleList of transformer blocks (the one with ``num_hidden_layers`` entries)."""
    n = getattr(model.config, "num_hidden_layers", None) or getattr(model.config, "n_layer", None)
    lists = [m for m in model.modules() if isinstance(m, nn.ModuleList) and len(m) == n]
    if not lists:
        raise InterpInputError(f"cannot find the {n} transformer blocks of {type(model).__name__}")
    return lists[0]


def _parent_of(model: nn.Module, child: nn.Module) -> nn.Module:
    for module in model.modules():
        if any(c is child for c in module.children()):
            return module
    return model


def _looks_like_path(name: str) -> bool:
    """Hub ids are ``name`` or ``org/name``; anything else that names a path is a path."""
    return name.startswith((".", "/", "~")) or name.count("/") >= 2 or os.path.exists(name)


def _load_config(path: str, name: str, trust_remote_code: bool):
    """Config from a directory or the local hub cache first; the network only if allowed."""
    from huggingface_hub import constants
    from transformers import AutoConfig

    try:
        return AutoConfig.from_pretrained(path, trust_remote_code=trust_remote_code, local_files_only=True)
    except (OSError, ValueError) as exc:
        if "trust_remote_code" in str(exc):
            raise InterpInputError(f"model {name!r} needs custom code from its repository; it is not run unless "
                                   "you pass trust_remote_code as True (only for code you trust)") from exc
        if os.path.isdir(path) and (Path(path) / "config.json").is_file():
            raise InterpInputError(f"cannot load model {name!r}: its config.json is not one transformers can read "
                                   f"({str(exc).splitlines()[0][:200]})") from exc
        if os.path.isdir(path) or constants.HF_HUB_OFFLINE:
            raise InterpInputError(f"cannot load model {name!r}: no config.json in a local directory or in the "
                                   f"offline hub cache ({type(exc).__name__})") from exc
    try:
        return AutoConfig.from_pretrained(path, trust_remote_code=trust_remote_code)
    except (OSError, ValueError) as exc:
        raise InterpInputError(f"cannot load model {name!r}: not a local model directory and not reachable "
                               f"as a hub id ({type(exc).__name__})") from exc


def _load_tokenizer(path: str, trust_remote_code: bool):
    from transformers import AutoTokenizer

    try:
        return AutoTokenizer.from_pretrained(path, trust_remote_code=trust_remote_code)
    except (OSError, ValueError, TypeError) as exc:
        raise InterpInputError(f"cannot load a tokenizer from {path!r}: {str(exc).splitlines()[0]}") from exc


def check_device(device) -> torch.device:
    try:
        device = torch.device(device)
    except (RuntimeError, TypeError) as exc:
        raise InterpInputError(f"unknown device {device!r}; expected e.g. 'cpu', 'cuda' or 'cuda:1'") from exc
    if device.type == "cuda" and not torch.cuda.is_available():
        raise InterpInputError(f"device {str(device)!r} requested but CUDA is not available here")
    return device


def _resolve(name: str, trust_remote_code: bool):
    """(path or hub id, HF config) of a model name, with one-line errors for bad names."""
    if _looks_like_path(name) and not os.path.isdir(os.path.expanduser(name)):
        if os.path.exists(os.path.expanduser(name)):
            raise InterpInputError(f"model path {name!r} is a file; expected a directory saved with save_pretrained")
        raise InterpInputError(f"model path {name!r} does not exist; expected a directory saved with save_pretrained")
    is_dir = os.path.isdir(os.path.expanduser(name))
    if not is_dir and not HUB_ID.match(name):
        raise InterpInputError(f"model {name!r} is neither a local directory nor a valid hub id like 'org/name'")
    path = os.path.expanduser(name) if is_dir else name
    return path, _load_config(path, name, trust_remote_code)


ADAPTER_CONFIG = "adapter_config.json"


def adapter_base(path: str | os.PathLike) -> str | None:
    """The base model of a peft adapter directory (``adapter_config.json`` without a
    ``config.json``): its ``base_model_name_or_path``, a path taken relative to the adapter
    directory when it does not exist as given. None for anything else."""
    directory = Path(os.path.expanduser(str(path)))
    if not (directory / ADAPTER_CONFIG).is_file() or (directory / "config.json").is_file():
        return None
    import json

    try:
        base = json.loads((directory / ADAPTER_CONFIG).read_text()).get("base_model_name_or_path")
    except (ValueError, UnicodeDecodeError, AttributeError) as exc:
        raise InterpInputError(f"cannot load adapter {str(path)!r}: {ADAPTER_CONFIG} is not a JSON object "
                               f"({type(exc).__name__})") from exc
    if not isinstance(base, str) or not base:
        raise InterpInputError(f"cannot load adapter {str(path)!r}: {ADAPTER_CONFIG} names no base model "
                               "(expected base_model_name_or_path)")
    if not os.path.exists(os.path.expanduser(base)) and (directory / base).exists():
        base = str(directory / base)
    return base


def _has_tokenizer(directory: str) -> bool:
    return any((Path(directory) / name).is_file() for name in ("tokenizer.json", "tokenizer_config.json"))


def model_config(name_or_path, *, trust_remote_code: bool = False):
    """The HF config of a hub id or local directory, without loading weights: a cheap check
    that the name is usable (same errors as :func:`load_model`)."""
    return _resolve(str(name_or_path), trust_remote_code)[1]


def load_model(name_or_path, *, device=None, dtype=None, tokenizer=None, trust_remote_code: bool = False,
               device_map=None) -> LoadedModel:
    """Load a model for reading activations.

    ``name_or_path`` is a hub id, a local directory saved with ``save_pretrained``, a peft
    adapter directory (``adapter_config.json``: the base model it names is loaded, the adapter
    attached and merged into its weights in memory; the tokenizer comes from the adapter
    directory if saved there, else from the base), or an
    already-built HF ``PreTrainedModel`` (then pass ``tokenizer``, an object or a directory). Encoder-only models
    (BERT family) load as masked LMs, everything else as causal LMs. Models load in eval
    mode; ``dtype`` is a torch dtype or its name ("float32", "bfloat16"). ``device_map`` (instead of
    ``device``) is passed to ``from_pretrained`` to split a model too large for one GPU over
    several, e.g. "auto" or ``{"model.layers.0": 0, ...}`` (needs accelerate); residuals then
    read each block on its own device and gather the results on the embedding's device.
    """
    from transformers import AutoModelForCausalLM, AutoModelForMaskedLM

    if isinstance(dtype, str):
        if not isinstance(getattr(torch, dtype, None), torch.dtype):
            raise InterpInputError(f"unknown dtype {dtype!r}; expected e.g. 'float32' or 'bfloat16'")
        dtype = getattr(torch, dtype)
    if device_map is not None and device is not None:
        raise InterpInputError(f"pass either device ({device!r}) or device_map ({device_map!r}), not both")
    if isinstance(name_or_path, nn.Module):
        model, name = name_or_path, type(name_or_path).__name__
        if tokenizer is None:
            raise InterpInputError("an in-memory model needs tokenizer=...")
        if device_map is not None:
            raise InterpInputError("device_map needs a hub id or a local directory; an in-memory model is already "
                                   "placed (move it yourself or pass device=...)")
    elif adapter_base(name_or_path) is not None:
        return _load_adapter(str(name_or_path), dtype=dtype, device=device, tokenizer=tokenizer,
                             trust_remote_code=trust_remote_code, device_map=device_map)
    else:
        name = str(name_or_path)
        path, config = _resolve(name, trust_remote_code)
        auto = AutoModelForMaskedLM if config.model_type in ENCODER_ONLY_TYPES else AutoModelForCausalLM
        try:
            placed = {} if device_map is None else {"device_map": device_map}
            model = auto.from_pretrained(path, dtype=dtype, trust_remote_code=trust_remote_code, **placed)
        except OSError as exc:
            raise InterpInputError(f"cannot load the weights of model {name!r}: {str(exc).splitlines()[0]}") from exc
        except Exception as exc:
            if type(exc).__name__ != "SafetensorError":
                if device_map is None:
                    raise
                raise InterpInputError(f"cannot place model {name!r} with device_map {device_map!r}: "
                                       f"{str(exc).splitlines()[0] if str(exc) else type(exc).__name__}") from exc
            raise InterpInputError(f"cannot load the weights of model {name!r}: a .safetensors file is truncated or "
                                   f"corrupt ({str(exc).splitlines()[0]}); expected complete weights") from exc
        if tokenizer is None:
            tokenizer = path
    if isinstance(tokenizer, (str, os.PathLike)):
        tokenizer = _load_tokenizer(str(tokenizer), trust_remote_code)
    if dtype is not None and device_map is None:  # a device_map load has its dtype already
        model = model.to(dtype)
    if device is not None:
        model = model.to(check_device(device))
    model.eval()
    if tokenizer.pad_token is None:
        fallback = tokenizer.eos_token or tokenizer.unk_token
        if fallback is None:
            raise InterpInputError(f"tokenizer of {name!r} has no pad, eos or unk token to pad batches with")
        tokenizer.pad_token = fallback
    if len(tokenizer) > model.get_input_embeddings().num_embeddings:
        raise InterpInputError(f"tokenizer of {name!r} has {len(tokenizer)} tokens but the model only "
                               f"{model.get_input_embeddings().num_embeddings} embeddings: they do not match")
    return LoadedModel(model=model, tokenizer=tokenizer, name=name)


def _load_adapter(path: str, *, dtype, device, tokenizer, trust_remote_code: bool, device_map) -> LoadedModel:
    """A peft adapter directory: its base model with the adapter merged in (see :func:`load_model`)."""
    from peft import PeftModel

    base = adapter_base(path)
    if tokenizer is None and _has_tokenizer(os.path.expanduser(path)):
        tokenizer = os.path.expanduser(path)
    try:
        lm = load_model(base, dtype=dtype, device=device, tokenizer=tokenizer, trust_remote_code=trust_remote_code,
                        device_map=device_map)
    except InterpInputError as exc:
        raise InterpInputError(f"cannot load the base model of adapter {path!r} ({ADAPTER_CONFIG} names {base!r}): "
                               f"{exc}") from exc
    try:
        with warnings.catch_warnings():  # peft reads a property transformers 5 deprecates, on every load
            warnings.filterwarnings("ignore", message=".*is_gradient_checkpointing.*", category=FutureWarning)
            model = PeftModel.from_pretrained(lm.model, os.path.expanduser(path)).merge_and_unload()
    except (OSError, ValueError, KeyError, RuntimeError) as exc:
        raise InterpInputError(f"cannot attach adapter {path!r} to its base model {base!r}: "
                               f"{str(exc).splitlines()[0] if str(exc) else type(exc).__name__}") from exc
    model.eval()
    return LoadedModel(model=model, tokenizer=lm.tokenizer, name=path)
