"""Every YAML seqlab reads refuses python tags in one line naming the file (issue 15): the chatterbot corpus."""

from __future__ import annotations

import pytest

from seqlab.data.corpora.chatterbot import _read_language
from seqlab.errors import DataError


def test_a_chatterbot_file_with_a_python_tag_is_refused(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "evil.yml").write_text("conversations:\n- - !!python/object/apply:os.system ['touch PWNED']\n  - hi\n")
    with pytest.raises(DataError, match=r"evil.yml: python tags are not allowed \(!!python/object/apply:os.system\)"):
        _read_language(str(tmp_path), 1)
    assert not (tmp_path / "PWNED").exists()
