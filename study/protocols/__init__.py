"""Pruning protocols (SPEC §3), one module each, registered by name.

``sensitivity``, ``retrain`` and ``characterise`` are the paper's greedy loop
(:mod:`study.protocols.greedy`); ``oneshot`` ranks once and cuts to targets. Each protocol
is a frozen, validated dataclass of its own parameters (:class:`Protocol`); the CLI and
the sweep spec take their options and help texts from :data:`PROTOCOLS`. To add one, see
docs/extending.md.
"""

# isort: off
from study.protocols import sensitivity, retrain, characterise, oneshot  # noqa: F401 - registration order
from study.protocols import best_of_n, myopic  # noqa: F401 - search baselines (issue 13)
from study.protocols import fisher_cost  # noqa: F401 - Theis et al. 2018 (issue 13)
from study.protocols import cucb, gated  # noqa: F401 - training-time and per-input selection (issue 14)

# isort: on
from study.params import Param, parameters
from study.protocols.base import (
    PROTOCOLS,
    Protocol,
    all_parameters,
    make_protocol,
    owners,
    protocol_from_dict,
    register_protocol,
)

__all__ = [
    "all_parameters",
    "owners",
    "PROTOCOLS",
    "Param",
    "Protocol",
    "make_protocol",
    "parameters",
    "protocol_from_dict",
    "register_protocol",
]
