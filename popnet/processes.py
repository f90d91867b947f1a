"""The processes of one jax.distributed job (docs/devices.md, "Several hosts"): where they must wait for each other.

Each process trains its own members on its own devices, so they meet only where they share something: the
workdir's run record (process 0 prepares it, the others then check it) and orbax's checkpoint collectives. A
barrier on JAX's coordination service is used rather than a device collective: on CPU the first collective sets
up Gloo, whose key-value exchange gives up after 30 s (jaxlib 0.10.2), so a process arriving later than that
killed the job ('Gloo context initialization failed: DEADLINE_EXCEEDED'). One process: nothing to wait for.
"""
from __future__ import annotations

import jax

# How long the processes wait for each other at a barrier; one may arrive much later than the others (its share
# took longer to load, compile or train). When one dies instead, JAX's shutdown barrier stops the others.
MEET_TIMEOUT_S = 1800


def first() -> bool:
  """Whether this is process 0 (or the only process): the one that writes what the processes share."""
  return jax.process_index() == 0


def meet(name: str) -> None:
  """Waits until every process of the job has called meet(name); `name` must be the same in every process and
  used once per job."""
  if jax.process_count() > 1:
    import orbax.checkpoint as ocp
    ocp.multihost.sync_global_processes(f'popnet_{name}', timeout=MEET_TIMEOUT_S,
                                        processes=set(range(jax.process_count())))
