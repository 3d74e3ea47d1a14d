"""DKLFM Explorer dashboard: ``panel serve apps/explorer.py``."""

from dklfm_explore.ui import explorer

explorer().servable()
