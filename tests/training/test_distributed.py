"""Data-parallel training on the CPU: 2 processes with gloo under torchrun, a tiny network.

One torchrun launch (tests/training/ddp_worker.py) trains an uninterrupted run through the CLI
(``unetkit train --set ...``), one that rank 1 stops with SIGTERM, resumes that one through
the CLI (``--resume``), and trains under a 3 s budget with one rank slowed down.  Against them:
a one-process run whose batch holds both ranks' tiles (batch 2), and a one-process resume of
the stopped run (a different process count with the same global batch).
"""

import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from unetkit.config import apply_overrides, preset
from unetkit.data.synthetic import write_dataset
from unetkit.model.modelfile import load_model
from unetkit.training import CHECKPOINT, MODEL, load_checkpoint, train
from unetkit.training.distributed import Parallel, check_global_batch, setup

WORKER = Path(__file__).with_name("ddp_worker.py")
# per-process batch 1; dropout off: its masks are drawn per rank (training.distributed)
# valid convs without batch norm: batch statistics are per process (no SyncBatchNorm), so a
# batch-norm network under DDP is not the one-process run
TINY = ["model.padding=valid", "model.batch_norm=false",
        "model.base_channels=4", "model.depth=2", "model.dropout=0", "train.tile_size=84",
        "train.minutes=null", "train.iterations=5", "train.val_interval=3",
        "train.warmup_iterations=2", "train.lr=0.001", "train.optimizer=sgd",
        "train.momentum=0.99", "train.batch_size=1"]


def _torchrun(*args, cwd):
    env = {**os.environ, "OMP_NUM_THREADS": "1",
           "PYTHONPATH": os.pathsep.join(filter(None, [str(Path(__file__).parents[2] / "src"),
                                                       os.environ.get("PYTHONPATH")]))}
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2",
           *args]
    done = subprocess.run(cmd, cwd=cwd, env=env, capture_output=True, text=True, timeout=240)
    return done


def _torchrun_cli(tmp_path: Path, *extra: str) -> Path:
    """``torchrun -m unetkit train`` (``train`` owns the group) with 2 processes: the run folder,
    checked to have ended at step 5 with both processes' global batch."""
    write_dataset(tmp_path / "cells", 4, (96, 96), seed=2, n_cells=7)
    sets = [a for s in TINY for a in ("--set", s)]
    done = _torchrun("-m", "unetkit", "train", "--images", str(tmp_path / "cells" / "images"),
                     "--labels", str(tmp_path / "cells" / "labels"), "--out",
                     str(tmp_path / "run"), *extra, *sets, cwd=tmp_path)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    ckpt = load_checkpoint(tmp_path / "run" / CHECKPOINT)
    assert ckpt["step"] == 5 and ckpt["parallel"] == {"world_size": 2, "global_batch": 2}
    return tmp_path / "run"


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    root = tmp_path_factory.mktemp("ddp")
    write_dataset(root / "cells", 4, (96, 96), seed=2, n_cells=7)
    images, labels = root / "cells" / "images", root / "cells" / "labels"
    done = _torchrun(str(WORKER), str(images), str(labels), str(root), *TINY, cwd=root)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    return root, images, labels


def _close(a: Path, b: Path, atol: float, rtol: float = 0.0) -> None:
    sa, sb = load_checkpoint(a / CHECKPOINT), load_checkpoint(b / CHECKPOINT)
    assert sa["step"] == sb["step"]
    for key, tensor in sa["model"].items():
        torch.testing.assert_close(tensor, sb["model"][key], atol=atol, rtol=rtol, msg=key)
    for key, st in sa["optimizer"]["state"].items():  # momentum too
        for name, value in st.items():
            torch.testing.assert_close(torch.as_tensor(value),
                                       torch.as_tensor(sb["optimizer"]["state"][key][name]),
                                       atol=atol, rtol=rtol)


def test_two_processes_train_in_sync_and_rank0_writes(runs):
    root, _, _ = runs
    full = root / "full"
    ckpt = load_checkpoint(full / CHECKPOINT)
    assert ckpt["step"] == 5
    assert ckpt["parallel"] == {"world_size": 2, "global_batch": 2}
    rows = (full / "metrics.csv").read_text().splitlines()
    assert len(rows) == 6 and [r.split(",")[0] for r in rows[1:]] == ["1", "2", "3", "4", "5"]
    assert rows[3].split(",")[5] != ""  # validated at step 3, once (rank 0 alone writes)
    assert (full / "curves.png").is_file() and (full / "model.safetensors").is_file()
    # the in-sync check reports a parameter changed on one rank
    for rank in (0, 1):
        same, perturbed = map(float, (root / f"divergence_rank{rank}.txt").read_text().split())
        assert same == 0.0 and perturbed == pytest.approx(0.25)


