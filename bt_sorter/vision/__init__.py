"""Vision: the classifier interface, its back ends, the network, training and the service."""
