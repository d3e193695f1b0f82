"""Deployment layouts written from an export (Triton Inference Server model repository), TensorFlow-free."""
