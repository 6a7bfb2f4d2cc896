"""Bounded validation with its standard error, and the final stretch on all the text.

Validation scores at most ``max_validation_chars`` symbols of the held-out text (evenly
spread windows, the same every time; all of it when shorter) and reports a standard error;
with ``refit_fraction`` the last share of the training runs on all the text, held-out part
included, over the schedule's last learning rates.
"""

from __future__ import annotations

import math

import numpy as np
import pytest
from numpy.testing import assert_allclose

from charrnn import CharRNNGenerator
from charrnn.data.batches import (
    WINDOW_CONTEXT,
    WINDOW_LENGTH,
    scoring_windows,
    split_train_validation,
)
from charrnn.engine import network
from charrnn.engine.network import NetworkConfig
from charrnn.engine.optim import LRSchedule
from charrnn.engine.tasks import held_out_score, stream_loss, window_nll
from charrnn.engine.training import StopFlag


@pytest.fixture(scope="module")
def net():
    config = NetworkConfig(cell="gru", vocab_size=7, hidden_size=6, num_layers=2, dtype="float64")
    return network.init_params(config, np.random.default_rng(0)), config


def _ids(n, seed=1, vocab=7):
    return np.random.default_rng(seed).integers(0, vocab, n).astype(np.uint8)


def _window_loss(params, config, inputs, targets, context):
    """Mean loss of one window's scored positions, the window read alone from a zero state
    (restarting from zero at every end-of-document id 0, as training does)."""
    x = inputs[:, None].astype(np.intp)
    logits, _, _ = network.forward_logits(
        params, config, x, network.init_state(config, 1), resets=x == 0
    )
    logp = network.log_softmax(logits[:, 0])
    picked = logp[np.arange(len(targets)), targets]
    return -picked[context:].mean()


# ----------------------------------------------------------------------------- the windows
def test_a_short_text_is_scored_whole_as_streams():
    ids = _ids(3000)
    w = scoring_windows(ids, max_chars=5000)
    assert w.whole and w.context == 0
    B, L = w.inputs.shape
    assert B == 3000 // 256 and L == 2999 // B
    # contiguous streams: row b continues where row b - 1 stopped
    assert_allclose(w.inputs.ravel(), ids[: B * L])
    assert_allclose(w.targets.ravel(), ids[1 : B * L + 1])
    assert scoring_windows(ids).whole  # no bound: all of it


def test_a_long_text_gives_a_bounded_spread_deterministic_sample():
    ids = _ids(200_000)
    bound = 5 * WINDOW_LENGTH + 7  # not a multiple: rounds up to whole windows
    w = scoring_windows(ids, bound)
    assert not w.whole and w.context == WINDOW_CONTEXT
    assert w.inputs.shape == (6, WINDOW_CONTEXT + WINDOW_LENGTH)
    assert bound <= w.n_scored < bound + WINDOW_LENGTH
    # evenly spread pieces of the text, from its first symbol to its last
    span = w.inputs.shape[1]
    starts = np.round(np.linspace(0, len(ids) - 1 - span, 6)).astype(int)
    for row_in, row_out, start in zip(w.inputs, w.targets, starts):
        assert_allclose(row_in, ids[start : start + span])
        assert_allclose(row_out, ids[start + 1 : start + 1 + span])
    assert starts[-1] + span + 1 == len(ids)
    again = scoring_windows(ids, bound)
    assert_allclose(again.inputs, w.inputs)


def test_scoring_windows_reads_a_memmap(tmp_path):
    ids = _ids(50_000)
    path = tmp_path / "ids.bin"
    ids.tofile(path)
    mm = np.memmap(path, dtype=np.uint8, mode="r")
    assert_allclose(scoring_windows(mm, 2048).inputs, scoring_windows(ids, 2048).inputs)


def test_scoring_windows_of_nothing_and_bad_bounds():
    assert scoring_windows(_ids(1), 10).inputs.shape == (0, 0)
    with pytest.raises(ValueError, match="max_chars"):
        scoring_windows(_ids(100), 0)


# ----------------------------------------------------------------------------- the score
def test_whole_score_is_stream_loss_and_its_stderr_is_over_the_streams(net):
    params, config = net
    ids = _ids(4000)
    score = held_out_score(params, config, ids)
    assert score.whole and score.n_windows == 4000 // 256
    assert_allclose(score.loss, stream_loss(params, config, ids), rtol=1e-10)
    w = scoring_windows(ids)
    per_stream = [_window_loss(params, config, i, t, 0) for i, t in zip(w.inputs, w.targets)]
    assert_allclose(score.stderr, np.std(per_stream, ddof=1) / math.sqrt(len(per_stream)))


