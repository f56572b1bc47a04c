"""Checkpoints of the small models this project trains and ships: weights as
safetensors, the config and metadata as JSON beside them.

One mixin for the sequence, graph and digits models, which differ only in
their config class. Each file is written to a temporary name and renamed, so
that a reader (or a killed run) never sees half a checkpoint.
"""

from __future__ import annotations

import copy
import json
from dataclasses import asdict
from pathlib import Path
from typing import Any, ClassVar, TypeVar

from safetensors.torch import load_file, save_file
from torch import nn

T = TypeVar("T", bound="Checkpointed")


class Checkpointed(nn.Module):
    """An nn.Module with a dataclass `cfg` and a `metadata` dict (the pretraining
    report): what `save`, `load` and the KL anchor (`frozen_copy`) need."""

    config_cls: ClassVar[type]
    cfg: Any
    metadata: dict[str, Any]

    def trainable_parameters(self) -> list[nn.Parameter]:
        return [p for p in self.parameters() if p.requires_grad]

    def frozen_copy(self: T) -> T:
        """A deep copy with gradients off, in eval mode: the KL anchor of a round."""
        frozen = copy.deepcopy(self).eval()
        frozen.requires_grad_(False)
        return frozen

    def save(self, path: str | Path) -> None:
        """Weights as safetensors at `path`, config and metadata as JSON beside it (`.json`)."""
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(path.name + ".tmp")
        save_file({k: v.contiguous() for k, v in self.state_dict().items()}, str(tmp))
        tmp.replace(path)
        tmp_json = path.with_name(path.name + ".json.tmp")
        tmp_json.write_text(json.dumps({"config": asdict(self.cfg), "metadata": self.metadata}, indent=2) + "\n")
        tmp_json.replace(path.with_suffix(".json"))

    @classmethod
    def load(cls: type[T], path: str | Path) -> T:
        path = Path(path)
        meta_path = path.with_suffix(".json")
        if not path.exists() or not meta_path.exists():
            raise FileNotFoundError(f"no checkpoint at {path} (with {meta_path.name} beside it)")
        meta = json.loads(meta_path.read_text())
        model = cls(cls.config_cls(**meta["config"]), meta.get("metadata"))
        model.load_state_dict(load_file(str(path)))
        return model
