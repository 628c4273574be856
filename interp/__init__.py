"""Model access: load any HF model, read its residual stream at every layer (hooks, nnsight or
TransformerLens), score continuations and tokens by log-probability, generate short greedy
answers or sample long ones, cache activations on disk, intervene along directions and patch
activations across models."""
from interp.cache import ActivationCache
from interp.errors import InterpInputError
from interp.generation import generate, sample
from interp.interventions import (AddDirection, Patch, ProjectOut, Steer, logits_under, logprobs_under,
                                  residuals_under)
from interp.loading import LoadedModel, load_model
from interp.logprobs import TokenLogprobs, continuation_logprobs, token_logprobs
from interp.positions import CharRange, Indices, Last, Mean, Span
from interp.residuals import residuals

__all__ = ["ActivationCache", "AddDirection", "CharRange", "Indices", "InterpInputError", "Last", "LoadedModel",
           "Mean", "Patch", "ProjectOut", "Span", "Steer", "TokenLogprobs", "continuation_logprobs", "generate", "load_model",
           "logits_under", "logprobs_under", "residuals", "residuals_under", "sample", "token_logprobs"]
