"""Tools over runs and components: benchmarks (`ssmworld bench`), plots, videos, export, bsuite scoring."""
