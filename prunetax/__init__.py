"""prunetax: which channel-pruning signal should I use, and why.

The Python API - a thin facade over the ``taxonomy``, ``study`` and ``analysis`` packages::

    import prunetax

    table = prunetax.score(model, (x, y), ["taylor_fo", "l1_filter"])    # any nn.Module
    result = prunetax.prune(model, (x, y), "best_gradient", target_sparsity=50, test=(xt, yt))
    small = result.export()                       # physically smaller, with its counts
    prunetax.register_model("my_cnn", build)      # then sweeps can run it (or "pkg.mod:build")

Signals are ids (``activation-taylor-abs_sum-l2``), aliases (``taylor_fo``), ``random``,
``oracle``, groups (``aliases``, ``distinct``) or :class:`SignalSpec` objects everywhere.
"""

from prunetax.api import Exported, PruneResult, export_pruned, prune, score
from study.data import register_dataset
from study.models import register_model
from study.protocols import PROTOCOLS, make_protocol
from taxonomy import SignalSpec, __version__, parse
from taxonomy.equivalence import distinct
from taxonomy.listing import explain

__all__ = [
    "__version__",
    "score",
    "prune",
    "export_pruned",
    "PruneResult",
    "Exported",
    "register_model",
    "register_dataset",
    "make_protocol",
    "PROTOCOLS",
    "SignalSpec",
    "parse",
    "distinct",
    "explain",
]
