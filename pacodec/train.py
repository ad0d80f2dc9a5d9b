"""One readable training loop for every registered model.

Adam on the model's own loss (MSE; the VAE's BCE + KL; rate + distortion for the pac
family), a checkpoint every epoch (safetensors for tensors, JSON for the rest, so
nothing is pickled) that ``resume`` continues from, train and validation loss per
epoch in ``log.csv``, and at the end the weights plus a manifest entry in the output
directory. Under ``torchrun`` it runs as DistributedDataParallel (gloo on CPU, NCCL on
GPUs), each process training on its own shard of the frames.

A run never destroys another: an output folder that already holds a run of the same
id is refused unless the run is resumed or ``force`` says to start over. After each
epoch ``on_epoch`` hears the losses (the CLI prints them), and where TensorBoard is
installed they go to ``<out>/tensorboard/<run>`` as well.
"""

from __future__ import annotations

import csv
import hashlib
import json
import math
import os
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from safetensors.torch import load_file, save_file

from . import zoo
from .errors import OutputError
from .models import CodecModel, build_model
from .models.base import frames_to_tensor


def checkpoint_paths(out_dir: Path, model_id: str) -> tuple[Path, Path, Path]:
    """(tensors, state, log) of a model's run: named by id, so runs can share a folder."""
    return (out_dir / f"{model_id}.checkpoint.safetensors", out_dir / f"{model_id}.checkpoint.json",
            out_dir / f"{model_id}.log.csv")


@dataclass
class TrainConfig:
    model_id: str
    out_dir: Path
    epochs: int = 10
    batch_size: int = 16
    lr: float = 1e-3
    seed: int = 0
    time_limit_min: float | None = None
    resume: bool = False
    device: str = "cpu"
    model_config: dict[str, Any] | None = None
    crop: int | None = None  # train on random crop×crop windows (fully convolutional models)
    init: Path | None = None  # start from these weights (tensors matched by name and shape)
    block: int | None = None  # block models: train only this block's sub-model (models/fc.py)
    pca: bool = False  # start from the model's closed-form PCA solution on the training frames
    data_description: list[str] = field(default_factory=list)
    command: str = ""
    force: bool = False  # start over in a folder that holds a run of this id


def run_name(model_id: str, block: int | None = None) -> str:
    """A run is named by its id, or <id>.blockKK when it trains one block of a block model."""
    if block is None:
        return model_id
    from .models.fc import shard_name

    return shard_name(model_id, block)


def run_files(out_dir: Path, run: str) -> list[Path]:
    """The files of ``run`` that ``out_dir`` holds (checkpoint, log, weights)."""
    tensors, state, log = checkpoint_paths(out_dir, run)
    return [p for p in (tensors, state, log, out_dir / f"{run}.safetensors") if p.exists()]


def check_run_target(out_dir: Path, run: str, *, resume: bool, force: bool) -> None:
    """Refuse to train into a folder that holds a run of the same name, unless it is
    resumed (--resume) or started over on purpose (--force): the weights, checkpoint
    and log of a run that took hours are not overwritten by a rerun of its command."""
    if out_dir.exists() and not out_dir.is_dir():
        raise OutputError(f"{out_dir}: exists and is not a folder")
    if resume or force:
        return
    found = run_files(out_dir, run)
    if found:
        names = ", ".join(p.name for p in found)
        raise OutputError(f"{out_dir}: already holds a training run of {run} ({names}); "
                          "pass --resume to continue it, --force to start over, or another --output")


def _tensorboard(out_dir: Path, run: str) -> Any:
    """A TensorBoard SummaryWriter under <out>/tensorboard/<run>, or None where
    TensorBoard is not installed (it is optional: the CSV log always exists)."""
    try:
        from torch.utils.tensorboard import SummaryWriter
    except ImportError:  # torch raises this when the tensorboard package is absent
        return None
    return SummaryWriter(log_dir=str(out_dir / "tensorboard" / run))


