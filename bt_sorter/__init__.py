"""bt_sorter: a behaviour-tree controller for vision-based sorting lines over MQTT."""

__version__ = "0.1.0"
