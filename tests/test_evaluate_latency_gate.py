"""Latency statistics, the gate's logic and the bench's metrics against scikit-learn."""

from __future__ import annotations

import numpy as np
import pytest
from sklearn import metrics as skm
from test_bench_tiny import handmade_export_fixture  # noqa: F401  (shared fixtures: the hand-made export)

from edgexfer.evaluate.gate import Breach, Thresholds, breach_table, check_gate
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


def _metrics(acc_recalls: dict[str, float], accuracy: float, f1: float) -> dict:
    return {"accuracy": accuracy, "f1": f1, "n": 200,
            "per_class": {k: {"recall": v, "support": 100} for k, v in acc_recalls.items()}}


def test_gate_counts_each_class_recall():
    t = Thresholds(max_accuracy_drop=0.01, max_f1_drop=0.01, max_recall_drop=0.02)
    ref = _metrics({"normal": 0.90, "pneumonia": 0.95}, accuracy=0.92, f1=0.92)
    # accuracy and F1 hold, but one disease class loses 3 points of sensitivity
    cand = _metrics({"normal": 0.93, "pneumonia": 0.92}, accuracy=0.92, f1=0.915)
    breaches = check_gate(ref, cand, t, artifact="int8", precision="int8", runtime="ort-cpu")
    assert [b.metric for b in breaches] == ["recall[pneumonia]"]
    assert breaches[0].drop == pytest.approx(0.03) and breaches[0].limit == 0.02
    assert "3.00 points" in breaches[0].reason() and "3 of 100 images" in breaches[0].reason()
    assert (breaches[0].images, breaches[0].out_of) == (3, 100)


def test_gate_limits_are_inclusive_and_gains_pass():
    t = Thresholds(0.01, 0.01, 0.02)
    ref = _metrics({"a": 0.5}, 0.80, 0.80)
    assert check_gate(ref, _metrics({"a": 0.48}, 0.79, 0.79), t) == []  # exactly at the limits
    assert check_gate(ref, _metrics({"a": 0.9}, 0.99, 0.99), t) == []  # better than FP32
    broken = check_gate(ref, _metrics({"a": 0.47}, 0.7, 0.6), t)
    assert {b.metric for b in broken} == {"accuracy", "f1", "recall[a]"}


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
    from edgexfer.data.splits import Split
    from edgexfer.evaluate.bench import BenchConfig, run_bench
    from edgexfer.runtime.ort_runtime import OrtRuntime

    outcome = run_bench(BenchConfig(handmade_export, out=tmp_path / "b", runtimes=["ort-cpu"], batch_sizes=(2,),
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

