"""Latency statistics, the gate's logic and the bench's metrics against scikit-learn."""

from __future__ import annotations

import numpy as np
import pytest
from sklearn import metrics as skm

from edgexfer.evaluate.gate import Breach, Thresholds, breach_table, decision_breach, judge_drops
from edgexfer.evaluate.latency import end_to_end_ms, make_batch, summarize, time_runtime
from edgexfer.runtime.base import InputSpec, Runtime


def test_summarize_percentiles_and_throughput():
    times = list(range(1, 101))  # 1..100 ms
    s = summarize(times, batch_size=8)
    assert s["p50"] == pytest.approx(np.percentile(times, 50)) == pytest.approx(50.5)
    assert s["p90"] == pytest.approx(90.1) and s["p99"] == pytest.approx(99.01)
    assert s["mean"] == pytest.approx(50.5) and s["min"] == 1 and s["max"] == 100 and s["n"] == 100
    assert s["throughput_ips"] == pytest.approx(8 * 1000 / 50.5)
    with pytest.raises(ValueError):
        summarize([], 1)


def test_make_batch_repeats_real_images():
    images = np.arange(3 * 2 * 2 * 3, dtype=np.uint8).reshape(3, 2, 2, 3)
    batch = make_batch(images, 7)
    assert batch.shape == (7, 2, 2, 3) and batch.flags["C_CONTIGUOUS"]
    np.testing.assert_array_equal(batch[3], images[0])
    np.testing.assert_array_equal(batch[:3], images)


class SleepyRuntime(Runtime):
    """A runtime whose call takes a known time: checks warm-up, counting and the clock."""

    name = "sleepy"
    provider = "test"

    def __init__(self, ms: float):
        self.ms, self.calls = ms, 0
        self.input_spec = InputSpec("image", (None, 2, 2, 3))

    def _run(self, batch):
        import time

        self.calls += 1
        time.sleep(self.ms / 1000)
        return np.full((len(batch), 2), 0.5, np.float32)


def test_time_runtime_warms_up_then_times_each_call():
    rt = SleepyRuntime(5)
    times = time_runtime(rt, np.zeros((2, 2, 2, 3), np.uint8), warmup=3, iterations=4)
    assert rt.calls == 7 and len(times) == 4
    assert all(4.5 <= t < 200 for t in times)  # sleep(5 ms) is at least 5 ms, scheduler noise aside


def test_end_to_end_includes_loading():
    import time

    rt = SleepyRuntime(1)

    def slow_load(ref):
        time.sleep(0.01)
        return np.zeros((2, 2, 3), np.uint8)

    e2e = end_to_end_ms(rt, slow_load, ["a", "b", "c"], warmup=1)
    assert e2e["n"] == 3 and e2e["p50"] >= 10.5


def test_predict_refuses_wrong_shape_and_casts():
    from edgexfer.errors import EdgexferError

    rt = SleepyRuntime(0)
    with pytest.raises(EdgexferError, match="does not fit the model input"):
        rt.predict(np.zeros((1, 3, 3, 3)))
    out = rt.predict(np.zeros((2, 2, 2, 3), np.uint8))
    assert out.dtype == np.float32 and rt.last_latency_ms >= 0


def _metrics(acc_recalls: dict[str, float], accuracy: float, f1: float, n: int = 200, support: int = 100) -> dict:
    return {"accuracy": accuracy, "f1": f1, "n": n,
            "per_class": {k: {"recall": v, "support": support} for k, v in acc_recalls.items()}}


def _outcomes(decisions) -> dict[str, str]:
    return {d.metric: d.outcome for d in decisions}


def test_gate_judges_each_class_recall_on_paired_evidence():
    t = Thresholds(max_accuracy_drop=0.01, max_f1_drop=0.01, max_recall_drop=0.02)
    ref = _metrics({"normal": 0.90, "pneumonia": 0.95}, accuracy=0.925, f1=0.92, n=2000, support=1000)
    # accuracy holds (as many gained as lost), but one disease class loses 6 points of sensitivity: 60 of its
    # 1000 images, none the other way, is a loss shown beyond the 2-point limit
    cand = _metrics({"normal": 0.96, "pneumonia": 0.89}, accuracy=0.925, f1=0.92, n=2000, support=1000)
    flips = {"accuracy": (60, 60), "recall[normal]": (0, 60), "recall[pneumonia]": (60, 0)}
    decisions = judge_drops(ref, cand, t, flips=flips, f1_interval=(-0.004, 0.004))
    assert _outcomes(decisions)["recall[pneumonia]"] == "fail"
    assert _outcomes(decisions)["recall[normal]"] == "pass"
    failed = [decision_breach(d, artifact="int8", precision="int8", runtime="ort-cpu")
              for d in decisions if d.outcome == "fail"]
    assert [b.metric for b in failed] == ["recall[pneumonia]"]
    assert failed[0].drop == pytest.approx(0.06) and failed[0].limit == 0.02
    assert "6.00 points" in failed[0].reason() and "60 of 1000 images" in failed[0].reason()
    assert failed[0].interval[0] > 0.02  # the whole interval lies above the limit
    # 60 lost for 60 gained over 2000 images: a zero net drop, but so many flips leave one point undecided
    # (the interval reaches 1.07 points); F1 cannot pass without accuracy
    accuracy = next(d for d in decisions if d.metric == "accuracy")
    assert accuracy.outcome == "inconclusive" and accuracy.interval[1] == pytest.approx(0.0107, abs=5e-4)
    assert _outcomes(decisions)["f1"] == "inconclusive"


