"""``load_summaries(path, mmap=True)``: the stored arrays as read-only memory maps, the same values bit for bit."""

from __future__ import annotations

import zipfile

import numpy as np
import pytest

from vaesim.similarity import compare, load_summaries, save_summaries, summarise


@pytest.fixture
def stored(tmp_path):
    rng = np.random.default_rng(0)
    # a features summary (p <= n/2), a Gram (n/2 < p <= n, Procrustes keeps the features too), a Gram + R (p > n)
    summaries = {f"l{k}": summarise(np.maximum(rng.standard_normal((60, p)), 0), name=f"l{k}",
                                    metrics=("cka", "cka_debiased", "procrustes"))
                 for k, p in enumerate([12, 45, 300])}
    path = tmp_path / "summaries.npz"
    save_summaries(path, summaries)
    return path, summaries


def test_mapped_summaries_hold_the_stored_values_and_score_the_same(stored):
    path, made = stored
    loaded, mapped = load_summaries(path), load_summaries(path, mmap=True)
    for layer, summary in made.items():
        for field in ("features", "gram", "r", "row_norms"):
            value = getattr(mapped[layer], field)
            if getattr(summary, field) is None:
                assert value is None
                continue
            assert isinstance(value, np.memmap) and not value.flags.writeable
            assert np.array_equal(value, getattr(summary, field))
    metrics = ("cka", "cka_debiased", "procrustes")
    by_file = compare({"a": loaded, "b": loaded}, metrics=metrics)
    by_map = compare({"a": mapped, "b": mapped}, metrics=metrics)
    assert np.array_equal(by_file["score"].to_numpy(), by_map["score"].to_numpy(), equal_nan=True)


def test_compressed_members_are_read_as_usual(stored, tmp_path):
    path, made = stored
    squeezed = tmp_path / "compressed.npz"
    with zipfile.ZipFile(path) as source, zipfile.ZipFile(squeezed, "w", zipfile.ZIP_DEFLATED) as target:
        for info in source.infolist():
            target.writestr(info.filename, source.read(info.filename))
    mapped = load_summaries(squeezed, mmap=True)
    assert not any(isinstance(s.row_norms, np.memmap) for s in mapped.values())
    assert all(np.array_equal(mapped[k].row_norms, made[k].row_norms) for k in made)


def test_a_truncated_file_is_refused_not_mapped_past_its_end(stored, tmp_path):
    path, _made = stored
    cut = tmp_path / "cut.npz"
    cut.write_bytes(path.read_bytes()[: path.stat().st_size // 2])
    with pytest.raises(Exception):  # noqa: B017 - zipfile or numpy names the damage; never a map past the end
        load_summaries(cut, mmap=True)
