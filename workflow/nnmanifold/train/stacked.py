"""K Classifiers as one ``nn.Module``: stacked weights (K, ...), batched matmuls for dense layers
and grouped convolutions for conv layers; members of different widths or channel counts are padded
to the widest (``train.padding``).

Member k computes what its own ``models.Classifier`` computes: the same layers
(``zoo.architecture``), the same state-dict names, and dropout with its own rate, drawn from a
counter-based stream keyed by its seed (``uniforms``), so that its masks never depend on the other
members and resuming needs no generator state. Nothing in the computation mixes members.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from typing import Any

import torch
from torch import nn
from torch.nn import functional as F

from nnmanifold.train import padding
from nnmanifold.train.models import ACTIVATIONS
from nnmanifold.zoo import architecture
from nnmanifold.zoo.architecture import Layer

_M32 = 0xFFFFFFFF
#: Dropout: (keys (K,), counter): each member's stream key and the position in its epoch.
Stream = tuple[torch.Tensor, int]


def _mul32(x: torch.Tensor, c: int) -> torch.Tensor:
    """x * c mod 2**32 for int64 x in [0, 2**32), split in 16-bit halves so nothing overflows."""
    return (x * (c & 0xFFFF) + (((x * (c >> 16)) & 0xFFFF) << 16)) & _M32


def mix32(x: torch.Tensor) -> torch.Tensor:
    """A 32-bit integer hash with full avalanche (lowbias32), on int64 tensors in [0, 2**32)."""
    x = x & _M32
    x = _mul32(x ^ (x >> 16), 0x7FEB352D)
    x = _mul32(x ^ (x >> 15), 0x846CA68B)
    return x ^ (x >> 16)


def uniforms(
    keys: torch.Tensor, counter: int, shape: tuple[int, ...], units: torch.Tensor | None = None
) -> torch.Tensor:
    """Uniform [0, 1) floats of shape (K, *shape), row k a function of (keys[k], counter) only.

    With ``units`` (K,), shape is (n, padded units) and member k draws position (i, j) as its
    unpadded self (``units[k]`` wide) does: the same numbers for its real units.
    """
    n = math.prod(shape)
    base = mix32(keys ^ mix32(torch.tensor(counter, device=keys.device)))
    if units is None:
        index = torch.arange(n, device=keys.device)
        bits = mix32(base[:, None] ^ mix32(index + 0x9E3779B9)[None, :])
    else:
        rows = torch.arange(shape[0], device=keys.device)[None, :, None] * units[:, None, None]
        index = rows + torch.arange(shape[1], device=keys.device)
        bits = mix32(base[:, None, None] ^ mix32(index + 0x9E3779B9))
    return ((bits >> 8).to(torch.float32) * 2.0**-24).view(len(keys), *shape)


def dropout_keys(seeds: Sequence[int], epochs: Sequence[int]) -> torch.Tensor:
    """The keys (K,) of members' dropout streams, each in one of its epochs."""
    salted = torch.tensor(seeds, dtype=torch.int64) + 0x632BE5AB
    return mix32(mix32(salted) ^ torch.tensor(epochs, dtype=torch.int64))


def dropout(
    h: torch.Tensor,
    p: torch.Tensor,
    keys: torch.Tensor,
    counter: int,
    units: torch.Tensor | None = None,
) -> torch.Tensor:
    """nn.Dropout per member on feature-major h (K, features, n): keep with probability 1 - p[k],
    scale kept values by 1 / (1 - p[k]). The stream is drawn in (n, features) order, over each
    member's own ``units`` where the features are padded."""
    u = uniforms(keys, counter, (h.shape[2], h.shape[1]), units).transpose(1, 2)
    keep = (u >= p.view(-1, 1, 1)).to(h.dtype)
    return h * keep / (1 - p).view(-1, 1, 1)


