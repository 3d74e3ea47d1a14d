"""The upload format of measured time courses: its column names, missing-value words and unit attrs.

CSV format
----------
One row per measured point, one column per observed output::

    # title: p53 targets after 5 Gy
    time [h],replicate,DDB2 [MAS5 signal],p21 [MAS5 signal],DDB2_se,p21_se
    0,1,211.6,5.9,22.69,4.08
    2,1,482.58,117.02,39.14,14.11
    4,1,1104.54,418.56,79.74,33.62
    4,2,954.43,310.47,46.0,28.3
    0,2,168.0,,20.24,
    2,2,431.61,118.89,39.15,16.0

* ``time`` (required): the measurement times, any order, irregular spacing allowed.
* ``space`` (optional): the position, for space x time systems.
* ``replicate`` (optional): a label per row; each replicate becomes one task
  (the ``task`` coordinate holds the labels as the strings written, stripped:
  ``1`` and ``01`` are two replicates).
  Replicates may be measured at different times: the task set uses the union
  of all times, with NaN where a replicate was not measured.
* every other column is an observed output, except
* ``force`` (optional): a known latent force, kept as ``f`` for comparison, and
* ``<output>_se`` (optional): the known standard deviation of the measurement
  error of ``<output>``, kept as ``y_se``.

Units go in square brackets after a column name, e.g. ``time [h]`` or
``DDB2 [MAS5 signal]``; they become the attrs ``time_unit``, ``space_unit``,
``output_unit`` (``output_units``, a JSON list, if the outputs differ) and
``latent_unit``.  Names are matched without their unit and, for ``time``,
``space``, ``replicate`` and ``force``, without regard to case; a model's outputs
also match their aliases (a gene's official symbol or common name).

A missing value is an empty cell or ``NA``, ``N/A``, ``NaN`` or ``null``; it is
kept as NaN (masked), never filled in.  Lines starting with ``#`` before the
header are comments; a comment of the form ``# key: value`` becomes the string
attribute ``key``.  The delimiter is a comma, a semicolon or a tab: the one that cuts the
header and the first lines into equally many cells.  The text must be UTF-8 (a UTF-8 or UTF-16 byte-order mark is
accepted).

netCDF format
-------------
A saved :class:`TaskSet`, or any dataset with a variable ``y`` with dims
``output`` and ``time`` (plus optionally ``task`` and ``space``), and
optionally ``f`` and ``y_se``; it is brought to the canonical dim order, sorted
in time (and space) and validated like a CSV.
"""

import re

from ..messages import MAX_SHOWN, listed, shown

__all__ = ["MIN_POINTS", "TIME", "SPACE", "REPLICATE", "FORCE", "SE_SUFFIX", "MISSING", "UNIT_ATTRS", "MAX_SHOWN", "shown", "listed"]

MIN_POINTS = 3
"""Each replicate needs this many measured points: fewer cannot show a trend for a force to explain."""

TIME, SPACE, REPLICATE, FORCE = "time", "space", "replicate", "force"
SE_SUFFIX = "_se"
MISSING = frozenset({"", "na", "n/a", "nan", "null"})
"""Cells that mean 'not measured' (compared in lower case)."""
METADATA_KEY = re.compile(r"[A-Za-z_][\w.-]*")
UNIT_ATTRS = ("time_unit", "space_unit", "output_unit", "output_units", "latent_unit")
