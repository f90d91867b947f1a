"""Test session setup: two XLA host devices, so sharding tests can compare 1 and 2 devices in one process."""
import os

os.environ['XLA_FLAGS'] = (os.environ.get('XLA_FLAGS', '') + ' --xla_force_host_platform_device_count=2').strip()
os.environ.setdefault('JAX_PLATFORMS', 'cpu')
