"""Distillation: train the small student network to imitate the Magenta teacher, then export and judge it.

``prepare`` caches teacher targets, ``train`` fits the student (``engines.student``), ``export`` writes the ONNX
contract every engine runs, ``evaluate`` measures it against the teacher on held-out photos and paintings. A use
case of its own: it imports engines and streamer's parts, and nothing installed imports it.
"""
