"""Tree files: the YAML builder (``build``) and Groot2's BehaviorTree.CPP XML (``groot``).

``python -m bt_sorter.trees export|import`` converts between the two.
"""
