"""Serving a trained model: ``export`` writes a run as ONNX with its front end, ``runtime``
runs a checkpoint (torch) or an export (onnxruntime) behind one interface, and ``predict`` is
``ser-predict`` over either. What scoring needs imports no torch (the ``ser[predict]``
install); imports the learning core, and the evidence wing's results.json reader for the
model card; never a running experiment.
"""
