"""Tree files, one job a module, each importing only the ones listed before it:

- ``vocabulary``: the nodes a tree may name (composites, decorators, ``include``,
  ``for_each_rod``, the registered leaves) and how each is built in py_trees;
- ``groot``: Groot2's BehaviorTree.CPP v4 XML, written from and read into tree specs;
- ``build``: a tree file (YAML, or XML through ``groot``) checked and built into a tree;
- ``cli``: ``run.py --help``'s node catalogue and ``python -m bt_sorter.trees export|import``.
"""
