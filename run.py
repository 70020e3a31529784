#!/usr/bin/env python3
"""Run a behaviour-tree sorting controller: ``python run.py --tree trees/sort.yaml``.

See ``python run.py --help`` and README.md.
"""

import sys

from bt_sorter.app import main

if __name__ == "__main__":
    sys.exit(main())
