import io

from rich.console import Console

from seqlab.train.progress import RichReporter, TrainProgress


def test_bar_shows_step_loss_tokens_per_second_and_eta():
    out = io.StringIO()
    console = Console(file=out, force_terminal=True, width=140)
    with TrainProgress(total_steps=100, start_step=10, enabled=True, console=console) as bar:
        bar.update(50, loss=1.23456, tokens_per_s=123456.0)
        bar.print("step 50: val loss 1.5")
    text = out.getvalue()
    assert "50/100" in text and "loss 1.2346" in text and "123,456 tok/s" in text and "ETA" in text
    assert "step 50: val loss 1.5" in text


def test_non_main_ranks_print_nothing():
    out = io.StringIO()
    with TrainProgress(total_steps=10, start_step=0, enabled=False, console=Console(file=out, force_terminal=True)) as bar:
        bar.update(5, loss=1.0, tokens_per_s=1.0)
        bar.print("hidden")
    assert out.getvalue() == ""


def test_throughput_counts_training_time_only(monkeypatch):
    import seqlab.train.progress as progress

    now = [100.0]
    monkeypatch.setattr(progress.time, "perf_counter", lambda: now[0])
    clock = progress.Throughput()
    now[0] += 2.0
    assert clock.tick(10_000) == 5000.0  # 10,000 tokens in 2 s
    now[0] += 30.0  # an evaluation: not training time
    clock.restart()
    now[0] += 3.0
    assert clock.tick(30_000) == 10000.0
    assert clock.overall == 40000 / 5.0


def test_seqgan_reporter_shows_the_phase_and_its_latest_values():
    out = io.StringIO()
    with RichReporter(enabled=True, console=Console(file=out, force_terminal=True, width=140)) as reporter:
        reporter.phase("D pre-training", 4, 1)
        reporter.update(2, d_acc=0.75)
        reporter.phase("adversarial", 3, 0)
        reporter.update(1, reward=0.5)
        reporter.update(2, nll=9.1234)
    last = out.getvalue().rsplit("\r", 1)[-1]  # the bar as it was left: the last phase, its values only
    assert "adversarial" in last and "2/3" in last and "reward 0.500  NLL-oracle 9.123" in last
    assert "D acc" not in last


def test_seqgan_reporter_disabled_prints_nothing():
    out = io.StringIO()
    with RichReporter(enabled=False, console=Console(file=out, force_terminal=True)) as reporter:
        reporter.phase("adversarial", 3, 0)
        reporter.update(1, reward=0.5)
    assert out.getvalue() == ""
