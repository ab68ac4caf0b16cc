"""prunetax's analysis: reads the results store and turns it into metrics, statistics,
plots, a report and notebooks. Never imports torch."""
