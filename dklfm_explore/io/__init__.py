"""Files in and out: measurements in the upload format (:mod:`.format`), inference results, atomic writes.

``load_measurements`` reads a CSV or netCDF file (:mod:`.source`, :mod:`.csv_read`, :mod:`.netcdf_read`,
:mod:`.checks`); ``measurements_to_csv`` writes the format back; ``example_csv`` simulates an example of it;
``pool_replicates`` averages replicates; ``result_table``/``write_result`` write inference results and ``file_stem`` names their files;
``atomic_write`` is how every file of the package is written.
"""

from ..atomic import atomic_write
from .csv_write import measurements_to_csv
from .examples import example_csv
from .format import MIN_POINTS
from .load import load_measurements
from .replicates import pool_replicates
from .results import CSV_FORMAT, RESULT_SUFFIXES, file_stem, result_table, write_result

__all__ = [
    "load_measurements",
    "measurements_to_csv",
    "example_csv",
    "pool_replicates",
    "file_stem",
    "result_table",
    "CSV_FORMAT",
    "write_result",
    "atomic_write",
    "MIN_POINTS",
    "RESULT_SUFFIXES",
]
