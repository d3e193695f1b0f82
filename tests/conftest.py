"""Shared test set-up. Fixtures live in plugin modules, one per area, so they can grow independently:
fixtures_data (synthetic data sets), fixtures_run (a tiny finished run), fixtures_export (its export)."""

import os

# Quiet TensorFlow and keep it on the CPU and on few threads: CI has two cores.
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
os.environ.setdefault("CUDA_VISIBLE_DEVICES", "")
os.environ.setdefault("TF_NUM_INTEROP_THREADS", "1")
os.environ.setdefault("MPLBACKEND", "Agg")

pytest_plugins = ["fixtures_data", "fixtures_run", "fixtures_export"]
