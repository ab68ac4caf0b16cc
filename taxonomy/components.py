"""The four orthogonal components of a pruning signal (SPEC §2).

Each component is an enum whose members carry their one-line meaning and formula, so
there is exactly one record per option. The ids are the ones used in signal ids
(``input-pointwise-reduction-scaling``), in the store and on the command line.
"""

from __future__ import annotations

from enum import Enum

__all__ = ["Component", "Input", "Pointwise", "Reduction", "Scaling", "Reference", "AXES"]


class Component(Enum):
    """Base for component enums: value = id, plus meaning and formulas."""

    def __new__(cls, ident: str, meaning: str, text: str, latex: str) -> Component:
        obj = object.__new__(cls)
        obj._value_ = ident
        obj.meaning = meaning
        obj.text = text
        obj.latex = latex
        return obj

    @property
    def id(self) -> str:  # noqa: A003 - the component's public id
        return str(self.value)

    def __str__(self) -> str:
        return self.id


class Input(Component):
    """What the elements x of channel i are."""

    WEIGHT = (
        "weight",
        "the channel's filter W[i] plus its bias b_i",
        "x in {W[i,:,:,:], b_i}",
        r"x \in \{W_{i},\, b_i\}",
    )
    ACTIVATION = (
        "activation",
        "the channel's feature map A[n,i] (H*W values per example)",
        "x in A[n,i,:,:]",
        r"x \in A_{n,i}",
    )


class Pointwise(Component):
    """The per-element, per-example measure f(x); g = dl_n/dx, h = LM diagonal d2l_n/dx2."""

    VALUE = ("value", "the element itself", "x", "x")
    GRADIENT = ("gradient", "per-example gradient of the loss", "g", "g")
    TAYLOR = ("taylor", "first-order loss change when x -> 0", "-x*g", r"-x\,g")
    HESSIAN_LM = (
        "hessian_lm",
        "second-order term, Levenberg-Marquardt diagonal (OBD)",
        "x^2*h_LM/2",
        r"\tfrac12 x^2 h_{LM}",
    )
    HESSIAN_GN = (
        "hessian_gn",
        "second-order term, empirical-Fisher diagonal h = g^2",
        "(x*g)^2/2",
        r"\tfrac12 (x\,g)^2",
    )
    TAYLOR2_LM = (
        "taylor2_lm",
        "second-order Taylor loss change, LM diagonal",
        "-x*g + x^2*h_LM/2",
        r"-x\,g + \tfrac12 x^2 h_{LM}",
    )
    TAYLOR2_GN = (
        "taylor2_gn",
        "second-order Taylor loss change, empirical-Fisher diagonal",
        "-x*g + (x*g)^2/2",
        r"-x\,g + \tfrac12 (x\,g)^2",
    )
    APOZ = (
        "apoz",
        "indicator of a positive element (average percentage of zeros)",
        "1[x > 0]",
        r"\mathbb{1}[x > 0]",
    )


class Reduction(Component):
    """Elements of one channel -> one number per example; then the mean over examples."""

    SUM = ("sum", "signed sum", "sum_e f", r"\sum_e f_e")
    L1 = ("l1", "sum of magnitudes", "sum_e |f|", r"\sum_e |f_e|")
    L2 = ("l2", "sum of squares (squared L2, no root)", "sum_e f^2", r"\sum_e f_e^2")
    ABS_SUM = ("abs_sum", "magnitude of the sum", "|sum_e f|", r"\left|\sum_e f_e\right|")
    SQR_SUM = ("sqr_sum", "square of the sum", "(sum_e f)^2", r"\left(\sum_e f_e\right)^2")


class Scaling(Component):
    """S'_i = S_i / D: makes scores comparable across layers."""

    NONE = ("none", "no scaling", "D = 1", "1")
    L1 = ("l1", "layer L1 norm of the scores", "D = sum_j |S_j| over the layer", r"\sum_{j \in \ell} |S_j|")
    L2 = (
        "l2",
        "layer L2 norm of the scores (Molchanov 2017)",
        "D = sqrt(sum_j S_j^2) over the layer",
        r"\sqrt{\sum_{j \in \ell} S_j^2}",
    )
    L0 = (
        "l0",
        "cardinality of the input set, original sizes",
        "D = |x set| (weight: C_in*k^2, activation: H*W)",
        r"|\mathcal{X}_i|",
    )
    L0_ACTIVE = (
        "l0_active",
        "cardinality counting only active input channels",
        "D = |x set| over active input channels",
        r"|\mathcal{X}_i^{\mathrm{active}}|",
    )
    WEIGHTS_REMOVED = (
        "weights_removed",
        "weights removed transitively if the channel goes (paper)",
        "D = own filter + consumer slices + coupled filters",
        r"\Delta W_i",
    )


class Reference(Component):
    """Reference signals outside the taxonomy."""

    RANDOM = ("random", "uniform random choice among active channels", "S_i ~ U(0, 1)", r"U(0,1)")
    ORACLE = (
        "oracle",
        "measured loss change when the channel (group) is removed",
        "S_i = L(without i) - L",
        r"\mathcal{L}(\theta_{-i}) - \mathcal{L}(\theta)",
    )


AXES: dict[str, type[Component]] = {
    "input": Input,
    "pointwise": Pointwise,
    "reduction": Reduction,
    "scaling": Scaling,
}
"""The four axes of the taxonomy, in id order."""
