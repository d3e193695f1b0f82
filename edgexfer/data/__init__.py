"""Data: images (one decode/resize for every stage), sources, scan (unreadable files), splits, the synthetic
demo set, calibration sets, and (TensorFlow, in pipeline.py only) the tf.data input pipeline.

Everything here but `pipeline` needs only numpy, Pillow and scikit-learn, so the bench on an edge
device can read a run's test split. Import the submodules directly (`edgexfer.data.splits`, …).
"""
