"""ONNX -> TensorRT engine + metadata sidecar (``python -m training build-engine``).

The steps follow NVIDIA's efficientdet sample, one module per concept:

* ``versions``: the precisions and how TensorRT 10 and 11 differ on them;
* ``qdq``: finding (and vetting) the Q/DQ nodes of an explicitly quantized ONNX;
* ``fp16``: the fp16 copy of an ONNX that TensorRT 11 builds as fp16;
* ``profile``: the ONNX's input and the dynamic-batch optimisation profile;
* ``calibration``: the INT8 calibration images, batcher and calibrator;
* ``builder``: ``EngineBuilder``, parse + build + timing cache;
* ``engine``: ``build_engine``, the whole build, which writes ``<engine>.json``
  beside the engine so the runtime can refuse an engine built for another
  TensorRT or GPU;
* ``cli``: the command line.

Nothing here imports TensorRT at module level: checks run on any machine.
"""
