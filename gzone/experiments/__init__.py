"""One module per study: ``run(config, ...) -> records`` and its summaries; figures in gzone.plots."""
