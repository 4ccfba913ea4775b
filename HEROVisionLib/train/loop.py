"""What every training run shares: seeding, devices and mixed precision, event-balanced batches,
early stopping on an internal-validation metric, the CSV log and the learning curves, and the
optional DistributedDataParallel set-up under ``torchrun``."""

from __future__ import annotations

import csv
import os
import random
import time
from contextlib import nullcontext
from dataclasses import dataclass, field, replace
from pathlib import Path

import numpy as np
import torch
import torch.distributed as dist


@dataclass
class TrainingConfig:
    """What every training run is configured by (each task's config adds its own and sets defaults)."""

    epochs: int = 30
    batch_size: int = 32
    learning_rate: float = 1e-3
    weight_decay: float = 1e-4
    patience: int = 6
    smoothing: int = 1  # early stopping judges an epoch with this many neighbours each side
    seed: int = 0
    augment: bool = True
    network: dict = field(default_factory=dict)  # the network's keyword arguments
    members: int = 1  # more: an ensemble of networks trained alike from seeds seed, seed + 1, …


def seed_everything(seed: int) -> torch.Generator:
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)
    return torch.Generator().manual_seed(seed)


@dataclass
class Distributed:
    """Rank and world size; a single process is rank 0 of 1."""

    rank: int = 0
    world: int = 1

    @property
    def main(self) -> bool:
        return self.rank == 0

    @classmethod
    def from_environment(cls, device: torch.device) -> Distributed:
        """Join the process group ``torchrun`` describes (gloo on CPU, nccl on CUDA), if any."""
        world = int(os.environ.get("WORLD_SIZE", "1"))
        if world == 1:
            return cls()
        if not dist.is_initialized():
            dist.init_process_group("nccl" if device.type == "cuda" else "gloo")
        return cls(dist.get_rank(), dist.get_world_size())

    def wrap(self, network: torch.nn.Module, device: torch.device) -> torch.nn.Module:
        if self.world == 1:
            return network
        from torch.nn.parallel import DistributedDataParallel

        # Modality drop-out leaves some parameters without gradient in some steps.
        return DistributedDataParallel(network, device_ids=[device.index] if device.type == "cuda" else None,
                                       find_unused_parameters=True)

    def share(self, batches: list) -> list:
        """This rank's batches (round robin); every rank gets the same count so steps stay in lockstep."""
        usable = len(batches) - len(batches) % self.world if len(batches) >= self.world else len(batches)
        return batches[self.rank:usable:self.world] if self.world > 1 else batches

    def close(self) -> None:
        if self.world > 1 and dist.is_initialized():
            dist.destroy_process_group()


def autocast(device: torch.device):
    """bfloat16 mixed precision on CUDA; full precision elsewhere."""
    return torch.autocast("cuda", dtype=torch.bfloat16) if device.type == "cuda" else nullcontext()


def event_balanced_batches(event: torch.Tensor, batch_size: int, generator: torch.Generator) -> list[torch.Tensor]:
    """Shuffled index batches, each with its share of the events (so no batch is without a risk set
    to rank) — cases with and without the event are shuffled separately and dealt out evenly."""
    n_batches = max(1, round(len(event) / batch_size))
    with_event, without = (group[torch.randperm(len(group), generator=generator)]
                           for group in (torch.nonzero(event).flatten(), torch.nonzero(~event).flatten()))
    # tensor_split gives the first parts the extra members: pair them with the last parts of the other group.
    batches = [torch.cat([a, b]) for a, b in zip(torch.tensor_split(with_event, n_batches),
                                                 reversed(torch.tensor_split(without, n_batches)))]
    return [batch[torch.randperm(len(batch), generator=generator)] for batch in batches if len(batch)]


