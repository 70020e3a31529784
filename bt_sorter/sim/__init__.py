"""The simulated FS sorting line (digital twin): physics, MQTT node, renderer, launcher.

Run it with ``python -m bt_sorter.sim`` (see :mod:`bt_sorter.sim.node`); start it from
other programs and tests with :func:`bt_sorter.sim.process.start_simulator`.
"""
