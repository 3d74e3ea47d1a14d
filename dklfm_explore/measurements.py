"""Former home of the measurement files' code, now :mod:`dklfm_explore.io`; its names still import from here."""

from .io import MIN_POINTS, example_csv, load_measurements, measurements_to_csv, pool_replicates

__all__ = ["load_measurements", "measurements_to_csv", "example_csv", "pool_replicates", "MIN_POINTS"]
