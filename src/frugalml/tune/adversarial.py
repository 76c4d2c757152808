"""Adversarial training on the word embeddings: FGM, PGD and FreeLB, for any method that trains.

A forward hook on the model's input (word) embedding adds a perturbation `delta` to its output;
the attacks choose `delta` from the gradient of the loss with respect to it. The radius
`epsilon` bounds each example's perturbation (its L2 norm over all its tokens and dimensions);
padding is never perturbed.

- fgm (Miyato et al. 2017): the clean loss, then one step of length epsilon along the normalised
  gradient; the gradients of the clean and the adversarial loss are added.
- pgd (Madry et al. 2018): the clean loss, then `steps` ascent steps of 2.5 * epsilon / steps
  (the first from the clean pass's gradient), each projected back into the epsilon ball, computed
  without touching the weights' gradients; the adversarial loss at the last point is added to the
  clean one. With one step, pgd is fgm.
- freelb (Zhu et al. 2020): `steps` ascent steps from delta = 0 (the clean loss), each one's
  weight gradients accumulated, divided by `steps`: the update follows their average.

Every worker of a data-parallel run makes the same number of backward passes through the
DDP-wrapped model (`net`); the PGD ascent passes run on the plain module, so they synchronise
nothing.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

import torch
from torch import nn

ATTACKS = ("fgm", "pgd", "freelb")
PGD_STEP = 2.5  # PGD's step, as a multiple of epsilon / steps (Madry et al.)

Loss = Callable[[nn.Module], torch.Tensor]  # forward a model on the batch -> this worker's loss


class _Perturbation:
    """Adds `delta` to the embedding output; on a call with `track` set, starts `delta` at zero
    with a gradient so that the clean pass also gives the gradient with respect to it."""

    def __init__(self, mask: torch.Tensor):
        self.mask = mask.unsqueeze(-1).float()  # (batch, tokens, 1): 0 on padding
        self.delta: torch.Tensor | None = None
        self.track = False

    def hook(self, module: nn.Module, inputs: Any, output: torch.Tensor) -> torch.Tensor:
        if self.track:
            self.delta = torch.zeros_like(output, dtype=torch.float32, requires_grad=True)
        if self.delta is None:
            return output
        return output + (self.delta * self.mask).to(output.dtype)


@contextmanager
def _hooked(embeddings: nn.Module, perturbation: _Perturbation) -> Iterator[None]:
    handle = embeddings.register_forward_hook(perturbation.hook)
    try:
        yield
    finally:
        handle.remove()


def train_batch(
    attack: str | None,
    *,
    net: nn.Module,
    model: nn.Module,
    mask: torch.Tensor,
    loss: Loss,
    backward: Callable[[torch.Tensor], None],
    epsilon: float,
    steps: int,
) -> torch.Tensor:
    """Forward and backward one batch, with `attack` (None: plain); the gradients are left in
    the weights for the optimizer. Returns the clean loss, detached. `net`: the model as training
    calls it (DDP-wrapped or itself); `model`: the plain module; `mask`: the attention mask."""
    if attack is None:
        clean = loss(net)
        backward(clean)
        return clean.detach()
    perturbation = _Perturbation(mask)
    embeddings = model.get_input_embeddings()  # type: ignore[operator]  # transformers and PEFT models
    with _hooked(embeddings, perturbation):
        if attack == "freelb":
            return _freelb(perturbation, net, loss, backward, epsilon, steps)
        perturbation.track = True
        clean = loss(net)
        perturbation.track = False
        backward(clean)
        assert perturbation.delta is not None and perturbation.delta.grad is not None
        if attack == "fgm":
            perturbation.delta = epsilon * _unit(perturbation.delta.grad)
        else:
            perturbation.delta = _pgd(perturbation, model, loss, epsilon, steps)
        backward(loss(net))
        return clean.detach()


def _freelb(
    perturbation: _Perturbation,
    net: nn.Module,
    loss: Loss,
    backward: Callable[[torch.Tensor], None],
    epsilon: float,
    steps: int,
) -> torch.Tensor:
    step_size = epsilon / steps
    delta: torch.Tensor | None = None
    clean = torch.zeros(())
    for k in range(steps):
        perturbation.track = delta is None
        if delta is not None:
            perturbation.delta = delta.requires_grad_(True)
        value = loss(net)
        perturbation.track = False
        backward(value / steps)
        if k == 0:
            clean = value.detach()
        current = perturbation.delta
        assert current is not None and current.grad is not None
        delta = _project(current.detach() + step_size * _unit(current.grad), epsilon)
    return clean


def _pgd(
    perturbation: _Perturbation, model: nn.Module, loss: Loss, epsilon: float, steps: int
) -> torch.Tensor:
    """The first step from the clean pass's gradient, then `steps - 1` more, each projected."""
    assert perturbation.delta is not None and perturbation.delta.grad is not None
    step_size = PGD_STEP * epsilon / steps
    delta = _project(step_size * _unit(perturbation.delta.grad), epsilon)
    for _ in range(steps - 1):
        delta.requires_grad_(True)
        perturbation.delta = delta
        (grad,) = torch.autograd.grad(loss(model), delta)
        delta = _project(delta.detach() + step_size * _unit(grad), epsilon)
    return delta


def _norms(x: torch.Tensor) -> torch.Tensor:
    """Each example's L2 norm over its tokens and dimensions, shaped to broadcast over `x`."""
    return x.flatten(1).norm(dim=1).clamp_min(1e-12).view(-1, *([1] * (x.dim() - 1)))


def _unit(grad: torch.Tensor) -> torch.Tensor:
    grad = torch.nan_to_num(grad.detach().float(), nan=0.0, posinf=0.0, neginf=0.0)  # fp16 overflow
    return grad / _norms(grad)


def _project(delta: torch.Tensor, epsilon: float) -> torch.Tensor:
    """Back into the ball of radius `epsilon` around 0, per example."""
    return delta * (epsilon / _norms(delta)).clamp(max=1.0)
