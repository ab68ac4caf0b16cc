"""Batched trajectories: many pruning states of one network per pass (GPU scale).

Trajectories of a sensitivity study share the base weights and differ only in their
masks, so they can run together: channel masks become gate rows (:mod:`.gates`), the
saliency examples are stacked once per trajectory, and one forward, backward and LM pass
(:mod:`.stats`) and one evaluation forward (:mod:`.forward`) serve them all; the oracle
runs one gate row per candidate unit (:mod:`.oracle`). The batched engine
(:mod:`.engine`) is a drop-in :class:`~study.trajectory.Run` that the greedy protocols
drive unchanged; :mod:`.select` chooses it (``auto``: on a GPU) and sizes its passes from
free device memory (:mod:`.memory`). See docs/gpu.md.

Importing this package imports no torch.
"""

from study.batched.select import ENGINES, Batching, Engine, batched_here, current, engine_for, using

__all__ = ["Batching", "Engine", "ENGINES", "batched_here", "current", "engine_for", "using"]
