"""`seqlab score`: JSON and table output, several references, zh, and one-line errors for bad input."""

from __future__ import annotations

import json

import pytest
import sacrebleu
from conftest import assert_one_line_error

HYPS = ["the cat sat on the mat .", "a dog barked at the mailman", "it is raining today"]
REFS = [["the cat is on the mat .", "the dog barked at the postman", "is it raining ?"],
        ["a cat sat on a mat .", "a dog was barking", "it rains today"]]


@pytest.fixture
def files(tmp_path):
    def write(name: str, lines: list[str], newline: str = "\n") -> str:
        path = tmp_path / name
        path.write_text("".join(line + newline for line in lines), encoding="utf-8")
        return str(path)

    return write


def test_json_with_two_reference_files(cli, files):
    hyp, ref1, ref2 = files("hyp.txt", HYPS), files("ref1.txt", REFS[0], "\r\n"), files("ref2.txt", REFS[1])
    result = cli("score", "--hyp", hyp, "--ref", ref1, "--ref", ref2, "--json")
    assert result.exit_code == 0, result.stderr
    scores = json.loads(result.stdout)
    assert list(scores) == ["bleu", "rouge1", "rouge2", "rougeL", "distinct1", "distinct2", "self_bleu", "avg_len"]
    assert scores["bleu"] == pytest.approx(sacrebleu.corpus_bleu(HYPS, REFS).score, abs=1e-9)


def test_chinese_and_tokenize_override(cli, files):
    hyp, ref = files("hyp.txt", ["床前明月光", "疑是地上霜"]), files("ref.txt", ["床前看月光", "疑是地上霜"])
    zh = json.loads(cli("score", "--hyp", hyp, "--ref", ref, "--lang", "zh", "--json").stdout)
    assert zh["bleu"] == pytest.approx(sacrebleu.corpus_bleu(["床前明月光", "疑是地上霜"], [["床前看月光", "疑是地上霜"]],
                                                             tokenize="zh").score)
    assert zh["avg_len"] == 5.0
    char = json.loads(cli("score", "--hyp", hyp, "--ref", ref, "--tokenize", "char", "--json").stdout)
    assert char == pytest.approx(zh)


def test_human_table(cli, files):
    result = cli("score", "--hyp", files("h.txt", HYPS), "--ref", files("r.txt", REFS[0]))
    assert result.exit_code == 0
    for label in ("BLEU", "ROUGE-1 F", "ROUGE-L F", "distinct-2", "self-BLEU", "avg length"):
        assert label in result.stdout


def test_help_documents_the_options(cli):
    result = cli("score", "--help")
    assert result.exit_code == 0
    for option in ("--hyp", "--ref", "--lang", "--tokenize", "--json"):
        assert option in result.stdout


def test_missing_file(cli, files, tmp_path):
    result = cli("score", "--hyp", str(tmp_path / "nope.txt"), "--ref", files("r.txt", REFS[0]))
    assert_one_line_error(result)
    assert "hypothesis file not found" in result.stderr


def test_empty_hypothesis_file(cli, files):
    result = cli("score", "--hyp", files("h.txt", []), "--ref", files("r.txt", REFS[0]))
    assert_one_line_error(result)
    assert "is empty" in result.stderr


def test_line_count_mismatch_names_both_counts(cli, files):
    result = cli("score", "--hyp", files("h.txt", HYPS), "--ref", files("r.txt", REFS[0][:2]))
    assert_one_line_error(result)
    assert "has 3 lines" in result.stderr and "has 2" in result.stderr


def test_unknown_tokenizer_lists_choices(cli, files):
    result = cli("score", "--hyp", files("h.txt", HYPS), "--ref", files("r.txt", REFS[0]), "--tokenize", "moses")
    assert_one_line_error(result)
    assert "unknown tokenizer 'moses'" in result.stderr and "13a, intl, zh, char" in result.stderr


def test_unknown_language(cli, files):
    result = cli("score", "--hyp", files("h.txt", HYPS), "--ref", files("r.txt", REFS[0]), "--lang", "fr")
    assert_one_line_error(result)
    assert "en, zh" in result.stderr


def test_non_utf8(cli, files, tmp_path):
    bad = tmp_path / "gbk.txt"
    bad.write_bytes("床前明月光\n疑是地上霜\n".encode("gbk"))
    result = cli("score", "--hyp", files("h.txt", ["a", "b"]), "--ref", str(bad))
    assert_one_line_error(result)
    assert "not valid UTF-8" in result.stderr


def test_non_utf8_after_a_byte_order_mark_names_the_byte_and_its_offset_in_the_file(cli, files, tmp_path):
    bad = tmp_path / "bom.txt"
    bad.write_bytes(b"\xef\xbb\xbfa\xffb\nc\n")
    result = cli("score", "--hyp", files("h.txt", ["a", "b"]), "--ref", str(bad))
    assert_one_line_error(result)
    assert f"reference file {bad} is not valid UTF-8 (byte 0xff at offset 4)" in result.stderr


def test_missing_options(cli, files):
    assert_one_line_error(cli("score", "--ref", files("r.txt", REFS[0])))
    assert_one_line_error(cli("score", "--hyp", files("h.txt", HYPS)))


def test_directory_instead_of_file(cli, files, tmp_path):
    result = cli("score", "--hyp", files("h.txt", HYPS), "--ref", str(tmp_path))
    assert_one_line_error(result)
    assert "is a directory" in result.stderr


def test_an_endless_device_is_refused_but_a_pipe_is_read(cli, files, tmp_path):
    ref = files("r.txt", REFS[0])
    result = cli("score", "--hyp", "/dev/zero", "--ref", ref)  # would be read forever
    assert_one_line_error(result)
    assert "/dev/zero is a device or socket" in result.stderr
    import os
    import threading

    fifo = tmp_path / "hyp.fifo"
    os.mkfifo(fifo)

    def feed():
        with open(fifo, "w", encoding="utf-8") as f:
            f.write("".join(h + "\n" for h in HYPS))

    writer = threading.Thread(target=feed)
    writer.start()
    result = cli("score", "--hyp", str(fifo), "--ref", ref, "--json")
    writer.join(timeout=30)
    assert result.exit_code == 0, result.stderr
    assert json.loads(result.stdout)["bleu"] == pytest.approx(sacrebleu.corpus_bleu(HYPS, [REFS[0]]).score)
