"""Every method by name, with the settings that make each variant.

A name maps to a class, its config dataclass and the defaults that distinguish
the variant; a spec's per-method settings are laid over those defaults.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import Any

from algorithms.best_of_n import BestOfN, BestOfNConfig
from algorithms.ddpo import DDPO, DDPOConfig
from algorithms.direct_backprop import DirectBackprop
from algorithms.genetic import Genetic, GeneticConfig
from algorithms.guidance import Guidance, GuidanceConfig
from algorithms.large_scale_rl import LargeScaleRL, LargeScaleRLConfig
from algorithms.method import Context, Method
from algorithms.non_adaptive import NonAdaptive
from algorithms.rwr import RWR, RWRConfig
from algorithms.seiko import Seiko, SeikoConfig
from domains.base import UnknownName

_ONE_MODEL = {"ensemble_size": 1, "bootstrap": False}  # UCB and Greedy: one network on all data (SEIKO Sec. 4.1)


@dataclass(frozen=True)
class MethodEntry:
    cls: type
    config_cls: type
    summary: str
    defaults: dict[str, Any] = field(default_factory=dict)


METHODS: dict[str, MethodEntry] = {
    "seiko-ucb": MethodEntry(Seiko, SeikoConfig, "SEIKO with a UCB bonus on last-layer features",
                             {"optimism": "ucb", "reward_model": _ONE_MODEL}),
    "seiko-bootstrap": MethodEntry(Seiko, SeikoConfig, "SEIKO with bootstrap-ensemble optimism (mean + k*std)",
                                   {"optimism": "bootstrap"}),
    "seiko-ts": MethodEntry(Seiko, SeikoConfig, "SEIKO with Thompson sampling (one ensemble member per round)",
                            {"optimism": "ts"}),
    "greedy": MethodEntry(Seiko, SeikoConfig, "SEIKO without optimism: fit, then fine-tune on the fitted reward",
                          {"optimism": "none", "reward_model": _ONE_MODEL}),
    "non-adaptive": MethodEntry(NonAdaptive, SeikoConfig, "whole budget on the pretrained model, fit and fine-tune once",
                                {"optimism": "none", "reward_model": _ONE_MODEL}),
    "ddpo-is": MethodEntry(DDPO, DDPOConfig, "DDPO with importance sampling (PPO clip) on per-step log-probs",
                           {"importance_sampling": True}),
    "ddpo-sf": MethodEntry(DDPO, DDPOConfig, "DDPO with the score function (REINFORCE) on per-step log-probs",
                           {"importance_sampling": False}),
    "large-scale-rl": MethodEntry(LargeScaleRL, LargeScaleRLConfig,
                                  "Zhang et al. 2024: policy gradient, batch-wide reward normalisation, "
                                  "pretraining-loss regulariser"),
    "guidance": MethodEntry(Guidance, GuidanceConfig,
                            "no fine-tuning: sampling steered by the learned reward's gradient (classifier guidance)"),
    "direct-backprop": MethodEntry(DirectBackprop, SeikoConfig,
                                   "AlignProp / DRaFT-1 on the learned reward: no optimism, no KL, last step only",
                                   {"optimism": "none", "kl_weight": 0.0, "last_k": 1, "reward_model": _ONE_MODEL}),
    "rwr": MethodEntry(RWR, RWRConfig, "reward-weighted regression: denoising loss weighted by exp(beta * advantage)"),
    "rwr-sparse": MethodEntry(RWR, RWRConfig, "sparse RWR: denoising loss on the top 10% of each round",
                              {"sparse_fraction": 0.1}),
    "best-of-n": MethodEntry(BestOfN, BestOfNConfig, "measure pretrained samples and keep the best; no learning"),
    "genetic": MethodEntry(Genetic, GeneticConfig, "genetic algorithm on the designs, seeded by pretrained samples"),
}


def merge_settings(base: dict[str, Any], over: dict[str, Any]) -> dict[str, Any]:
    out = dict(base)
    for key, value in over.items():
        out[key] = merge_settings(out[key], value) if isinstance(value, dict) and isinstance(out.get(key), dict) else value
    return out


def _check_fields(config_cls: type, settings: dict[str, Any], where: str) -> dict[str, Any]:
    """Settings checked against the config's fields, nested configs included.

    Unknown names are a clear error, and so are numbers of the wrong kind. YAML
    1.1 reads `1e-3` as a string, so a float field accepts a numeric string."""
    fields = {f.name: f for f in dataclasses.fields(config_cls)}
    out = {}
    for key, value in settings.items():
        if key not in fields:
            raise UnknownName(f"setting of {where}", key, fields)
        kind = fields[key].type
        factory = fields[key].default_factory
        inner = type(factory()) if factory is not dataclasses.MISSING else None  # a nested config's class
        if isinstance(value, dict) and inner is not None and dataclasses.is_dataclass(inner):
            value = _check_fields(inner, value, f"{where}.{key}")
        elif kind == "float" and not isinstance(value, bool):
            try:
                value = float(value)
            except (TypeError, ValueError):
                raise ValueError(f"{where}.{key} must be a number, got {value!r}") from None
        elif kind == "int" and (type(value) is not int):
            raise ValueError(f"{where}.{key} must be an integer, got {value!r}")
        out[key] = value
    return out


def resolve_config(name: str, settings: dict[str, Any] | None = None) -> Any:
    """The config a method runs with: its variant's defaults, then `settings`."""
    if name not in METHODS:
        raise UnknownName("method", name, METHODS)
    entry = METHODS[name]
    merged = _check_fields(entry.config_cls, merge_settings(entry.defaults, settings or {}), name)
    return entry.config_cls(**merged)


def build_method(name: str, context: Context, settings: dict[str, Any] | None = None, label: str | None = None) -> Method:
    """Method `name` with `settings`; `label` (default: name) is what logs and results call it."""
    return METHODS[name].cls(resolve_config(name, settings), context, name=label or name)
