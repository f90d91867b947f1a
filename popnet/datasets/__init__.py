"""TFDS builders of our own, for the datasets that `popnet.data.prepare` builds offline."""
