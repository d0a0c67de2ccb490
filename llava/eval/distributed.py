"""The processes of one evaluation launch (torchrun, or a single process) and the queue of videos they share.

Under `torchrun` (RANK, WORLD_SIZE, MASTER_ADDR, MASTER_PORT set) the processes meet in torch.distributed's key-value
store (no process group, no collective: a video's answers never leave the process that made them):

1. every rank prepares its own record file, then waits for all (`barrier`);
2. rank 0 plans: the videos still to answer, longest first, published in the store (`share_plan`);
3. each rank claims the next video of the plan with an atomic counter (`claims`) until none is left, so a GPU that
   finishes early takes more videos and the short ones fill the end;
4. each rank says it is done (`finish`); rank 0 waits for all before scoring.

Alone (no torchrun) the same steps run on an in-process store.
"""

import json
import os
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import timedelta

from llava.eval.benchmark import EvalError

STORE_TIMEOUT = timedelta(hours=12)  # the longest any rank waits for the others at one step


@dataclass
class Launch:
    rank: int
    world_size: int
    store: object  # a torch.distributed Store
    prefix: str  # keys of this launch and shard (a relaunch uses new ones)

    @classmethod
    def from_environment(cls, scope: str) -> "Launch":
        """This process's place in a torchrun launch (WORLD_SIZE > 1), or rank 0 of 1. `scope` names the run and the
        shard, so that keys of other launches sharing the store are never read."""
        import torch.distributed as dist

        world_size = int(os.environ.get("WORLD_SIZE", "1"))
        prefix = f"vilamp-eval/{scope}/attempt{os.environ.get('TORCHELASTIC_RESTART_COUNT', '0')}/"
        if world_size == 1:
            return cls(0, 1, dist.HashStore(), prefix)
        store, rank, world_size = next(dist.rendezvous("env://", timeout=STORE_TIMEOUT))
        return cls(rank, world_size, store, prefix)

    def barrier(self, name: str) -> None:
        """Return when every rank has reached the barrier `name`."""
        self.store.set(f"{self.prefix}{name}/{self.rank}", "1")
        self.store.wait([f"{self.prefix}{name}/{rank}" for rank in range(self.world_size)], STORE_TIMEOUT)

    def share_plan(self, make_plan: Callable[[], list]) -> list:
        """Rank 0 computes the plan (a JSON-able list) and publishes it; every rank returns it. A failure of rank 0
        is published too, so the other ranks stop with its message instead of waiting."""
        key = f"{self.prefix}plan"
        if self.rank == 0:
            try:
                plan = make_plan()
            except Exception as error:
                self.store.set(key, json.dumps({"error": f"{type(error).__name__}: {error}"}))
                raise
            self.store.set(key, json.dumps({"plan": plan}))
            return plan
        message = json.loads(self.store.get(key))
        if "error" in message:
            raise EvalError(f"rank 0 could not plan the run: {message['error']}")
        return message["plan"]

    def claims(self, count: int) -> Iterator[int]:
        """Indices 0..count-1 of the plan claimed by this rank, each index claimed by exactly one rank."""
        while (index := self.store.add(f"{self.prefix}next", 1) - 1) < count:
            yield index

    def finish(self) -> None:
        """Say this rank is done; on rank 0, wait until every rank is."""
        self.store.set(f"{self.prefix}done/{self.rank}", "1")
        if self.rank == 0:
            self.store.wait([f"{self.prefix}done/{rank}" for rank in range(self.world_size)], STORE_TIMEOUT)
