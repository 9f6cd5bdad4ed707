"""The batch cache shared by the runs of one seed: identical batches and identical students, read or composed,
keyed by everything a sample depends on; and the teacher cache's one entry per batch for every configuration."""

from __future__ import annotations

import pytest
import torch
from fixtures_adobe import make_tiny_adobe
from torch.utils.data import DataLoader

from matting_lib.data.batch_cache import BATCH_KEYS, BatchCache
from matting_lib.data.datasets import MattingTrainDataset, train_val_sets
from matting_lib.data.layout import DatasetLayout
from matting_lib.distillation.distill import PAPER_CONFIGS, DistillObjective
from matting_lib.distillation.teacher_cache import TeacherOutputCache
from matting_lib.networks.models import build_student, build_teacher
from matting_lib.settings import TrainConfig
from matting_lib.training.loop import train


@pytest.fixture(scope="module")
def adobe(tmp_path_factory):
    return DatasetLayout.for_root(make_tiny_adobe(tmp_path_factory.mktemp("a") / "adobe", size=(64, 80)))


def test_cached_batches_equal_the_dataloaders_read_or_composed(adobe, tmp_path):
    ds = MattingTrainDataset(adobe, adobe.fg_names("train"), crop_size=32, seed=1)
    ds.set_epoch(2)
    order = [5, 0, 3, 1]
    plain = list(DataLoader(ds, batch_size=2, sampler=order))
    cache = BatchCache(tmp_path / "c")
    for expected_misses, expected_hits in ((2, 0), (2, 2)):  # composed and stored, then read
        got = list(DataLoader(cache.view(ds, [order[:2], order[2:]], 2), batch_size=None))
        assert (cache.misses, cache.hits) == (expected_misses, expected_hits)
        for a, b in zip(plain, got):
            assert set(b) == set(BATCH_KEYS) and all(torch.equal(a[k], b[k]) for k in BATCH_KEYS)


def test_batch_key_covers_what_a_sample_depends_on(adobe, tmp_path):
    names = adobe.fg_names("train")
    base = MattingTrainDataset(adobe, names, crop_size=32, seed=1)
    ids = {base.cache_identity(),
           MattingTrainDataset(adobe, names, crop_size=32, seed=2).cache_identity(),
           MattingTrainDataset(adobe, names, crop_size=40, seed=1).cache_identity(),
           MattingTrainDataset(adobe, names[:-1], crop_size=32, seed=1).cache_identity(),
           MattingTrainDataset(adobe, names, crop_size=32, seed=1, jitter=0.0).cache_identity(),
           MattingTrainDataset(adobe, names, crop_size=32, seed=1, legacy_trimap=True).cache_identity()}
    assert len(ids) == 6
    assert MattingTrainDataset(adobe, names, crop_size=32, seed=1).cache_identity() == base.cache_identity()
    cache = BatchCache(tmp_path)
    d = cache.dataset_id(base)
    assert len({cache.key(d, 0, [1, 2]), cache.key(d, 1, [1, 2]), cache.key(d, 0, [2, 1])}) == 3
    with pytest.raises(TypeError, match="cache_identity"):
        cache.view(list(range(4)), [[0, 1]], 0)


def test_damaged_entry_is_recomposed_and_rewritten(adobe, tmp_path):
    ds = MattingTrainDataset(adobe, adobe.fg_names("train"), crop_size=32, seed=1)
    cache = BatchCache(tmp_path)
    first = cache.view(ds, [[0, 1]], 0)[0]
    d = cache.dataset_id(ds)
    path = cache.path(d, cache.key(d, 0, [0, 1]))
    path.write_bytes(b"damaged")
    again = cache.view(ds, [[0, 1]], 0)[0]
    assert cache.misses == 2 and torch.equal(first["input"], again["input"])
    assert torch.equal(torch.load(path, weights_only=True)["input"], first["input"])


