import json

from seqlab.runs import RunDir
from seqlab.train.metrics import MetricsWriter


def read(run: RunDir) -> list[dict]:
    return [json.loads(line) for line in run.metrics.read_text().splitlines()]


def test_resume_drops_records_after_the_checkpoint_and_tensorboard_gets_scalars(tmp_path):
    run = RunDir(tmp_path)
    w = MetricsWriter(run, enabled=True)
    for step in range(1, 6):
        w.write({"step": step, "train_loss": 1.0 / step, "lr": 0.1})
    w.write({"step": 5, "event": "end", "note": "not a scalar"}, tensorboard=False)
    w.close()
    assert [r["step"] for r in read(run)] == [1, 2, 3, 4, 5, 5]
    assert any(run.tensorboard.glob("events.out.tfevents.*"))

    MetricsWriter(run, enabled=True, resume_step=3, tensorboard=False).close()
    assert [r["step"] for r in read(run)] == [1, 2, 3]


def test_disabled_writer_on_other_ranks_writes_nothing(tmp_path):
    run = RunDir(tmp_path)
    w = MetricsWriter(run, enabled=False)
    w.write({"step": 1, "train_loss": 2.0})
    w.close()
    assert not run.metrics.exists() and not run.tensorboard.exists()
