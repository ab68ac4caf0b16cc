"""The four orthogonal components of a pruning signal (SPEC §2), one record per option.

Each option is a registered :class:`~taxonomy.options.Option` that carries its id (used in
signal ids ``input-pointwise-reduction-scaling``, in the store and on the command line),
its meaning, its formula, and the function that computes it:

* a :class:`Pointwise` measure carries ``needs`` (the statistics it reads, by name) and
  ``fn(e)``, the per-element, per-example tensor from a layer's element tensors ``e``
  (:class:`taxonomy.bank.Elements`: ``e.x`` values, ``e.g`` gradients, ``e.h`` LM second
  derivatives, ``e["name"]`` any registered statistic, plus shared products);
* a :class:`Reduction` carries ``fn(z)`` from the per-example element sums ``z``
  (:class:`taxonomy.bank.Sums`) to ``[C]`` scores (mean over examples);
* a :class:`Scaling` carries ``fn(S, layout, input)``, the denominator D of ``S / D``.

The signal bank (:mod:`taxonomy.bank`) composes them. Registering a new option (one
``register`` call with its function) adds a row or column to the whole signal space.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING

from taxonomy.options import Option

if TYPE_CHECKING:  # torch-free at import: ``analysis`` parses signal ids without torch
    from torch import Tensor

    from taxonomy.bank import Elements, Layout, Sums

__all__ = ["Input", "Pointwise", "Reduction", "Scaling", "Reference", "AXES"]


class Input(Option):
    """What the elements x of channel i are."""


Input.WEIGHT = Input.builtin(
    "weight",
    "the channel's filter W[i] plus its bias b_i",
    "x in {W[i,:,:,:], b_i}",
    r"x \in \{W_{i},\, b_i\}",
)
Input.ACTIVATION = Input.builtin(
    "activation",
    "the channel's feature map A[n,i] (H*W values per example)",
    "x in A[n,i,:,:]",
    r"x \in A_{n,i}",
)


class Pointwise(Option):
    """The per-element, per-example measure f(x); g = dl_n/dx, h = LM diagonal d2l_n/dx2.

    Attributes: ``needs`` (statistic names read) and ``fn`` (Elements -> ``[N, C, E]``).
    """

    _required = ("needs", "fn")
    needs: frozenset[str]
    fn: Callable[[Elements], Tensor]

    def __init__(self, ident: str, meaning: str, text: str, latex: str, **extra: object) -> None:
        super().__init__(ident, meaning, text, latex, **{**extra, "needs": frozenset(extra["needs"])})


def _measure(ident: str, meaning: str, text: str, latex: str, needs: set[str], fn: Callable) -> Pointwise:
    return Pointwise.builtin(ident, meaning, text, latex, needs=needs, fn=fn)


Pointwise.VALUE = _measure("value", "the element itself", "x", "x", {"value"}, lambda e: e.x)
Pointwise.GRADIENT = _measure(
    "gradient", "per-example gradient of the loss", "g", "g", {"grad"}, lambda e: e.g
)
Pointwise.TAYLOR = _measure(
    "taylor", "first-order loss change when x -> 0", "-x*g", r"-x\,g", {"value", "grad"}, lambda e: -e.xg
)
Pointwise.HESSIAN_LM = _measure(
    "hessian_lm",
    "second-order term, Levenberg-Marquardt diagonal (OBD)",
    "x^2*h_LM/2",
    r"\tfrac12 x^2 h_{LM}",
    {"value", "hess"},
    lambda e: e.half_x2h,
)
Pointwise.HESSIAN_GN = _measure(
    "hessian_gn",
    "second-order term, empirical-Fisher diagonal h = g^2",
    "(x*g)^2/2",
    r"\tfrac12 (x\,g)^2",
    {"value", "grad"},
    lambda e: e.half_xg2,
)
Pointwise.TAYLOR2_LM = _measure(
    "taylor2_lm",
    "second-order Taylor loss change, LM diagonal",
    "-x*g + x^2*h_LM/2",
    r"-x\,g + \tfrac12 x^2 h_{LM}",
    {"value", "grad", "hess"},
    lambda e: e.half_x2h - e.xg,
)
Pointwise.TAYLOR2_GN = _measure(
    "taylor2_gn",
    "second-order Taylor loss change, empirical-Fisher diagonal",
    "-x*g + (x*g)^2/2",
    r"-x\,g + \tfrac12 (x\,g)^2",
    {"value", "grad"},
    lambda e: e.half_xg2 - e.xg,
)
Pointwise.APOZ = _measure(
    "apoz",
    "indicator of a positive element (average percentage of zeros)",
    "1[x > 0]",
    r"\mathbb{1}[x > 0]",
    {"value"},
    lambda e: (e.x > 0).to(e.x.dtype),
)
Pointwise.CENTERED = _measure(
    "centered",
    "deviation from the element's mean over the eval examples (Evci 2018: l2 = activation variance)",
    "x - E_n[x]",
    r"x - \mathbb{E}_n[x]",
    {"value"},
    lambda e: e.x - e.x.double().mean(0, keepdim=True).to(e.x.dtype),  # a constant element gives 0
)


class Reduction(Option):
    """Elements of one channel -> one number per example; then the mean over examples.

    Attribute ``fn``: Sums -> ``[C]``.
    """

    _required = ("fn",)
    fn: Callable[[Sums], Tensor]


Reduction.SUM = Reduction.builtin(
    "sum", "signed sum", "sum_e f", r"\sum_e f_e", fn=lambda z: z.signed.mean(0)
)
Reduction.L1 = Reduction.builtin(
    "l1", "sum of magnitudes", "sum_e |f|", r"\sum_e |f_e|", fn=lambda z: z.absolute.mean(0)
)
Reduction.L2 = Reduction.builtin(
    "l2", "sum of squares (squared L2, no root)", "sum_e f^2", r"\sum_e f_e^2", fn=lambda z: z.squares.mean(0)
)
Reduction.ABS_SUM = Reduction.builtin(
    "abs_sum",
    "magnitude of the sum",
    "|sum_e f|",
    r"\left|\sum_e f_e\right|",
    fn=lambda z: z.signed.abs().mean(0),
)
Reduction.SQR_SUM = Reduction.builtin(
    "sqr_sum",
    "square of the sum",
    "(sum_e f)^2",
    r"\left(\sum_e f_e\right)^2",
    fn=lambda z: z.signed.square().mean(0),
)


def _nonzero(d: Tensor) -> Tensor:
    """A denominator with 0 replaced by 1 (SPEC: "1 if that is 0")."""
    return d.masked_fill(d == 0, 1)


class Scaling(Option):
    """S'_i = S_i / D: makes scores comparable across layers.

    Attributes: ``fn(S, layout, input)``, the denominator D, ``[K, C]`` for base scores
    ``S [K, C]`` of one input type (:class:`taxonomy.bank.Layout` knows the layers); and
    ``pooling``, how a coupled unit's denominator follows from its member channels':
    ``"sum"`` (an extensive quantity: element counts, layer norms) or ``"unit"`` (already
    the whole unit's: every member carries the same value).
    """

    _required = ("fn", "pooling")
    fn: Callable[[Tensor, Layout, Input], Tensor]
    pooling: str

    def __init__(self, ident: str, meaning: str, text: str, latex: str, **extra: object) -> None:
        if extra.get("pooling") not in ("sum", "unit"):
            from taxonomy.errors import PrunetaxError

            raise PrunetaxError(
                f"scaling {ident!r}: `pooling` must be 'sum' or 'unit'; got {extra.get('pooling')!r}."
            )
        super().__init__(ident, meaning, text, latex, **extra)


Scaling.NONE = Scaling.builtin(
    "none", "no scaling", "D = 1", "1", fn=lambda s, lay, i: s.new_ones(s.shape), pooling="unit"
)
Scaling.L1 = Scaling.builtin(
    "l1",
    "layer L1 norm of the scores",
    "D = sum_j |S_j| over the layer",
    r"\sum_{j \in \ell} |S_j|",
    fn=lambda s, lay, i: _nonzero(lay.per_layer_sum(s.abs())),
    pooling="sum",
)
Scaling.L2 = Scaling.builtin(
    "l2",
    "layer L2 norm of the scores (Molchanov 2017)",
    "D = sqrt(sum_j S_j^2) over the layer",
    r"\sqrt{\sum_{j \in \ell} S_j^2}",
    fn=lambda s, lay, i: _nonzero(lay.per_layer_sum(s.square()).sqrt()),
    pooling="sum",
)
Scaling.L0 = Scaling.builtin(
    "l0",
    "cardinality of the input set, original sizes",
    "D = |x set| (weight: C_in*k^2, activation: H*W)",
    r"|\mathcal{X}_i|",
    fn=lambda s, lay, i: _nonzero(lay.counts(i, "count").to(s.dtype)).expand_as(s),
    pooling="sum",
)
Scaling.L0_ACTIVE = Scaling.builtin(
    "l0_active",
    "cardinality counting only active input channels",
    "D = |x set| over active input channels",
    r"|\mathcal{X}_i^{\mathrm{active}}|",
    fn=lambda s, lay, i: _nonzero(lay.counts(i, "count_active").to(s.dtype)).expand_as(s),
    pooling="sum",
)
Scaling.WEIGHTS_REMOVED = Scaling.builtin(
    "weights_removed",
    "weights removed transitively if the channel goes (paper)",
    "D = own filter + consumer slices + coupled filters",
    r"\Delta W_i",
    fn=lambda s, lay, i: _nonzero(lay.weights_removed.to(s.dtype)).expand_as(s),
    pooling="unit",
)
Scaling.MACS_REMOVED = Scaling.builtin(
    "macs_removed",
    "multiply-adds removed transitively if the channel goes (Molchanov 2017, Theis 2018)",
    "D = MACs of own filter + consumer slices + coupled filters",
    r"\Delta \mathrm{MAC}_i",
    fn=lambda s, lay, i: _nonzero(lay.macs_removed.to(s.dtype)).expand_as(s),
    pooling="unit",
)


class Reference(Option):
    """Reference signals outside the taxonomy (scored by ``study.unit_scores``).

    ``randomised`` references (``random``) are a distribution, not one trajectory: a
    study runs several independent draws of them per repeat.
    """

    randomised: bool = False


Reference.RANDOM = Reference.builtin(
    "random", "uniform random choice among active channels", "S_i ~ U(0, 1)", r"U(0,1)", randomised=True
)
Reference.ORACLE = Reference.builtin(
    "oracle",
    "measured loss change when the channel (group) is removed",
    "S_i = L(without i) - L",
    r"\mathcal{L}(\theta_{-i}) - \mathcal{L}(\theta)",
)
Reference.ACTIVATION_VOTING = Reference.builtin(
    "activation_voting",
    "activation-sum voting (Anwar et al. 2017): each eval image votes, within each group of coupled "
    "layers, for the 10 % of active units with the lowest activation sum; most votes pruned first",
    "S_u = -(votes_u / N)",
    r"-\tfrac{1}{N}\sum_n \mathbb{1}[u \in \mathrm{lowest}_k(n)]",
)


AXES: dict[str, type[Option]] = {
    "input": Input,
    "pointwise": Pointwise,
    "reduction": Reduction,
    "scaling": Scaling,
}
"""The four axes of the taxonomy, in id order."""
