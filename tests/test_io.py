import os
import stat

import pytest

from seqlab.io import atomic_open, atomic_path, write_json


def test_atomic_write_replaces_and_keeps_normal_permissions(tmp_path):
    p = tmp_path / "x.json"
    write_json(p, {"a": 1})
    assert p.read_text().strip().startswith("{")
    mode = stat.S_IMODE(os.stat(p).st_mode)
    assert mode & 0o044, oct(mode)  # group/other can read, as with open()


def test_failed_write_leaves_old_content_and_no_temp(tmp_path):
    p = tmp_path / "x.txt"
    p.write_text("old")
    with pytest.raises(RuntimeError), atomic_open(p) as f:
        f.write("new")
        raise RuntimeError("boom")
    assert p.read_text() == "old"
    assert os.listdir(tmp_path) == ["x.txt"]
    with pytest.raises(RuntimeError), atomic_path(tmp_path / "y.bin") as tmp:
        tmp.write_bytes(b"partial")
        raise RuntimeError("boom")
    assert os.listdir(tmp_path) == ["x.txt"]