@dataclass
class Distributed:
    rank: int = 0
    world: int = 1
    local_rank: int = 0

    @property
    def main(self) -> bool:
        return self.rank == 0


def _distributed(device: str) -> Distributed:
    world = int(os.environ.get("WORLD_SIZE", "1"))
    if world <= 1:
        return Distributed()
    import torch.distributed as dist

    if not dist.is_initialized():
        dist.init_process_group("nccl" if device.startswith("cuda") else "gloo")
    return Distributed(dist.get_rank(), dist.get_world_size(), int(os.environ.get("LOCAL_RANK", 0)))


def _optimizer_tensors(opt: torch.optim.Optimizer) -> tuple[dict[str, torch.Tensor], dict[str, Any]]:
    """Split Adam's state into tensors (for safetensors) and plain values (for JSON)."""
    state = opt.state_dict()
    tensors: dict[str, torch.Tensor] = {}
    plain: dict[str, Any] = {"param_groups": state["param_groups"], "state": {}}
    for pid, pstate in state["state"].items():
        plain["state"][str(pid)] = {}
        for key, value in pstate.items():
            if torch.is_tensor(value):
                tensors[f"optimizer.{pid}.{key}"] = value.detach().cpu().contiguous()
            else:
                plain["state"][str(pid)][key] = value
    return tensors, plain


def _restore_optimizer(opt: torch.optim.Optimizer, tensors: dict[str, torch.Tensor],
                       plain: dict[str, Any]) -> None:
    state: dict[str, Any] = {"param_groups": plain["param_groups"], "state": {}}
    for pid, values in plain["state"].items():
        state["state"][int(pid)] = dict(values)
    for name, value in tensors.items():
        _, pid, key = name.split(".", 2)
        state["state"].setdefault(int(pid), {})[key] = value
    opt.load_state_dict(state)


def save_checkpoint(out_dir: Path, model: CodecModel, opt: torch.optim.Optimizer,
                    info: dict[str, Any], name: str | None = None) -> None:
    tensors_path, state_path, _ = checkpoint_paths(out_dir, name or model.model_id)
    tensors = {f"model.{k}": v.detach().cpu().contiguous() for k, v in model.state_dict().items()}
    opt_tensors, opt_plain = _optimizer_tensors(opt)
    tensors.update(opt_tensors)
    # Write then rename, so a kill during the write leaves the previous checkpoint.
    tmp = tensors_path.with_name(tensors_path.name + ".partial")
    save_file(tensors, str(tmp))
    os.replace(tmp, tensors_path)
    state = {**info, "optimizer": opt_plain, "model_id": model.model_id,
             "config": model.config_dict()}
    tmp = state_path.with_name(state_path.name + ".partial")
    tmp.write_text(json.dumps(state, indent=1))
    os.replace(tmp, state_path)


def load_checkpoint(out_dir: Path, model: CodecModel, opt: torch.optim.Optimizer,
                    name: str | None = None) -> dict[str, Any]:
    tensors_path, state_path, _ = checkpoint_paths(out_dir, name or model.model_id)
    info = json.loads(state_path.read_text())
    tensors = load_file(str(tensors_path))
    model.load_state_dict({k[6:]: v for k, v in tensors.items() if k.startswith("model.")})
    _restore_optimizer(opt, {k: v for k, v in tensors.items() if k.startswith("optimizer.")},
                       info["optimizer"])
    return info


@torch.no_grad()
def evaluate_loss(model: CodecModel, frames: np.ndarray, batch_size: int, device: str) -> float:
    model.eval()
    total, count = 0.0, 0
    for start in range(0, len(frames), batch_size):
        images = frames_to_tensor(frames[start : start + batch_size], device)
        loss, _ = model.loss(images)
        total += float(loss) * len(images)
        count += len(images)
    return total / max(count, 1)


