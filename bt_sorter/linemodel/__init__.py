"""The line model: the line's timings, learned from its events while it sorts.

Nobody hands the controller a line's geometry (the FS scene publishes none), so it
measures the line from the items it sorts (docs/line-model.md). One file per job:

- :mod:`~bt_sorter.linemodel.quantities`: what is learned (``picture``, ``gateK.blocked``,
  ``gateK.clear``, ``gateK.passage``) and the order an item's events come in;
- :mod:`~bt_sorter.linemodel.bounds`: the target range and the bounds it sets before
  anything is measured;
- :mod:`~bt_sorter.linemodel.odometer`: belt-running seconds, the clock of every time here;
- :mod:`~bt_sorter.linemodel.estimates`: the learned medians, spreads and the pace;
- :mod:`~bt_sorter.linemodel.learning`: taking items' times, with outlier and shift
  detection; when the line counts as measured;
- :mod:`~bt_sorter.linemodel.priors`: the configured ``line:`` as a prior to confirm;
- :mod:`~bt_sorter.linemodel.windows`: the windows and deadlines the matcher and the
  watchdogs ask for (and the belt end, and a stalled belt);
- :mod:`~bt_sorter.linemodel.spacing`: push delay, safe feed spacing and the limit;
- :mod:`~bt_sorter.linemodel.latency`: the decision delay and the latency margins;
- :mod:`~bt_sorter.linemodel.report`: the run summary's section and the config ``line:``
  section ``--calibrate`` writes;
- :mod:`~bt_sorter.linemodel.model`: :class:`~bt_sorter.linemodel.model.LineModel`, what
  the blackboard holds (``bb.line``): the parts above, built on one set of estimates.

Every controller use of the line goes through these: the odometer, the matcher's
windows, the watchdogs' deadlines, the push delay, the feed spacing and the limit.
Imports run one way: quantities, bounds, odometer, latency → estimates → windows →
priors → learning, spacing → model → report.
"""
