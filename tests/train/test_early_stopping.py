from seqlab.train.early_stopping import BestTracker


def test_best_and_patience_by_hand():
    t = BestTracker(patience=2)
    assert t.update(100, 2.0) and t.best_step == 100
    assert not t.update(200, 2.1) and not t.should_stop
    assert t.update(300, 1.9) and t.bad_evals == 0  # an improvement resets the count
    assert not t.update(400, 1.9)  # equal is not better
    assert not t.update(500, 3.0) and t.should_stop
    assert (t.best, t.best_step) == (1.9, 300)


def test_no_patience_never_stops_and_state_round_trips():
    t = BestTracker(patience=None)
    for step, v in enumerate([3.0, 4.0, 5.0, 6.0]):
        t.update(step, v)
    assert not t.should_stop
    u = BestTracker(patience=None)
    u.load_state_dict(t.state_dict())
    assert (u.best, u.best_step, u.bad_evals) == (3.0, 0, 3)
