"""popnet: train populations of small CNNs at once and write zoos of their weights.

    from popnet import Zoo          # open a zoo: Zoo.open('runs/default')
    python -m popnet.train          # train one (popnet/cli.py; --help lists the flags)
"""
__version__ = "0.1.0"
__all__ = ['Zoo', 'ZooError', '__version__']


def __getattr__(name):  # imported on first use, so `import popnet` stays light
  if name in ('Zoo', 'ZooError'):
    from popnet import zoo
    return getattr(zoo, name)
  raise AttributeError(f'module {__name__!r} has no attribute {name!r}')
