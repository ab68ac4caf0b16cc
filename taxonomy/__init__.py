"""prunetax's signal space: components, specs, equivalence classes and the signal bank.

Pure: imports torch only, never ``study`` or ``analysis``.
"""

from taxonomy.components import Input, Pointwise, Reduction, Reference, Scaling
from taxonomy.errors import PrunetaxError
from taxonomy.spec import SignalSpec, all_cells, parse

__version__ = "0.1.0"

__all__ = [
    "__version__",
    "Input",
    "Pointwise",
    "Reduction",
    "Scaling",
    "Reference",
    "SignalSpec",
    "PrunetaxError",
    "parse",
    "all_cells",
]
