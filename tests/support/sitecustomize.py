"""Test-only: let CUDA torchvision wheels import next to the CPU torch on this machine.

PyPI has only CUDA builds of torchvision; their compiled ops fail to register against a CPU torch
("operator torchvision::nms does not exist"), which breaks `import torchvision` and with it transformers'
video processors. Declaring the op schemas first lets the pure-Python transforms that Qwen3-VL's processor
uses import and run. Real GPU installs have a matching torchvision and never load this file: it is put on
PYTHONPATH by tests/conftest.py only (and skipped when VIDEOPIPE_TEST_NO_TV_SHIM is set).
"""

import os

if not os.environ.get("VIDEOPIPE_TEST_NO_TV_SHIM"):
    try:
        import torch
    except ImportError:
        pass
    else:
        try:
            torch.ops.torchvision.nms  # noqa: B018 - defined already (a second import of this file)
        except (AttributeError, RuntimeError):
            if torch.version.cuda is None:
                _lib = torch.library.Library("torchvision", "DEF")
                _lib.define("nms(Tensor dets, Tensor scores, float iou_threshold) -> Tensor")
                _lib.define("qnms(Tensor qdets, Tensor scores, float iou_threshold) -> Tensor")
