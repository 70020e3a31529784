"""``python -m bt_sorter.trees export|import``: tree files to and from Groot2's XML."""

from bt_sorter.trees.cli import main

if __name__ == "__main__":
    raise SystemExit(main())