def _train(adobe, run_dir, config, *, batch_cache=None, teacher_cache=None, steps=3, workers=0):
    torch.manual_seed(0)
    teacher, student = build_teacher(0.0625), build_student(0.0625)
    train_set, val_set = train_val_sets(adobe, crop_size=32, seed=1, split_seed=0, val_fraction=0.34, val_samples=3)
    obj = DistillObjective(teacher, student, PAPER_CONFIGS[config], teacher_cache=teacher_cache)
    cfg = TrainConfig(lr=1e-2, batch_size=2, steps=steps, val_every=2, seed=1, device="cpu", progress=False,
                      num_workers=workers)
    result = train(student, obj, train_set, val_set, cfg, run_dir, batch_cache=batch_cache)
    return student.state_dict(), result


@pytest.mark.parametrize("config", ["student", "spatial+channel"])
def test_students_with_the_batch_cache_are_bit_identical(adobe, tmp_path, config):
    """Composing the batches (no cache), storing them (cold) and reading them (warm; the warm run with two
    DataLoader workers) train exactly the same student, validation losses included."""
    plain, r0 = _train(adobe, tmp_path / "plain", config)
    cache = BatchCache(tmp_path / "batches")
    cold, r1 = _train(adobe, tmp_path / "cold", config, batch_cache=cache)
    # 3 training batches and 2 validation batches composed; the second validation (step 3) reads its 2
    assert (cache.misses, cache.hits) == (5, 2)
    warm_cache = BatchCache(tmp_path / "batches")
    warm, r2 = _train(adobe, tmp_path / "warm", config, batch_cache=warm_cache)
    assert (warm_cache.misses, warm_cache.hits) == (0, 7)
    workers, r3 = _train(adobe, tmp_path / "workers", config, batch_cache=BatchCache(tmp_path / "batches"), workers=2)
    for got, r in ((cold, r1), (warm, r2), (workers, r3)):
        assert all(torch.equal(plain[k], got[k]) for k in plain)
        assert r.best_val_loss == r0.best_val_loss and r.last_loss == r0.last_loss


def test_batch_cache_resume_mid_epoch_equals_uninterrupted(adobe, tmp_path):
    cache = BatchCache(tmp_path / "batches")
    full, _ = _train(adobe, tmp_path / "full", "student", steps=5)
    torch.manual_seed(0)
    _teacher, student = build_teacher(0.0625), build_student(0.0625)  # as _train builds them: the same initial weights
    train_set, val_set = train_val_sets(adobe, crop_size=32, seed=1, split_seed=0, val_fraction=0.34, val_samples=3)
    obj = DistillObjective(None, student, PAPER_CONFIGS["student"])
    cfg = TrainConfig(lr=1e-2, batch_size=2, steps=5, val_every=2, seed=1, device="cpu", progress=False,
                      stop_after_steps=3)
    train(student, obj, train_set, val_set, cfg, tmp_path / "r", batch_cache=cache)
    resumed, result = _train(adobe, tmp_path / "r", "student", steps=5, batch_cache=cache)
    assert result.step == 5 and all(torch.equal(full[k], resumed[k]) for k in full)


def test_hinton_and_feature_runs_share_one_teacher_entry_per_batch(adobe, tmp_path):
    """The teacher cache stores conv2-5 with every entry, so Hinton (alpha only) and the feature configurations of
    a seed compute the teacher once per batch, and each still trains the student it trains without the cache."""
    batches = BatchCache(tmp_path / "b")
    plain_h, _ = _train(adobe, tmp_path / "ph", "hinton", batch_cache=batches)
    plain_a, _ = _train(adobe, tmp_path / "pa", "at", batch_cache=batches)
    first = TeacherOutputCache(tmp_path / "t", "teacher")
    cached_h, _ = _train(adobe, tmp_path / "ch", "hinton", batch_cache=batches, teacher_cache=first)
    second = TeacherOutputCache(tmp_path / "t", "teacher")
    cached_a, _ = _train(adobe, tmp_path / "ca", "at", batch_cache=batches, teacher_cache=second)
    assert first.misses == 3 and second.misses == 0 and second.hits == 3
    assert all(torch.equal(plain_h[k], cached_h[k]) for k in plain_h)
    assert all(torch.equal(plain_a[k], cached_a[k]) for k in plain_a)