@pytest.mark.parametrize("n_threads", [1, 3])
def test_sampled_score_and_stderr_equal_a_window_by_window_computation(net, n_threads):
    params, config = net
    ids = _ids(60_000, seed=4)
    bound = 4 * WINDOW_LENGTH
    counted = []
    score = held_out_score(params, config, ids, bound, n_threads, counted.append)
    w = scoring_windows(ids, bound)
    per_window = [
        _window_loss(params, config, i, t, WINDOW_CONTEXT) for i, t in zip(w.inputs, w.targets)
    ]
    assert not score.whole and score.n_chars == bound == sum(counted)
    assert_allclose(score.loss, np.mean(per_window), rtol=1e-10)
    assert_allclose(score.stderr, np.std(per_window, ddof=1) / 2.0, rtol=1e-8)


def test_one_window_has_no_stderr(net):
    params, config = net
    score = held_out_score(params, config, _ids(300))
    assert score.n_windows == 1 and math.isnan(score.stderr) and np.isfinite(score.loss)


def test_window_nll_of_no_windows(net):
    params, config = net
    assert window_nll(params, config, scoring_windows(_ids(1))).shape == (0,)


# ----------------------------------------------------------------------------- in training
def words(n_lines, seed=0, vocab=("the", "cat", "sat", "on", "a", "mat", "dog", "ran")):
    rng = np.random.default_rng(seed)
    return "\n".join(" ".join(rng.choice(vocab, 5)) for _ in range(n_lines)) + "\n"


def tiny(**params) -> CharRNNGenerator:
    base = dict(cell="gru", hidden_size=12, num_layers=1, seq_length=8, batch_size=4)
    base.update(max_iter=2, validation_fraction=0.3, random_state=0, learning_rate=1e-2)
    base.update(params)
    return CharRNNGenerator(**base)


