"""The package's small shared helpers: the atomic file writer."""

import os

import pytest

from fastmlp import _atomic


@pytest.mark.parametrize("failure", [OSError("disk full"), KeyboardInterrupt()])
def test_staged_files_land_only_on_commit(tmp_path, failure):
    first, second = _atomic.StagedFile(tmp_path / "a"), _atomic.StagedFile(tmp_path / "b")
    with first.write() as f:
        f.write(b"one")
    with pytest.raises(type(failure)), second.write() as f:
        f.write(b"two")
        raise failure
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted(
        os.path.basename(s.tmp) for s in (first, second))
    assert all(p.name.startswith(".") and p.name.endswith(".part") for p in tmp_path.iterdir())
    first.discard()
    second.discard()
    second.discard()  # twice, or never created: no error
    assert list(tmp_path.iterdir()) == []
    staged = _atomic.StagedFile(tmp_path / "c")
    with staged.write() as f:
        f.write(b"three")
    staged.commit()
    assert [p.name for p in tmp_path.iterdir()] == ["c"]
    assert (tmp_path / "c").read_bytes() == b"three"
