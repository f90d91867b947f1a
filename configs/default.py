"""The embedded CPU default (what `python -m popnet.train` runs with no --config): see popnet/default_config.py."""
from popnet.default_config import get_config  # noqa: F401