def learning_rate(base: float, epoch: int, epochs: int) -> float:
    """Cosine decay from ``base`` to ``base/10`` over the run (set each epoch, so a
    resumed run follows the schedule of its --epochs and --lr)."""
    progress = epoch / max(epochs - 1, 1)
    return base * (0.1 + 0.9 * 0.5 * (1 + math.cos(math.pi * min(progress, 1.0))))


def state_path_exists(out_dir: Path, model_id: str) -> bool:
    return checkpoint_paths(out_dir, model_id)[1].is_file()


def init_from(model: CodecModel, path: Path) -> int:
    """Copy tensors of a safetensors file into ``model`` where a name matches, directly
    or under one of the model's submodule prefixes (e.g. conv4's ``down.*`` into a pac
    model's ``ae.down.*``), with the same shape. Returns how many were copied."""
    from safetensors.torch import load

    from .errors import WeightsError
    from .inputs import open_regular

    try:
        with open_regular(path, error=WeightsError, what="a weights file") as f:  # never a FIFO or device
            tensors = load(f.read())
    except WeightsError:
        raise
    except Exception as exc:  # safetensors raises its own error types
        raise WeightsError(f"{path}: cannot read initial weights ({exc})") from None
    state = model.state_dict()
    copied = 0
    for name, value in state.items():
        for candidate in (name, name.split(".", 1)[-1]):
            if candidate in tensors and tensors[candidate].shape == value.shape:
                value.copy_(tensors[candidate].to(value.dtype))
                copied += 1
                break
    if copied == 0:
        raise WeightsError(f"{path}: no tensor fits {model.model_id}")
    return copied


def random_crops(frames: np.ndarray, size: int, rng: np.random.Generator) -> np.ndarray:
    """One random size×size window of each N×H×W×3 frame."""
    n, h, w, _ = frames.shape
    size_h, size_w = min(size, h), min(size, w)
    ys = rng.integers(0, h - size_h + 1, n)
    xs = rng.integers(0, w - size_w + 1, n)
    return np.stack([f[y : y + size_h, x : x + size_w] for f, y, x in zip(frames, ys, xs)])


def weights_digest(model: torch.nn.Module) -> str:
    h = hashlib.sha256()
    for k, v in sorted(model.state_dict().items()):
        h.update(k.encode())
        h.update(v.detach().cpu().contiguous().numpy().tobytes())
    return h.hexdigest()


