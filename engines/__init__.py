"""Engines: run the student (or the teacher) on frames, whatever the hardware.

The bottom layer: every backend (ONNX Runtime on the CPU, PyTorch on CUDA, TensorRT) implements the one
``engines.base.Engine`` protocol, ``engines.select`` picks one and says why the others cannot run, and
``engines.student`` holds the student network itself for the backends and the training that need it.
Nothing here imports ``streamer`` or ``distill``.
"""