@dataclass
class EarlyStopping:
    """Keep the best state by a validation metric (higher is better) *smoothed over neighbouring
    epochs* — epoch k is judged by the mean of epochs k − h … k + h (``half_window`` h; fewer at the
    ends) — and stop after ``patience`` epochs without improvement. On a validation set of a few
    dozen patients the C-index of one epoch moves by ±0.05 by chance, and the raw maximum picked a
    lucky first epoch; the smoothed one picks a model that stays good. A metric that cannot be
    computed (NaN: a validation set without the pairs or classes it needs) is left out of the mean;
    if no epoch ever had one, the last is kept."""

    patience: int
    half_window: int = 1
    best_metric: float = -np.inf
    best_epoch: int = -1
    best_state: dict = field(default_factory=dict)
    metrics: list = field(default_factory=list)  # every epoch's metric
    pending: dict = field(default_factory=dict)  # epoch → state, for the epochs not judged yet

    def update(self, epoch: int, metric: float, network: torch.nn.Module) -> bool:
        """Record the epoch; True when training should stop."""
        self.metrics.append(metric)
        self.pending[epoch] = {k: v.detach().clone() for k, v in network.state_dict().items()}
        if epoch - self.half_window >= 0:  # that epoch's window is now complete
            self._judge(epoch - self.half_window)
        return epoch - max(self.best_epoch, 0) >= self.patience + self.half_window

    def _judge(self, epoch: int) -> None:
        window = self.metrics[max(epoch - self.half_window, 0):epoch + self.half_window + 1]
        finite = [m for m in window if np.isfinite(m)]
        state = self.pending.pop(epoch)
        if finite and np.mean(finite) > self.best_metric:
            self.best_metric, self.best_epoch, self.best_state = float(np.mean(finite)), epoch, state

    def restore_best(self, network: torch.nn.Module, last_epoch: int) -> int:
        """Load the best state into ``network``; returns the epoch it comes from."""
        for epoch in sorted(self.pending):  # the last epochs, judged with the neighbours they have
            self._judge(epoch)
        if not self.best_state:
            return last_epoch
        network.load_state_dict(self.best_state)
        return self.best_epoch


class TrainingLog:
    """One CSV row per epoch, and a PNG of the curves, in ``folder``."""

    def __init__(self, folder: Path | None, columns: list[str]):
        self.folder, self.columns, self.rows = folder, columns, []

    def add(self, **row) -> None:
        self.rows.append(row)
        self._write()

    def _write(self) -> None:
        if self.folder is None:
            return
        self.folder.mkdir(parents=True, exist_ok=True)
        with open(self.folder / "training_log.csv", "w", newline="", encoding="utf-8") as handle:
            writer = csv.DictWriter(handle, fieldnames=self.columns)
            writer.writeheader()
            writer.writerows(self.rows)

    @classmethod
    def write_ensemble(cls, folder: Path | None, runs: list[list[dict]], metric: str) -> None:
        """An ensemble's whole run in ``folder``: every member's rows with a ``member`` column, and
        their curves in one figure (each member also keeps its own log in ``member-k/``)."""
        if not runs:
            return
        log = cls(folder, ["member", *runs[0][0]])
        log.rows = [{"member": k, **row} for k, rows in enumerate(runs, start=1) for row in rows]
        log._write()
        log.plot(metric)

    def plot(self, metric: str) -> None:
        if self.folder is None or not self.rows:
            return
        from ..plots import pyplot

        plt = pyplot()
        figure, loss_axis = plt.subplots(figsize=(6, 4))
        metric_axis = loss_axis.twinx()
        runs = {}
        for row in self.rows:
            runs.setdefault(row.get("member"), []).append(row)
        for k, (member, rows) in enumerate(runs.items()):
            suffix, style = ("", "-") if member is None else (f", member {member}", ("-", "--", ":", "-.")[k % 4])
            epochs = [row["epoch"] for row in rows]
            loss_axis.plot(epochs, [row["train_loss"] for row in rows], style, label=f"training loss{suffix}",
                           color="tab:blue")
            metric_axis.plot(epochs, [row[metric] for row in rows], style, label=f"{metric}{suffix}", color="tab:red")
        loss_axis.set_xlabel("epoch")
        loss_axis.set_ylabel("training loss")
        metric_axis.set_ylabel(f"internal validation {metric}")
        figure.tight_layout(rect=(0, 0.06 * len(runs), 1, 1))  # room below for the legend
        figure.legend(loc="lower center", ncol=2, fontsize="small")
        figure.savefig(self.folder / "training_curves.png", dpi=120)
        plt.close(figure)