def train(
    cfg: TrainConfig,
    train_frames: np.ndarray,
    val_frames: np.ndarray | None = None,
    *,
    progress: Callable[[int, int, dict[str, float]], None] | None = None,
    on_epoch: Callable[[dict[str, Any]], None] | None = None,
) -> dict[str, Any]:
    """Train ``cfg.model_id`` on N×H×W×3 uint8 frames; returns a summary dict.

    ``progress(step, steps_per_epoch, logs)`` is called after every batch (the CLI
    draws a bar with it), ``on_epoch({"epoch", "epochs", "train_loss", "val_loss",
    "seconds"})`` after every epoch (val_loss is None without validation frames). Stops
    early, after a whole epoch, when ``time_limit_min`` would be exceeded by another
    epoch. Raises OutputError when ``cfg.out_dir`` holds a run of this id and neither
    ``cfg.resume`` nor ``cfg.force`` is set.
    """
    from .device import check_device

    check_device(cfg.device)
    out_dir = Path(cfg.out_dir)
    # Before any process group or file: every rank sees the folder as it was.
    check_run_target(out_dir, run_name(cfg.model_id, cfg.block), resume=cfg.resume, force=cfg.force)
    out_dir.mkdir(parents=True, exist_ok=True)
    dist_info = _distributed(cfg.device)
    device = cfg.device
    if device.startswith("cuda") and dist_info.world > 1:
        device = f"cuda:{dist_info.local_rank}"
    torch.manual_seed(cfg.seed)
    rng = np.random.default_rng(cfg.seed + dist_info.rank)

    run = run_name(cfg.model_id, cfg.block)
    model_config = cfg.model_config
    if cfg.block is not None:
        model_config = {**(model_config or {}), "blocks": [cfg.block]}
    model = build_model(cfg.model_id, model_config)
    if hasattr(model, "materialize"):
        model.materialize()  # big models are built on the meta device (models/fc.py)
    model = model.to(device)
    fresh = not (cfg.resume and state_path_exists(out_dir, run))
    if cfg.init is not None and fresh:
        init_from(model, Path(cfg.init))
    pca_summary = None
    if cfg.pca and fresh:
        # Every rank computes it from all the frames; DDP then broadcasts rank 0's anyway.
        pca_summary = model.pca_init(train_frames)
    opt = torch.optim.Adam(model.parameters(), lr=cfg.lr)
    start_epoch = 0
    _, state_path, log_path = checkpoint_paths(out_dir, run)
    if cfg.resume and state_path.is_file():
        info = load_checkpoint(out_dir, model, opt, run)
        start_epoch = int(info["epoch"])
        rng = np.random.default_rng([cfg.seed + dist_info.rank, start_epoch])
    net: torch.nn.Module = model
    if dist_info.world > 1:
        from torch.nn.parallel import DistributedDataParallel

        net = DistributedDataParallel(model, device_ids=[device] if device.startswith("cuda") else None)
    # Each process trains on its own shard; shards have equal length so every rank
    # runs the same number of steps (DDP needs matching all-reduce calls).
    shard_len = len(train_frames) // dist_info.world
    shard = train_frames[dist_info.rank * shard_len : (dist_info.rank + 1) * shard_len]
    steps = max(1, math.ceil(len(shard) / cfg.batch_size))

    if dist_info.main and not (cfg.resume and log_path.is_file()):
        log_path.write_text("epoch,train_loss,val_loss,seconds,frames\n")
        if pca_summary is not None and val_frames is not None and len(val_frames):
            # Epoch 0: where the closed-form start stands, so Adam's epochs compare to it.
            start_val = evaluate_loss(model, val_frames, cfg.batch_size, device)
            with open(log_path, "a", newline="") as f:
                csv.writer(f).writerow([0, "", f"{start_val:.6g}", "0.0", len(shard) * dist_info.world])
    board = None
    if dist_info.main and cfg.epochs > start_epoch:
        if cfg.force and not cfg.resume:  # starting over: the old run's curves go with it
            import shutil

            shutil.rmtree(out_dir / "tensorboard" / run, ignore_errors=True)
        board = _tensorboard(out_dir, run)
    started = time.monotonic()
    epoch_seconds = 0.0
    epoch = start_epoch
    for epoch in range(start_epoch, cfg.epochs):
        if cfg.time_limit_min is not None:
            spent = time.monotonic() - started
            if spent + epoch_seconds > cfg.time_limit_min * 60:
                break
        t0 = time.monotonic()
        for group in opt.param_groups:  # cosine decay to a tenth of lr over the run
            group["lr"] = learning_rate(cfg.lr, epoch, cfg.epochs)
        net.train()
        order = rng.permutation(len(shard))
        total = 0.0
        for step in range(steps):
            idx = np.sort(order[step * cfg.batch_size : (step + 1) * cfg.batch_size])
            batch = shard[idx]
            if cfg.crop:
                batch = random_crops(batch, cfg.crop, rng)
            images = frames_to_tensor(batch, device)
            # Forward through the (possibly DDP) wrapper so gradients are all-reduced.
            loss, logs = model.criterion(images, net(images))
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            total += float(loss.detach())
            if progress is not None and dist_info.main:
                progress(step + 1, steps, {"loss": total / (step + 1), **logs})
        train_loss = total / steps
        val_loss = (evaluate_loss(model, val_frames, cfg.batch_size, device)
                    if val_frames is not None and len(val_frames) else float("nan"))
        epoch_seconds = time.monotonic() - t0
        if dist_info.main:
            with open(log_path, "a", newline="") as f:
                csv.writer(f).writerow([epoch + 1, f"{train_loss:.6g}", f"{val_loss:.6g}",
                                        f"{epoch_seconds:.1f}", len(shard) * dist_info.world])
            save_checkpoint(out_dir, model, opt, {"epoch": epoch + 1, "seed": cfg.seed}, run)
            has_val = not math.isnan(val_loss)
            if board is not None:
                board.add_scalar("loss/train", train_loss, epoch + 1)
                if has_val:
                    board.add_scalar("loss/val", val_loss, epoch + 1)
                board.add_scalar("lr", opt.param_groups[0]["lr"], epoch + 1)
                board.flush()
            if on_epoch is not None:
                on_epoch({"epoch": epoch + 1, "epochs": cfg.epochs, "train_loss": train_loss,
                          "val_loss": val_loss if has_val else None, "seconds": epoch_seconds})
        epoch += 1
    if board is not None:
        board.close()
    completed = epoch if cfg.epochs > start_epoch else start_epoch
    if dist_info.world > 1:
        # DDP broadcasts rank 0's buffers before each forward, but the last forward
        # updated every rank's BatchNorm statistics with its own batch: take rank 0's
        # (the ones saved), so every rank ends with the same weights.
        import torch.distributed as dist

        for buffer in model.buffers():
            dist.broadcast(buffer.data, 0)

    summary: dict[str, Any] = {"model": cfg.model_id, "epochs": completed, "pca": pca_summary,
                               "weights_digest": weights_digest(model), "rank": dist_info.rank,
                               "world": dist_info.world}
    model = model.cpu()  # tables and weights are made and saved on the CPU, whatever trained them
    if hasattr(model, "freeze_tables"):
        model.freeze_tables()  # integer entropy tables from the learned densities
    if hasattr(model, "fit_refinement"):
        # refined pac levels: their residual tables are counted, not learned by Adam
        summary["refinement"] = model.fit_refinement(train_frames)
    if dist_info.main:
        spec = zoo.spec_of(cfg.model_id)
        weights_file = f"{run}.safetensors"
        sha = zoo.save(model, out_dir / weights_file, half_precision=spec.half_precision)
        entry = {
            "id": cfg.model_id, "file": weights_file, "sha256": sha, "family": spec.family,
            "config": model.config_dict(),
            "training": {"data": cfg.data_description, "epochs": completed,
                         "batch_size": cfg.batch_size, "lr": cfg.lr, "seed": cfg.seed,
                         "frames": int(len(train_frames)), "command": cfg.command},
        }
        if cfg.pca:
            entry["training"]["init"] = "pca"  # epochs counts the Adam epochs after it
        if cfg.block is None:
            zoo.write_manifest_entry(out_dir, entry)
        else:  # a shard: its facts beside it; the 16 shards become <id>.safetensors
            from .models.fc import assemble_blocks

            entry["training"]["block"] = cfg.block
            (out_dir / f"{run}.json").write_text(json.dumps(entry, indent=1) + "\n")
            summary["assembled"] = assemble_blocks(out_dir, cfg.model_id) is not None
        summary["sha256"] = sha
        summary["weights"] = str(out_dir / weights_file)
    (out_dir / f"{run}.rank{dist_info.rank}.digest").write_text(summary["weights_digest"] + "\n")
    if dist_info.world > 1:
        # Leave together and close the process group. This is not enough on its own:
        # after DDP has run, gloo's worker threads outlive destroy_process_group (the
        # C++ reducer keeps the group), and about one process exit in ten then dies in
        # interpreter teardown with SIGABRT ("terminate called without an active
        # exception"; see pytorch/pytorch#179291), failing the torchrun job after the
        # work is done. The CLI therefore ends a multi-process run with os._exit.
        import torch.distributed as dist

        dist.barrier()
        dist.destroy_process_group()
    return summary