def test_validation_is_bounded_and_carries_its_stderr():
    text = words(600)
    gen = tiny(max_validation_chars=WINDOW_LENGTH, early_stopping=False).fit(text)
    _, val_ids = split_train_validation(gen.vocab_.encode_documents([text]), 0.3)
    assert len(val_ids) > 3 * WINDOW_LENGTH  # so the bound binds
    for record in gen.history_:
        assert record["val_chars"] == WINDOW_LENGTH
    # the last record scores the weights fit ended with (no early stopping restore here)
    last = held_out_score(gen.params_, gen.config_, val_ids, WINDOW_LENGTH)
    assert_allclose(gen.history_[-1]["val_loss"], last.loss, rtol=1e-6)
    assert gen.history_[-1]["val_stderr"] is None  # one window: no spread to measure
    two = tiny(max_validation_chars=2 * WINDOW_LENGTH, early_stopping=False).fit(text)
    assert two.history_[-1]["val_stderr"] > 0 and two.history_[-1]["val_chars"] == 1024
    whole = tiny(max_validation_chars=None).fit(text)
    n = len(val_ids) - 1
    B = min(128, n // 256)
    assert whole.history_[-1]["val_chars"] == B * (n // B)


def test_max_validation_chars_is_checked():
    with pytest.raises(ValueError, match="max_validation_chars"):
        tiny(max_validation_chars=0).fit(words(50))
    with pytest.raises(ValueError, match="refit_fraction"):
        tiny(refit_fraction=1.0).fit(words(50))


# ----------------------------------------------------------------------------- final stretch
def test_final_stretch_learns_the_held_out_text():
    # the held-out tail is text of its own ("xyz"), never in the training part
    text = words(300) + "xyz " * 600
    kept_out = tiny(max_iter=3, early_stopping=False).fit(text)
    stretched = tiny(max_iter=3, early_stopping=False, refit_fraction=0.4).fit(text)
    assert kept_out.final_stretch_ is None
    tail = text[-1000:]
    assert stretched.score(tail) > kept_out.score(tail) + 0.5
    s = stretched.final_stretch_
    assert s["stop_reason"] == "max_steps" and s["steps"] == s["planned_steps"]
    # a share f of the training: f / (1 - f) times the validated part's steps
    validated_steps = stretched.history_[-1]["step"]
    assert s["planned_steps"] == math.ceil(0.4 / 0.6 * validated_steps)
    assert stretched.n_chars_seen_ == 3 * stretched.history_[0]["chars_seen"] + s["chars_seen"]
    assert stretched.stop_reason_ == "max_iter" and stretched.n_iter_ == 3


def test_final_stretch_runs_on_the_schedules_last_rates():
    lrs = {"validated": [], "stretch": []}

    def on_step(est, trainer, loss, gnorm, lr):
        lrs["stretch" if trainer.max_steps is not None else "validated"].append(lr)

    f = 0.25
    gen = tiny(max_iter=3, refit_fraction=f, lr_schedule="warmup_linear", early_stopping=False)
    gen.fit(words(300), on_step=on_step)
    schedule, peak = LRSchedule("warmup_linear"), gen.learning_rate
    low, high = peak * schedule.factor(1.0), peak * schedule.factor(1.0 - f)
    assert all(low - 1e-12 <= lr <= high + 1e-12 for lr in lrs["stretch"])
    assert lrs["stretch"][0] == pytest.approx(high)
    # the validated part ends where the stretch begins
    assert lrs["validated"][-1] >= high - 1e-12
    assert len(lrs["stretch"]) == gen.final_stretch_["steps"]


def test_final_stretch_after_early_stopping_starts_from_the_best_weights():
    # early stopping ends holding the best pass's weights, whatever stopped it
    gen = tiny(max_iter=4, n_iter_no_change=1, refit_fraction=0.5, learning_rate=0.05)
    gen.fit(words(120))
    best = gen.history_[gen.best_iteration_ - 1]
    assert gen.final_stretch_["planned_steps"] == best["step"]  # f / (1 - f) = 1


def test_no_stretch_without_held_out_text_or_when_stopped():
    assert tiny(validation_fraction=0, refit_fraction=0.5).fit(words(80)).final_stretch_ is None
    flag = StopFlag()

    def stop_in_stretch(est, trainer, *args):
        if trainer.max_steps is not None and trainer.progress.step == 2:
            flag.requested = True

    gen = tiny(refit_fraction=0.5).fit(words(200), on_step=stop_in_stretch, stop_flag=flag)
    assert gen.final_stretch_["stop_reason"].startswith("interrupted")
    assert gen.final_stretch_["steps"] == 2 and gen.stop_reason_ == "max_iter"

    def stop_at_once(est, trainer, *args):
        return True

    stopped = tiny(refit_fraction=0.5).fit(words(200), on_step=stop_at_once)
    assert stopped.stop_reason_ == "stopped by callback" and stopped.final_stretch_ is None


def test_a_resumed_fit_ends_as_an_uninterrupted_one_with_its_stretch():
    text = words(300)
    params = dict(max_iter=3, refit_fraction=0.3, dropout=0.2)
    whole = tiny(**params).fit(text)
    flag = StopFlag()

    def stop(est, trainer, *args):
        if trainer.max_steps is None and trainer.progress.step == 40:
            flag.requested = True

    cut = tiny(**params).fit(text, on_step=stop, stop_flag=flag)
    assert cut.final_stretch_ is None and cut.stop_reason_.startswith("interrupted")
    cut.fit(text, resume=True)
    for key in ("steps", "planned_steps", "chars_seen"):
        assert cut.final_stretch_[key] == whole.final_stretch_[key]
    for name, value in whole.params_.items():
        assert_allclose(cut.params_[name], value, rtol=1e-5, atol=1e-6)


def test_final_stretch_is_saved_with_the_model(tmp_path):
    from charrnn import load

    gen = tiny(refit_fraction=0.2).fit(words(200))
    gen.save(tmp_path / "m.npz")
    assert load(tmp_path / "m.npz").final_stretch_ == gen.final_stretch_


# ----------------------------------------------------------------------------- auto dropout
def test_auto_dropout_follows_characters_per_weight():
    from charrnn.estimators.generator import (
        AUTO_DROPOUT,
        AUTO_DROPOUT_CHARS_PER_WEIGHT,
        auto_dropout,
    )

    weights = 1000
    threshold = int(AUTO_DROPOUT_CHARS_PER_WEIGHT * weights)
    assert auto_dropout(threshold - 1, weights) == AUTO_DROPOUT > 0
    assert auto_dropout(threshold, weights) == 0.0


def test_dropout_none_chooses_by_the_size_of_the_text():
    text = words(100)
    small = tiny(dropout=None, hidden_size=16).fit(text)  # ~2,000 characters, ~1,500 weights
    big = tiny(dropout=None, hidden_size=2, max_iter=1).fit(text * 3)
    n_small = sum(p.size for p in small.params_.values())
    n_big = sum(p.size for p in big.params_.values())
    assert len(text) < 4 * n_small and len(text) * 3 >= 4 * n_big
    assert small.config_.dropout > 0 and big.config_.dropout == 0.0
    assert small.get_params()["dropout"] is None
    # the same weights are drawn as with the dropout given
    given = tiny(dropout=small.config_.dropout, hidden_size=16).fit(text)
    for name, value in given.params_.items():
        assert_allclose(small.params_[name], value)
