"""The INT8 stage of an export, one concern per module, run in order by `edgexfer.export.int8.stage`:

- ``calibrate``: activation ranges in one streaming pass (ONNX Runtime's statistics, without its memory);
- ``quantize``: the quantize step (target profiles, ONNX Runtime's ``quantize_static``);
- ``nncf_quantize``: the second quantizer, NNCF's ``nncf.quantize`` (``--quantizer nncf``/``auto``, target ``cpu``);
- ``agreement``: the judging images and the Wilson interval of INT8's agreement with FP32;
- ``sensitivity``: per-node SQNR (the fallback's ranking and the layer report);
- ``fallback``: the calibration method, then the rounds that keep nodes in float;
- ``kernels``: the opt-in per-convolution CPU kernel choice;
- ``speed``: the CPU speed check, stated with its spread.
"""