@dataclass
class TrainingRun:
    """A seeded run: random generator, process group, the network (and its DDP wrapper) and AdamW."""

    generator: torch.Generator
    distributed: Distributed
    network: torch.nn.Module
    model: torch.nn.Module
    optimiser: torch.optim.Optimizer

    @classmethod
    def start(cls, network_class, config: TrainingConfig, device: torch.device) -> TrainingRun:
        generator = seed_everything(config.seed)  # before the network, so its initial weights are seeded too
        distributed = Distributed.from_environment(device)
        network = network_class(**config.network).to(device)
        model = distributed.wrap(network, device)
        optimiser = torch.optim.AdamW(model.parameters(), lr=config.learning_rate, weight_decay=config.weight_decay)
        return cls(generator, distributed, network, model, optimiser)


def train_epochs(network, model, optimiser, distributed: Distributed, *, epochs: int, patience: int, batches,
                 batch_loss, validate, metric: str, smoothing: int = 1, log_folder=None,
                 progress: bool = True, label: str = "epochs") -> tuple[list[dict], int]:
    """The epoch loop every task shares: this rank's share of ``batches(epoch)``, ``batch_loss(index,
    epoch)`` minimised, ``validate()`` (higher is better) after each epoch, early stopping on it
    smoothed over ``smoothing`` epochs each side, the CSV log and curves. Returns (history rows, best epoch); ``network`` is left with the best epoch's weights."""
    from tqdm import tqdm

    stopping = EarlyStopping(patience, smoothing)
    log = TrainingLog(log_folder if distributed.main else None, ["epoch", "train_loss", metric, "seconds"])
    for epoch in tqdm(range(epochs), desc=label, unit="epoch", disable=not (progress and distributed.main)):
        start = time.perf_counter()
        model.train()
        losses = []
        for index in distributed.share(batches(epoch)):
            loss = batch_loss(index, epoch)
            optimiser.zero_grad()
            loss.backward()
            optimiser.step()
            losses.append(float(loss.detach()))
        value = validate()
        log.add(epoch=epoch, train_loss=float(np.mean(losses)) if losses else np.nan, **{metric: value},
                seconds=round(time.perf_counter() - start, 2))
        if stopping.update(epoch, value, network):
            break
    log.plot(metric)
    best_epoch = stopping.restore_best(network, len(log.rows) - 1)
    distributed.close()
    return log.rows, best_epoch


def train_members(train_one, config: TrainingConfig, log_folder, metric: str, card_metric: str):
    """``config.members`` networks trained alike from seeds seed, seed + 1, …: ``train_one(config_k,
    log_folder_k, label)`` → (network, history rows, best epoch, distributed) for each. Returns (the
    networks, the card's metrics — ``card_metric`` (the history's ``metric`` at the best epoch) and the
    best epoch; for an ensemble both per member with its seed, under ``members`` —, distributed). An
    ensemble's members log into ``member-1``, ``member-2``, … of ``log_folder``, and ``log_folder``
    gets the whole run (:meth:`TrainingLog.write_ensemble`)."""
    networks, members, histories = [], [], []
    for k in range(config.members):
        alone = config.members == 1
        folder = log_folder if alone or log_folder is None else Path(log_folder) / f"member-{k + 1}"
        network, history, best_epoch, distributed = train_one(
            replace(config, seed=config.seed + k), folder, "epochs" if alone else f"member {k + 1}/{config.members}, epochs")
        networks.append(network)
        histories.append(history)
        members.append({"seed": config.seed + k, "best_epoch": best_epoch, card_metric: history[best_epoch][metric]})
    if len(networks) == 1:
        return networks, {card_metric: members[0][card_metric], "best_epoch": members[0]["best_epoch"]}, distributed
    TrainingLog.write_ensemble(Path(log_folder) if log_folder is not None and distributed.main else None,
                               histories, metric)
    return networks, {"members": members}, distributed
