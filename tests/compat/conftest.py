"""Real converted models for the compatibility tests, built once per session.

Models are converted with litert-torch and quantized full-int8 with the legacy calibrator in
ai_edge_litert (the route in the quantization research notes) by :func:`quantize_full_int8`.
It stands in for edgepack.stages.quantize until that stage exists; it is the same library call,
not a mock. Seeds are fixed; calibration data is random normal (the tests check placement and
shapes, not accuracy).
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest


def quantize_full_int8(
    float_model: Path, out: Path, io_dtype: str, samples: list[np.ndarray], act_dtype: str = "int8"
) -> Path:
    from ai_edge_litert import _pywrap_tensorflow_lite_calibration_wrapper as cw

    model_bytes = float_model.read_bytes()  # the wrapper does not own the buffer: keep it alive
    wrapper = cw.CalibrationWrapper(model_bytes, [], [])
    wrapper.Prepare()
    for s in samples:
        wrapper.FeedTensor([s])
    bias = np.int64 if act_dtype == "int16" else np.int32
    data = wrapper.QuantizeModel(
        np.dtype(io_dtype).num,
        np.dtype(io_dtype).num,
        False,
        np.dtype(act_dtype).num,
        np.dtype(bias).num,
        False,
        False,
    )
    del model_bytes
    out.write_bytes(data)
    return out


def _samples(shape: tuple[int, ...], n: int = 8) -> list[np.ndarray]:
    rng = np.random.default_rng(0)
    return [rng.standard_normal(shape).astype(np.float32) for _ in range(n)]


def digits_cnn(act: str = "relu", where: str = "") -> object:
    """Digits-style CNN: 1x1x32x32 -> conv/bn/relu/pool x2 -> conv/bn/relu -> gap -> linear.

    ``where`` puts a LeakyReLU (an op the Edge TPU table lacks) "early" (after the first conv
    block) or "late" (on the classifier input).
    """
    import torch
    from torch import nn

    torch.manual_seed(0)

    class DigitsCNN(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.block1 = nn.Sequential(
                nn.Conv2d(1, 8, 3, padding=1, bias=False), nn.BatchNorm2d(8), nn.ReLU()
            )
            self.early = nn.LeakyReLU(0.1) if where == "early" else nn.Identity()
            self.rest = nn.Sequential(
                nn.MaxPool2d(2),
                nn.Conv2d(8, 16, 3, padding=1, bias=False),
                nn.BatchNorm2d(16),
                nn.ReLU(),
                nn.MaxPool2d(2),
                nn.Conv2d(16, 32, 3, padding=1, bias=False),
                nn.BatchNorm2d(32),
                nn.ReLU(),
                nn.AdaptiveAvgPool2d(1),
                nn.Flatten(),
            )
            self.late = nn.LeakyReLU(0.1) if where == "late" else nn.Identity()
            self.classifier = nn.Linear(32, 10)

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return self.classifier(self.late(self.rest(self.early(self.block1(x)))))

    return DigitsCNN().eval()


def mobilenet_v2_style() -> object:
    """MobileNetV2-style net: inverted residuals (expand 1x1, depthwise 3x3, project 1x1),
    residual ADDs, ReLU6; input 1x3x32x32."""
    import torch
    from torch import nn

    torch.manual_seed(0)

    def cbr(cin: int, cout: int, k: int = 1, s: int = 1, groups: int = 1) -> nn.Sequential:
        return nn.Sequential(
            nn.Conv2d(cin, cout, k, s, k // 2, groups=groups, bias=False),
            nn.BatchNorm2d(cout),
            nn.ReLU6(),
        )

    class InvertedResidual(nn.Module):
        def __init__(self, cin: int, cout: int, stride: int, expand: int) -> None:
            super().__init__()
            hidden = cin * expand
            self.use_res = stride == 1 and cin == cout
            self.body = nn.Sequential(
                cbr(cin, hidden),
                cbr(hidden, hidden, 3, stride, groups=hidden),
                nn.Conv2d(hidden, cout, 1, bias=False),
                nn.BatchNorm2d(cout),
            )

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            y = self.body(x)
            return x + y if self.use_res else y

    class MobileNetV2Style(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.features = nn.Sequential(
                cbr(3, 16, 3, 2),
                InvertedResidual(16, 16, 1, 1),
                InvertedResidual(16, 24, 2, 4),
                InvertedResidual(24, 24, 1, 4),
                InvertedResidual(24, 32, 2, 4),
                InvertedResidual(32, 32, 1, 4),
                cbr(32, 64),
                nn.AdaptiveAvgPool2d(1),
                nn.Flatten(),
            )
            self.classifier = nn.Linear(64, 10)

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return self.classifier(self.features(x))

    return MobileNetV2Style().eval()


def mnist_like() -> object:
    """The op sequence of the 'mnist4/mnist7' models in a real compiler log (fixture
    nrf20_mnist.log): CONV_2D x2, MAX_POOL_2D x2, RESHAPE, FULLY_CONNECTED x2, SOFTMAX."""
    import torch
    from torch import nn

    torch.manual_seed(0)
    return nn.Sequential(
        nn.Conv2d(1, 8, 3, padding=1),
        nn.ReLU(),
        nn.MaxPool2d(2),
        nn.Conv2d(8, 16, 3, padding=1),
        nn.ReLU(),
        nn.MaxPool2d(2),
        nn.Flatten(),  # spatial size is 1x1 here, so no TRANSPOSE is needed before RESHAPE
        nn.Linear(16, 32),
        nn.ReLU(),
        nn.Linear(32, 10),
        nn.Softmax(dim=1),
    ).eval()


class ArgmaxHead:
    """Builds a float CNN ending in argmax (ARG_MAX: not in the GPU delegate's op set)."""

    @staticmethod
    def build() -> object:
        import torch
        from torch import nn

        torch.manual_seed(0)

        class Net(nn.Module):
            def __init__(self) -> None:
                super().__init__()
                self.body = digits_cnn()

            def forward(self, x: torch.Tensor) -> torch.Tensor:
                return torch.argmax(self.body(x), dim=1)

        return Net().eval()


def convert(module: object, shape: tuple[int, ...], out: Path, nhwc: bool = False) -> Path:
    import litert_torch
    import torch

    if nhwc:
        module = litert_torch.to_channel_last_io(module, args=[0])
        n, c, h, w = shape
        shape = (n, h, w, c)
    litert_torch.convert(module, (torch.zeros(shape),)).export(str(out))
    return out


@pytest.fixture(scope="session")
def models(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """name -> .tflite path for every model the compat tests use (built once)."""
    d = tmp_path_factory.mktemp("compat_models")
    out: dict[str, Path] = {}

    def both(name: str, build: Callable[[], object], shape: tuple[int, ...], nhwc: bool) -> None:
        f = convert(build(), shape, d / f"{name}_float.tflite", nhwc=nhwc)
        out[f"{name}_float"] = f
        qshape = (shape[0], shape[2], shape[3], shape[1]) if nhwc else shape
        out[f"{name}_uint8"] = quantize_full_int8(
            f, d / f"{name}_uint8.tflite", "uint8", _samples(qshape)
        )

    both("digits_nchw", digits_cnn, (1, 1, 32, 32), nhwc=False)
    both("digits_nhwc", digits_cnn, (1, 1, 32, 32), nhwc=True)
    both("mobilenet", mobilenet_v2_style, (1, 3, 32, 32), nhwc=True)
    both("mobilenet_nchw", mobilenet_v2_style, (1, 3, 32, 32), nhwc=False)
    both("leaky_early", lambda: digits_cnn(where="early"), (1, 1, 32, 32), nhwc=True)
    both("leaky_late", lambda: digits_cnn(where="late"), (1, 1, 32, 32), nhwc=True)
    mf = convert(mnist_like(), (1, 1, 4, 4), d / "mnist_float.tflite", nhwc=True)
    out["mnist_float"] = mf
    out["mnist_f32io"] = quantize_full_int8(
        mf, d / "mnist_f32io.tflite", "float32", _samples((1, 4, 4, 1))
    )
    out["mnist_int8io"] = quantize_full_int8(
        mf, d / "mnist_int8io.tflite", "int8", _samples((1, 4, 4, 1))
    )
    out["argmax_float"] = convert(
        ArgmaxHead.build(), (1, 1, 32, 32), d / "argmax_float.tflite", nhwc=True
    )
    out["digits_int16x8"] = quantize_full_int8(
        out["digits_nhwc_float"],
        d / "digits_int16x8.tflite",
        "float32",
        _samples((1, 32, 32, 1)),
        act_dtype="int16",
    )
    out["digits_int8_f32io"] = quantize_full_int8(
        out["digits_nhwc_float"],
        d / "digits_int8_f32io.tflite",
        "float32",
        _samples((1, 32, 32, 1)),
    )
    return out


@pytest.fixture(scope="session")
def dynamic_range_mobilenet(
    models: dict[str, Path], tmp_path_factory: pytest.TempPathFactory
) -> Path:
    """The MobileNetV2-style float model quantized dynamic-range (int8 weights, float
    activations) with ai-edge-quantizer's dynamic_wi8_afp32 recipe."""
    from ai_edge_quantizer import quantizer, recipe

    out = tmp_path_factory.mktemp("compat_dr") / "mobilenet_dynamic_range.tflite"
    q = quantizer.Quantizer(str(models["mobilenet_float"]))
    q.load_quantization_recipe(recipe.dynamic_wi8_afp32())
    q.quantize().export_model(str(out), overwrite=True)
    return out