def test_a_time_budget_ends_all_ranks_at_the_same_step(runs):
    root, _, _ = runs
    steps = {(root / f"budget_rank{rank}.txt").read_text() for rank in (0, 1)}
    assert steps == {str(load_checkpoint(root / "budget" / CHECKPOINT)["step"])}


def test_equals_one_process_with_both_ranks_tiles(runs, tmp_path):
    root, images, labels = runs
    one = tmp_path / "one"
    train(apply_overrides(preset("default"), [*TINY, "train.batch_size=2"]), images, labels, one)
    _close(root / "full", one, atol=1e-6, rtol=1e-5)
    a = (root / "full" / "metrics.csv").read_text().splitlines()[1:]
    b = (one / "metrics.csv").read_text().splitlines()[1:]
    for ra, rb in zip(a, b, strict=True):  # the logged loss is the global batch's mean
        assert float(ra.split(",")[2]) == pytest.approx(float(rb.split(",")[2]), rel=1e-5)


def test_sigterm_on_one_rank_stops_all_and_resume_is_exact(runs):
    root, _, _ = runs
    for rank in (0, 1):  # the signal reached rank 1 only; both stopped at the same step
        assert (root / f"stopped_rank{rank}.txt").read_text() == "SIGTERM 2"
        assert (root / f"status_rank{rank}.txt").read_text() == "0 0"  # CLI: full, resume
    assert load_checkpoint(root / "cut_one_process" / CHECKPOINT)["step"] == 2
    _close(root / "full", root / "cut", atol=0.0)  # the same 2 processes resumed: bitwise
    rows = (root / "cut" / "metrics.csv").read_text().splitlines()
    assert [r.split(",")[0] for r in rows[1:]] == ["1", "2", "3", "4", "5"]


def test_resume_with_another_process_count_same_global_batch(runs):
    root, images, labels = runs
    cut = root / "cut_one_process"
    train(apply_overrides(preset("default"), [*TINY, "train.batch_size=2"]), images, labels, cut,
          resume=True)
    _close(root / "full", cut, atol=1e-6, rtol=1e-5)


def test_resume_with_another_global_batch_is_refused(runs):
    root, images, labels = runs
    with pytest.raises(ValueError, match="global batch would be 1 process"):
        train(apply_overrides(preset("default"), TINY), images, labels, root / "full",
              resume=True)


def test_single_process_without_torchrun_is_a_no_op(monkeypatch):
    monkeypatch.delenv("WORLD_SIZE", raising=False)
    par = setup("cpu")
    assert (par.rank, par.world, par.main, par.active) == (0, 1, True, False)
    model = torch.nn.Linear(2, 2)
    assert par.wrap(model) is model and par.divergence(model) == 0.0
    assert par.agree_elapsed(3.5) == 3.5 and par.agree_stop("SIGINT") == "SIGINT"
    assert par.share({"a": 1}) == {"a": 1} and par.dropout_seed(7) == 7
    assert Parallel(rank=1, world=2).dropout_seed(7) != 7


def test_setup_without_torchrun_variables_fails_loudly(monkeypatch):
    monkeypatch.setenv("WORLD_SIZE", "2")
    for key in ("RANK", "MASTER_ADDR"):
        monkeypatch.delenv(key, raising=False)
    with pytest.raises(ValueError, match="launch with torchrun"):
        setup("cpu")


def test_old_checkpoint_counts_as_one_process():
    ckpt = {"config": {"train": {"batch_size": 2}}}
    check_global_batch(ckpt, Parallel(), 2)
    check_global_batch(ckpt, Parallel(rank=0, world=2), 1)
    with pytest.raises(ValueError, match="the run used 2"):
        check_global_batch(ckpt, Parallel(rank=0, world=2), 2)


def test_torchrun_runs_the_cli_itself_and_every_rank_exits_cleanly(tmp_path):
    """``train`` sets up the group and closes it; rank 1 waits at that close while rank 0
    chooses the post-processing (a group torn down under it aborted rank 1 now and then)."""
    run = _torchrun_cli(tmp_path)
    meta = load_model(run / MODEL).meta  # rank 0 finished after the last step
    assert "validation" in meta["training"] and "threshold" in meta["postprocess"]


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_setup_picks_the_local_gpu(monkeypatch):
    monkeypatch.delenv("WORLD_SIZE", raising=False)
    assert setup("cuda").device.type == "cuda"


@pytest.mark.skipif(torch.cuda.device_count() < 2, reason="needs 2 GPUs")
def test_two_gpus_train_with_nccl(tmp_path):
    _torchrun_cli(tmp_path, "--device", "cuda")