def test_one_flipped_image_of_fifteen_is_inconclusive_with_the_images_that_would_decide():
    """The README notebook case: recall[pneumonia] 0.800 -> 0.733, one image of 15."""
    t = Thresholds(0.01, 0.01, 0.02)
    ref = _metrics({"pneumonia": 0.8}, 0.8, 0.8, n=45, support=15)
    cand = _metrics({"pneumonia": 0.7333}, 0.7778, 0.78, n=45, support=15)
    decisions = judge_drops(ref, cand, t, flips={"accuracy": (1, 0), "recall[pneumonia]": (1, 0)},
                            f1_interval=(0.0, 0.05))
    recall = next(d for d in decisions if d.metric == "recall[pneumonia]")
    assert recall.outcome == "inconclusive" and recall.interval[0] < 0.02 < recall.interval[1]
    assert recall.images_needed is not None and recall.images_needed > 15
    assert "images of class 'pneumonia' (have 15)" in recall.settle_text()
    assert {d.outcome for d in decisions} == {"inconclusive"}


def test_gains_pass_only_with_enough_images_and_f1_follows_accuracy():
    t = Thresholds(0.01, 0.01, 0.02)
    ref = _metrics({"a": 0.5}, 0.80, 0.80, n=5000, support=5000)
    better = _metrics({"a": 0.52}, 0.82, 0.82, n=5000, support=5000)
    gains = {"accuracy": (0, 100), "recall[a]": (0, 100)}
    assert set(_outcomes(judge_drops(ref, better, t, flips=gains, f1_interval=(-0.03, -0.01))).values()) == {"pass"}
    # the same gains on 50 images: better than FP32 here, but 50 images cannot bound the loss within 1 point
    few = _metrics({"a": 0.52}, 0.82, 0.82, n=50, support=50)
    small = judge_drops(ref, few, t, flips={"accuracy": (0, 1), "recall[a]": (0, 1)}, f1_interval=(-0.03, 0.0))
    assert _outcomes(small)["accuracy"] == "inconclusive" and _outcomes(small)["f1"] == "inconclusive"
    # F1 fails on its own when its bootstrap interval lies above the limit
    broken = judge_drops(ref, better, t, flips=gains, f1_interval=(0.02, 0.05))
    assert _outcomes(broken)["f1"] == "fail"


def test_breach_table_lists_what_broke():
    table = breach_table([Breach("int8", "int8", "ort-cpu", "recall[pneumonia]", 0.95, 0.90, 0.05, 0.02, 2, 40,
                                 lost=3, gained=1)])
    header, rule, row = table.splitlines()
    assert header.split() == ["artifact", "precision", "runtime", "metric", "FP32", "value", "drop", "limit", "images",
                              "lost", "gained"]
    assert set(rule.replace(" ", "")) == {"-"}
    assert row.split() == ["int8", "int8", "ort-cpu", "recall[pneumonia]", "0.9500", "0.9000", "0.0500", "0.0200", "2/40",
                           "3", "1"]


def test_bench_row_metrics_match_scikit_learn(handmade_export, tmp_path):
    """The bench's numbers for an artifact are scikit-learn's on that artifact's own predictions."""
    from fixtures_handmade import bench_outcome

    from edgexfer.data.splits import Split
    from edgexfer.evaluate.bench import BenchConfig
    from edgexfer.runtime.ort_runtime import OrtRuntime

    outcome = bench_outcome(BenchConfig(handmade_export, out=tmp_path / "b", runtimes=["ort-cpu"], batch_sizes=(2,),
                                    warmup=0, iterations=1, progress=False, end_to_end_images=1))
    split = Split.load(handmade_export / "split.json")
    images, labels = split.load_arrays("test", (32, 32))
    for row in outcome.results["results"]:
        with OrtRuntime(handmade_export / row["file"]) as rt:
            probs = rt.predict(images)
        pred = probs.argmax(1)
        assert row["accuracy"] == pytest.approx(skm.accuracy_score(labels, pred))
        assert row["precision_macro"] == pytest.approx(skm.precision_score(labels, pred, average="macro", zero_division=0))
        assert row["recall_macro"] == pytest.approx(skm.recall_score(labels, pred, average="macro"))
        assert row["f1"] == pytest.approx(skm.f1_score(labels, pred, average="macro"))
        assert row["auc"] == pytest.approx(skm.roc_auc_score(labels, probs / probs.sum(1, keepdims=True),
                                                             multi_class="ovr"))
        assert row["confusion_matrix"] == skm.confusion_matrix(labels, pred).tolist()
        recalls = skm.recall_score(labels, pred, average=None)
        for k, name in enumerate(split.classes):
            assert row["per_class"][name]["recall"] == pytest.approx(recalls[k])
            negatives = labels != k
            assert row["per_class"][name]["specificity"] == pytest.approx(np.mean(pred[negatives] != k))

