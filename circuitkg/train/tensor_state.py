"""A model's and an optimizer's tensors by name, as checkpoints store and restore them."""

from __future__ import annotations

from typing import Any

import torch
from torch import Tensor

from circuitkg.compilers import KGEModel
from circuitkg.errors import CheckpointError

__all__ = ["flatten_optimizer", "load_parameters", "model_tensors", "unflatten_optimizer"]


def model_tensors(model: KGEModel) -> dict[str, Tensor]:
    """The tensors a checkpoint stores: the model's ``state_dict`` without the modules its circuit
    builds (fixed weights and views, rebuilt with the circuit)."""
    return {
        name: tensor
        for name, tensor in model.state_dict(keep_vars=True).items()
        if not name.startswith("circuit_modules.")
    }


def load_parameters(
    model: KGEModel, tensors: dict[str, Tensor], source: str, partial: bool = False
) -> list[str]:
    """Copy ``tensors`` into ``model``'s tensors of the same names (:func:`model_tensors`); returns
    the names copied.

    Names or shapes that do not match raise :class:`CheckpointError`; with ``partial`` the model
    may have parameters that ``tensors`` lacks (they keep their values).
    """
    own = model_tensors(model)
    unknown = sorted(set(tensors) - set(own))
    missing = [] if partial else sorted(set(own) - set(tensors))
    if unknown or missing:
        raise CheckpointError(
            f"{source} does not fit {type(model).__name__}({model.form}): "
            f"unexpected parameters {unknown}, missing parameters {missing}"
        )
    for name, tensor in tensors.items():
        if tensor.dtype != own[name].dtype and not (
            tensor.is_floating_point() and own[name].is_floating_point()
        ):
            raise CheckpointError(
                f"{source}: tensor {name!r} has dtype {tensor.dtype}, the model expects "
                f"{own[name].dtype}"
            )
        if tuple(tensor.shape) != tuple(own[name].shape):
            raise CheckpointError(
                f"{source}: parameter {name!r} has shape {tuple(tensor.shape)}, "
                f"the model expects {tuple(own[name].shape)}"
            )
    with torch.no_grad():
        for name, tensor in tensors.items():
            own[name].copy_(tensor)
    return sorted(tensors)


def flatten_optimizer(
    optimizer: torch.optim.Optimizer,
) -> tuple[dict[str, Any], dict[str, Tensor]]:
    """``(JSON part, tensors)`` of an optimizer ``state_dict``."""
    sd = optimizer.state_dict()
    tensors: dict[str, Tensor] = {}
    scalars: dict[str, dict[str, Any]] = {}
    for index, entry in sd["state"].items():
        for key, value in entry.items():
            if isinstance(value, Tensor):
                tensors[f"optimizer.{index}.{key}"] = value.detach().cpu().contiguous()
            else:
                scalars.setdefault(str(index), {})[key] = value
    return {"param_groups": sd["param_groups"], "scalar_state": scalars}, tensors


def unflatten_optimizer(meta: dict[str, Any], tensors: dict[str, Tensor]) -> dict[str, Any]:
    state: dict[int, dict[str, Any]] = {}
    for name, tensor in tensors.items():
        if name.startswith("optimizer."):
            _, index, key = name.split(".", 2)
            state.setdefault(int(index), {})[key] = tensor
    for index, entry in meta.get("scalar_state", {}).items():
        state.setdefault(int(index), {}).update(entry)
    groups = [
        {k: tuple(v) if isinstance(v, list) and k != "params" else v for k, v in g.items()}
        for g in meta["param_groups"]
    ]
    return {"state": state, "param_groups": groups}