class MemberActivation(nn.Module):
    """Each member's own activation function on stacked units whose member axis is ``dim``.

    One function when the members share it; otherwise every function runs over the whole stack
    and each member takes its own (``torch.where``): exact, since a member receives its own
    function's values and gradients, and zeros from the others.
    """

    def __init__(self, names: Sequence[str]) -> None:
        super().__init__()
        self.kinds = sorted(set(names))
        self.functions = nn.ModuleList(ACTIVATIONS[k]() for k in self.kinds)
        self.register_buffer(
            "which", torch.tensor([self.kinds.index(n) for n in names]), persistent=False
        )

    def maps_zero_to_zero(self) -> bool:
        return all(float(f(torch.zeros(()))) == 0.0 for f in self.functions)

    def forward(
        self, h: torch.Tensor, dim: int, members: torch.Tensor | None = None
    ) -> torch.Tensor:
        """``h`` with member k's function applied to its slice k along ``dim`` (of ``members``
        only, when given: their indices)."""
        if len(self.functions) == 1:
            return self.functions[0](h)
        which = self.which if members is None else self.which[members]
        shape = [1] * h.dim()
        shape[dim] = len(which)
        which = which.view(shape)
        out = self.functions[0](h)
        for i, function in enumerate(self.functions[1:], 1):
            out = torch.where(which == i, function(h), out)
        return out


def forward(
    layers: Sequence[Layer],
    params: dict[str, torch.Tensor],
    activation: Callable[[torch.Tensor, int], torch.Tensor],
    x: torch.Tensor,
    shared: bool,
    drop: tuple[torch.Tensor, torch.Tensor, int] | None = None,
    pads: dict[str, tuple[torch.Tensor | None, torch.Tensor]] | None = None,
) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
    """Logits (K, n, classes) and every hidden layer (K, n, features) of K stacked Classifiers.

    ``activation(h, dim)`` applies each member's function to units whose member axis is ``dim``.
    ``x`` is one input batch for all (``shared``, shape (n, ...)) or one per member (K, n, ...).
    ``drop`` = (p, keys, counter) applies each member's dropout after its dense hidden layers.
    ``pads`` (``padding.masks``) zeroes padded units after the activation of the layers it names
    (no mask: the activation keeps them zero) and gives dropout each member's real units.
    Dense layers run feature-major, (K, features, n), and the results are views of that: each
    weight's gradient then comes out in the weight's own layout (no copy per step), and the loss
    reduces over an outer class axis (see ``member_cross_entropy``).
    """
    K = params[f"{layers[0].key}.weight"].shape[0]
    pads = pads or {}
    hidden: dict[str, torch.Tensor] = {}
    h = x
    for i, layer in enumerate(layers):
        w, b = params[f"{layer.key}.weight"], params[f"{layer.key}.bias"]
        if layer.kind == "conv":
            if i == 0:
                h = h.repeat(1, K, 1, 1) if shared else h.transpose(0, 1).flatten(1, 2)
            h = F.conv2d(h, w.flatten(0, 1), b.flatten(), padding=1, groups=K)
            h = activation(h.unflatten(1, (K, -1)), 1).flatten(1, 2)
            if (mask := pads.get(layer.name, (None, None))[0]) is not None:
                h = h * mask.view(1, -1, 1, 1)
            if layer.pool:
                h = F.max_pool2d(h, 2)
            hidden[layer.name] = h.view(h.shape[0], K, -1).transpose(0, 1)
            continue
        if i > 0 and layers[i - 1].kind == "conv":  # (n, K*C, H, W): each member's features
            h = h.view(h.shape[0], K, -1).permute(1, 2, 0)
        elif i == 0:
            h = h.flatten(1).T if shared else h.flatten(2).transpose(1, 2)
        if i == 0 and shared:
            h = torch.matmul(w, h) + b[:, :, None]
        else:
            h = torch.baddbmm(b[:, :, None], w, h)
        if layer.name == "head":
            return h.transpose(1, 2), hidden
        h = activation(h, 0)
        mask, units = pads.get(layer.name, (None, None))
        if mask is not None:
            h = h * mask[:, :, None]
        hidden[layer.name] = h.transpose(1, 2)
        if drop is not None and layer.name.startswith("fc"):
            p, keys, counter = drop
            h = dropout(h, p, keys, counter * 16 + i, units)
    raise ValueError("an architecture's layers end with its head")


