"""The operator's web view: a live page of the running line, and session replay in it.

``state`` turns the controller's context into plain snapshots (the one place that knows
what is drawn), ``live`` hands them over from the tick thread, ``server`` serves the page
and pushes snapshots to browsers from its own thread, ``static/`` is the page itself (no
file from the internet at page load). Replay (``bt_sorter.replay``) feeds the same page
from a record; the tests drive it in Chromium (``tests/headless.py``).
"""
