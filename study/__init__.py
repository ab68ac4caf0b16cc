"""prunetax's study engine: models, data, channel groups, statistics, protocols, trials,
sweeps and the results store. Imports ``taxonomy``; never ``analysis`` (the CLI in
``study.cli`` is the one composition root and imports ``analysis`` lazily)."""
