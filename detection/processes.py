"""The processes that share one inference run: this one's rank, how many there are, its device.

``start_processes`` starts them with Lightning Fabric, the engine ``scripts/train.py`` trains
with (the Trainer's DDP strategy is built on the same launchers and cluster environments):
``devices`` processes on each of ``num_nodes`` machines, one per GPU, or CPU processes on the
``gloo`` backend.

- **A plain command** (``predict.py --devices 4``): the first process re-runs the same command
  line once for each other local rank (Lightning's subprocess launcher, the one behind
  ``Trainer(devices=4)``); if any child dies, Lightning's observer ends the whole group.
- **torchrun or SLURM**: the launcher has started every process already (``torchrun
  --nproc_per_node 4 --nnodes 2 ...``, or ``srun`` with ``--ntasks-per-node 4``) and Fabric joins
  them; ``--devices`` and ``--num-nodes`` must match what the launcher started, as in training.

Inference needs no gradient sync: each process predicts its own share, and the processes meet
only at barriers (``detection/inference.py`` says where). ``Processes()`` is the single-process
case, with no launcher and no process group.
"""

from collections.abc import Callable
from dataclasses import dataclass, field

import torch


def _alone() -> None:
    """The barrier of a single process: nothing to wait for."""


@dataclass(frozen=True)
class Processes:
    rank: int = 0  # global rank, 0 .. world_size - 1
    world_size: int = 1
    device: torch.device = field(default_factory=lambda: torch.device("cpu"))
    barrier: Callable[[], None] = _alone  # returns once every process has called it
    end: Callable[[], None] = _alone  # leaves the process group (work that follows, such as scoring, is one process's)

    @property
    def is_main(self) -> bool:
        """The process that writes the run's summaries and reports (rank 0)."""
        return self.rank == 0


def start_processes(device: str | torch.device = "cpu", *, devices: int = 1, num_nodes: int = 1) -> Processes:
    """``devices`` processes per node on ``num_nodes`` nodes, on ``device``'s accelerator (``cpu`` or ``cuda``).

    Called by every process of the run, it returns this one's ``Processes``; the first call of a
    plain command starts the other local processes (see the module docstring). With one process
    in all it starts nothing and returns ``Processes(device=device)``, so ``--device cuda:1``
    keeps its index.
    """
    if devices < 1 or num_nodes < 1:
        raise ValueError(f"--devices and --num-nodes must be >= 1, got {devices} and {num_nodes}")
    device = torch.device(device)
    if devices * num_nodes == 1:
        return Processes(device=device)
    from lightning.fabric import Fabric

    fabric = Fabric(accelerator=device.type, devices=devices, num_nodes=num_nodes, strategy="ddp")
    fabric.launch()
    return Processes(
        rank=fabric.global_rank, world_size=fabric.world_size, device=fabric.device, barrier=fabric.barrier,
        end=torch.distributed.destroy_process_group,
    )  # fmt: skip
