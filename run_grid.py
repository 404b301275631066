#!/usr/bin/env python
"""Run the Table-1 grid: ``python run_grid.py`` (smoke scale, synthetic corpus, CPU) or
``ray submit cluster.yaml run_grid.py -- --config configs/paper.yaml --data-root /data/DEMoS``."""

import sys

from orchestrator.cli import main

if __name__ == "__main__":
    sys.exit(main())