def member_cross_entropy(logits: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """Each member's mean cross-entropy (K,) of logits (K, n, classes) against labels (K, n).

    The same numbers as ``F.cross_entropy``, computed over the class axis of the (K, classes, n)
    layout ``forward`` gives: torch's log-softmax over a short innermost axis (10 classes) is
    several times slower than over an outer one.
    """
    return _MemberCrossEntropy.apply(logits.transpose(1, 2), y)


class _MemberCrossEntropy(torch.autograd.Function):
    """Mean cross-entropy per member of feature-major logits (K, classes, n), with the gradient
    (softmax - one-hot) / n written in three passes rather than autograd's seven small ops."""

    @staticmethod
    def forward(ctx: Any, logits: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        log_p = torch.log_softmax(logits, dim=1)
        ctx.save_for_backward(log_p, y)
        return -log_p.gather(1, y[:, None, :])[:, 0].mean(1)

    @staticmethod
    def backward(ctx: Any, grad: torch.Tensor) -> tuple[torch.Tensor, None]:
        log_p, y = ctx.saved_tensors
        out = log_p.exp()
        out.scatter_add_(1, y[:, None, :], torch.full_like(log_p[:, :1], -1.0))
        return out.mul_((grad / y.shape[1])[:, None, None]), None


def evaluate_in_chunks(
    logits_of: Callable[[torch.Tensor], torch.Tensor],
    n_members: int,
    x: torch.Tensor,
    y: torch.Tensor,
    device: torch.device,
) -> tuple[list[float], list[float]]:
    """Mean loss and accuracy of ``n_members`` stacked models (``logits_of``: inputs -> (K, N,
    classes) logits) on (x, y), in chunks of 1,024 inputs."""
    loss = torch.zeros(n_members, device=device)
    correct = torch.zeros(n_members, device=device)
    for xs, ys in zip(x.split(1024), y.split(1024), strict=True):
        xs, ys = xs.to(device), ys.to(device)
        logits = logits_of(xs)
        target = ys.expand(n_members, -1)
        loss += member_cross_entropy(logits, target) * len(ys)
        # first maximum, as argmax; over the outer class axis, where max is 5x faster
        correct += (logits.transpose(1, 2).max(1).indices == target).sum(1)
    return (loss / len(y)).tolist(), (correct / len(y)).tolist()


class StackedClassifier(nn.Module):
    """K Classifiers (``specs``, differing at most in width, channels and activation function)
    with their weights stacked on a leading axis, padded to the widest member (``train.padding``).

    ``weights`` are the members' Classifier state dicts, stacked and padded (name -> (K, ...),
    ``padding.pad``). Parameters are in the architecture's layer order (weight, then bias), as
    ``names`` lists them; ``shapes`` gives each member's own shapes of them.
    """

    def __init__(
        self,
        specs: Sequence[dict[str, Any]],
        input_shape: tuple[int, ...],
        n_classes: int,
        weights: dict[str, torch.Tensor],
    ) -> None:
        super().__init__()
        spec = padding.padded_spec(specs)
        self.layers = architecture.layers(spec, input_shape, n_classes)
        self.names = [f"{layer.key}.{p}" for layer in self.layers for p in ("weight", "bias")]
        self.weights = nn.ParameterList([nn.Parameter(weights[n]) for n in self.names])
        self.activation = MemberActivation([s["activation"] for s in specs])
        self.register_buffer("p_drop", torch.tensor([s["dropout"] for s in specs]))
        self.has_dropout = any(s["dropout"] > 0 for s in specs)
        own = [architecture.layers(s, input_shape, n_classes) for s in specs]
        self.shapes = [_own_shapes(layers) for layers in own]
        #: Each member's recorded width per hidden layer (its leading part of the padded one).
        self.widths = [{layer.name: layer.width for layer in layers[:-1]} for layers in own]
        sizes = {layer.name: [m[i].n_out for m in own] for i, layer in enumerate(self.layers[:-1])}
        self.pads = padding.masks(sizes, {layer.name: layer.n_out for layer in self.layers})
        #: Padded units are masked unless the activation maps zero to zero: their zero weights
        #: then keep them at zero, with zero gradient, without the cost of a mask.
        self.masked = not self.activation.maps_zero_to_zero()
        for name, (mask, units) in self.pads.items():
            self.register_buffer(f"mask_{name}", mask, persistent=False)
            self.register_buffer(f"units_{name}", units, persistent=False)

    @property
    def size(self) -> int:
        return len(self.p_drop)

    def params(self, members: Sequence[int] | None = None) -> dict[str, torch.Tensor]:
        """The stacked weights by Classifier state-dict name (detached, some members only)."""
        if members is None:
            return dict(zip(self.names, self.weights, strict=True))
        idx = self._index(members)
        return {n: w.detach()[idx] for n, w in zip(self.names, self.weights, strict=True)}

    def _index(self, members: Sequence[int]) -> torch.Tensor:
        return torch.as_tensor(list(members), dtype=torch.long, device=self.p_drop.device)

    def _pads(self, members: Sequence[int] | None = None) -> dict[str, tuple[Any, torch.Tensor]]:
        """The padded layers' masks (None where not masked) and real units on this device
        (some members only)."""
        out = {n: (getattr(self, f"mask_{n}"), getattr(self, f"units_{n}")) for n in self.pads}
        if members is not None:
            idx = self._index(members)
            out = {n: (mask[idx], units[idx]) for n, (mask, units) in out.items()}
        return {n: (mask if self.masked else None, units) for n, (mask, units) in out.items()}

    def forward(
        self, x: torch.Tensor, stream: Stream | None = None
    ) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        """Logits and hidden layers (padded) of every member on its own batch x (K, n, ...);
        dropout as drawn from ``stream`` (none without one)."""
        drop = (self.p_drop, *stream) if stream is not None and self.has_dropout else None
        params, pads = self.params(), self._pads()
        return forward(self.layers, params, self.activation, x, False, drop, pads)

    def _activation(self, members: Sequence[int]) -> Callable[[torch.Tensor, int], torch.Tensor]:
        """The activation functions of some members (stacked in this order)."""
        idx = self._index(members)
        return lambda h, dim: self.activation(h, dim, idx)

    @torch.no_grad()
    def evaluate(
        self, members: Sequence[int], x: torch.Tensor, y: torch.Tensor
    ) -> tuple[list[float], list[float]]:
        """Mean loss and accuracy of some members on (x, y), in chunks of inputs."""
        params, pads, act = self.params(members), self._pads(members), self._activation(members)
        return evaluate_in_chunks(
            lambda xs: forward(self.layers, params, act, xs, True, pads=pads)[0],
            len(members),
            x,
            y,
            self.p_drop.device,
        )

    @torch.no_grad()
    def hidden(self, members: Sequence[int], x: torch.Tensor) -> list[dict[str, torch.Tensor]]:
        """Each member's hidden layers on the inputs x (eval mode: no dropout; its own units
        only), on the host."""
        x = x.to(self.p_drop.device)
        params, pads, act = self.params(members), self._pads(members), self._activation(members)
        _, hidden = forward(self.layers, params, act, x, True, pads=pads)
        return [
            {n: h[j, :, : self.widths[k][n]].cpu() for n, h in hidden.items()}
            for j, k in enumerate(members)
        ]


def _own_shapes(layers: Sequence[Layer]) -> dict[str, tuple[int, ...]]:
    """A Classifier's parameter shapes by state-dict name, from its layers."""
    shapes: dict[str, tuple[int, ...]] = {}
    for layer in layers:
        kernel = (3, 3) if layer.kind == "conv" else ()
        shapes[f"{layer.key}.weight"] = (layer.n_out, layer.n_in, *kernel)
        shapes[f"{layer.key}.bias"] = (layer.n_out,)
    return shapes
