"""benchmark_model output parser against REAL outputs of the tool (see fixtures/README.md)."""

from __future__ import annotations

import platform
import shutil
from pathlib import Path

import pytest

from edgepack.bench.adb import AdbTransport, elf_abi, parse_devices
from edgepack.bench.benchmark_model import (
    benchmark_flags,
    core_mask,
    harness_document,
    parse_benchmark_output,
)
from edgepack.bench.options import BenchOptions
from edgepack.errors import DeviceError

FIXTURES = Path(__file__).parent / "fixtures" / "benchmark_model"


def parse(name: str):
    return parse_benchmark_output((FIXTURES / name).read_text(encoding="utf-8"))


def test_every_fixture_has_a_source_in_the_readme() -> None:
    readme = (FIXTURES / "README.md").read_text(encoding="utf-8")
    names = sorted(p.name for p in FIXTURES.glob("*.txt"))
    assert len(names) >= 4
    for name in names:
        assert f"`{name}`" in readme, name


def test_tf24_bare_lines_and_old_memory_wording() -> None:
    r = parse("tf2.4-android-cpu.txt")
    assert r.complete
    assert (r.init_us, r.first_inference_us, r.warmup_avg_us, r.inference_avg_us) == (
        16242.0,
        360262.0,
        304586.0,
        249684.0,
    )
    m = r.measured
    assert m is not None and r.warmup is None
    assert (m.count, m.first_us, m.curr_us, m.min_us, m.max_us, m.avg_us, m.std_us) == (
        50,
        249042.0,
        250889.0,
        247067.0,
        254474.0,
        249684.0,
        1442.0,
    )
    assert m.median_us is None
    # TF <= 2.4 called the max-RSS delta "Peak memory footprint": it is not a peak RSS.
    assert (r.memory_delta_init_mb, r.memory_delta_overall_mb) == (4.92969, 138.809)
    assert r.peak_memory_mb is None
    assert r.delegates == () and r.errors == ()


def test_gpu_complete_two_phases() -> None:
    r = parse("android-gpu-complete.txt")
    assert r.complete
    assert r.warmup is not None and r.measured is not None
    assert (r.warmup.count, r.warmup.avg_us) == (4, 122373.0)
    assert (r.measured.count, r.measured.min_us, r.measured.max_us) == (50, 113737.0, 124776.0)
    assert (r.measured.avg_us, r.measured.std_us) == (119375.0, 1948.0)
    assert r.init_us == 870557.0 and r.first_inference_us == 130565.0
    assert r.model_size_mb == 7.07479
    gpu = r.delegate("gpu")
    assert gpu is not None and gpu.applied is True
    assert gpu.delegated_nodes is None  # this build did not print the "Replacing" line


def test_xnnpack_partial_delegation_kernels() -> None:
    r = parse("rpi-xnnpack-partial.txt")
    x = r.delegate("xnnpack")
    assert x is not None and (x.applied, x.partitions, x.delegated_nodes) == (True, 1, None)
    assert r.measured is not None and r.measured.avg_us == 55744.2 and r.measured.max_us == 113361
    assert r.warmup is not None and r.warmup.count == 10


def test_info_prefix_percentiles_and_replacing_line() -> None:
    r = parse("android-info-xnnpack-percentiles.txt")
    m = r.measured
    assert m is not None
    assert (m.count, m.avg_us, m.std_us) == (50, 699438.0, 325425.0)
    assert (m.p5_us, m.median_us, m.p95_us) == (502674.0, 576856.0, 1373207.0)
    # "count=1 curr=... p5=..." (a single warmup run) has no first=/min=: not a stats line.
    assert r.warmup is None
    x = r.delegate("xnnpack")
    assert x is not None
    assert (x.delegated_nodes, x.total_nodes, x.partitions) == (49, 49, 1)
    assert (r.memory_delta_init_mb, r.memory_delta_overall_mb) == (98.0977, 99.2031)


def test_two_delegates_gpu_takes_all_nnapi_none() -> None:
    r = parse("android-info-gpu-nnapi-percentiles.txt")
    gpu, nnapi = r.delegate("gpu"), r.delegate("nnapi")
    assert gpu is not None and nnapi is not None
    assert (gpu.applied, gpu.delegated_nodes, gpu.total_nodes, gpu.partitions) == (
        True,
        49,
        49,
        1,
    )
    assert (nnapi.applied, nnapi.delegated_nodes) == (False, 0)
    assert r.measured is not None and r.measured.median_us == 307968.0
    assert r.warmup is not None and r.warmup.median_us == 328140.0


def test_logcat_prefix_from_the_android_app() -> None:
    r = parse("android-logcat-nnapi-partial.txt")
    assert r.complete
    assert r.measured is not None and (r.measured.count, r.measured.avg_us) == (75, 12167.6)
    assert r.warmup is not None and r.warmup.count == 40
    nnapi = r.delegate("nnapi")
    assert nnapi is not None and (nnapi.applied, nnapi.partitions) == (True, 44)


def test_op_profiling_tables_do_not_replace_the_measured_phase() -> None:
    r = parse("riscv-op-profiling.txt")
    m = r.measured
    assert m is not None
    # The profiler's own "Timings (microseconds): count=50 first=2989660 ..." comes later.
    assert (m.first_us, m.avg_us, m.std_us) == (2990275.0, 2950340.0, 109798.0)
    assert r.inference_avg_us == 2950340.0 and r.warmup_avg_us == 3512390.0
    assert r.warmup is None  # "count=1 curr=3512391" only


@pytest.mark.parametrize(
    ("name", "expected"),
    [
        (
            "android-xnnpack-failed.txt",
            ["Failed to apply XNNPACK delegate.", "Benchmarking failed."],
        ),
        (
            "tf2.4-android-nnapi-failed.txt",
            [
                "NN API returned error ANEURALNETWORKS_OP_FAILED at line 3779 while completing "
                "NNAPI compilation.",
                "Node number 248 (TfLiteNnapiDelegate) failed to prepare.",
                "Restored original execution plan after delegate application failure.",
                "Failed to apply NNAPI delegate.",
                "Benchmarking failed.",
            ],
        ),
    ],
)
def test_failures_are_incomplete_and_keep_the_error_lines(name: str, expected: list[str]) -> None:
    r = parse(name)
    assert not r.complete and r.failed
    assert list(r.errors) == expected
    assert r.measured is None and r.inference_avg_us is None


def test_harness_document_from_a_real_output() -> None:
    r = parse("android-info-gpu-nnapi-percentiles.txt")
    opts = BenchOptions(threads=2, warmup_runs=1, runs=50, delegate="gpu", pin_cores=(4, 5))
    doc = harness_document(
        r,
        opts,
        model_sha256="ab" * 32,
        model_bytes=123,
        device={"machine": "aarch64"},
        thermal_before={"cpu": 40.0},
        thermal_after={"cpu": 41.5},
    )
    assert doc["schema"] == "edgepack.bench/1"
    assert doc["tool"] == {"name": "benchmark_model", "version": None}
    assert doc["init_ms"] == 5664.363 and doc["first_inference_ms"] == 328.14
    assert doc["latencies_ms"] == []
    s = doc["stats"]
    assert (s["count"], s["mean_ms"], s["std_ms"], s["min_ms"], s["max_ms"]) == (
        50,
        309.35,
        4.411,
        305.938,
        333.03,
    )
    assert s["p50_ms"] == 307.968 and s["p90_ms"] is None and s["p99_ms"] is None
    assert s["throughput_ips"] == round(1000 / 309.35, 3)
    assert doc["memory"] == {
        "peak_rss_mb": None,
        "footprint_delta_mb": {"init": 375.48, "overall": 375.48},
    }
    assert doc["delegate"] == {
        "requested": "gpu",
        "applied": True,
        "delegated_nodes": 49,
        "total_nodes": 49,
        "partitions": 1,
    }
    assert doc["config"]["pin_cores"] == [4, 5] and doc["config"]["input"] == "random"
    assert doc["thermal"]["after"] == {"cpu": 41.5}


def test_harness_document_xnnpack_replacing_line_means_applied() -> None:
    r = parse("android-info-xnnpack-percentiles.txt")
    doc = harness_document(
        r,
        BenchOptions(),
        model_sha256="0" * 64,
        model_bytes=1,
        device={},
        thermal_before={},
        thermal_after={},
    )
    assert doc["delegate"]["applied"] is True
    assert doc["delegate"]["delegated_nodes"] == 49


def test_flags_per_delegate_and_core_mask() -> None:
    base = BenchOptions(threads=4, warmup_runs=10, runs=100, min_seconds=0.0, max_seconds=60.0)
    assert benchmark_flags(base, "/d/m.tflite", None) == [
        "--graph=/d/m.tflite",
        "--num_threads=4",
        "--warmup_runs=10",
        "--num_runs=100",
        "--min_secs=0",
        "--max_secs=60",
        "--use_xnnpack=true",
    ]
    gpu = BenchOptions(delegate="gpu")
    assert benchmark_flags(gpu, "m", None)[-2:] == ["--use_xnnpack=false", "--use_gpu=true"]
    nnapi = BenchOptions(delegate="nnapi")
    assert benchmark_flags(nnapi, "m", None)[-1] == "--use_nnapi=true"
    none = BenchOptions(delegate="none")
    assert benchmark_flags(none, "m", None)[-3:] == [
        "--use_xnnpack=false",
        "--use_gpu=false",
        "--use_nnapi=false",
    ]
    ext = BenchOptions(delegate="./libmy_delegate.so")
    assert benchmark_flags(ext, "m", "/d/libmy_delegate.so")[-1] == (
        "--external_delegate_path=/d/libmy_delegate.so"
    )
    assert core_mask((4, 5, 6, 7)) == "f0"
    assert core_mask((0,)) == "1"
    assert core_mask((0, 2, 9)) == "205"


# platform.machine() -> the ABI name elf_abi gives that machine's executables.
HOST_ABI = {"x86_64": "x86_64", "AMD64": "x86_64", "aarch64": "arm64-v8a", "arm64": "arm64-v8a"}


@pytest.mark.parametrize(
    ("machine", "abi"),
    [(183, "arm64-v8a"), (40, "armeabi-v7a"), (62, "x86_64"), (3, "x86"), (243, "elf-machine-243")],
)
def test_elf_abi_reads_the_machine_field(tmp_path: Path, machine: int, abi: str) -> None:
    # A minimal ELF64 little-endian header with e_machine = machine (EM_AARCH64 = 183, ...).
    binary = tmp_path / "benchmark_model"
    binary.write_bytes(
        b"\x7fELF\x02\x01\x01" + b"\x00" * 9 + b"\x02\x00" + machine.to_bytes(2, "little")
    )
    assert elf_abi(binary) == abi
    big_endian = tmp_path / "be"
    big_endian.write_bytes(
        b"\x7fELF\x01\x02\x01" + b"\x00" * 9 + b"\x00\x02" + machine.to_bytes(2, "big")
    )
    assert elf_abi(big_endian) == abi


def test_elf_abi_of_a_real_executable_and_of_non_elf_files(tmp_path: Path) -> None:
    host_true = shutil.which("true")
    assert host_true is not None
    # This host's own executables carry this host's machine, whatever the ISA.
    expected = HOST_ABI.get(platform.machine())
    if expected is not None:
        assert elf_abi(Path(host_true)) == expected
    else:  # another ISA: still an ELF file with some machine field
        assert elf_abi(Path(host_true)) is not None
    script = tmp_path / "s.sh"
    script.write_text("#!/bin/sh\n")
    assert elf_abi(script) is None
    short = tmp_path / "short"
    short.write_bytes(b"\x7fELF\x02")
    assert elf_abi(short) is None


def test_parse_devices_states() -> None:
    text = (
        "List of devices attached\n"
        "R58M12345\tdevice\n"
        "127.0.0.1:5555\toffline\n"
        "emulator-5554\tunauthorized\n\n"
    )
    assert parse_devices(text) == {
        "R58M12345": "device",
        "127.0.0.1:5555": "offline",
        "emulator-5554": "unauthorized",
    }


def test_missing_benchmark_binary_says_where_to_get_it(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("EDGEPACK_BENCHMARK_MODEL", raising=False)
    model = tmp_path / "m.tflite"
    model.write_bytes(b"x")
    with pytest.raises(DeviceError) as err:
        AdbTransport(serial="X").run(model, BenchOptions())
    assert err.value.message == "no benchmark_model binary was given for the adb transport"
    assert "EDGEPACK_BENCHMARK_MODEL" in err.value.hint
    assert "android_aarch64" in err.value.hint and "bazel build" in err.value.hint
    monkeypatch.setenv("EDGEPACK_BENCHMARK_MODEL", str(tmp_path / "nope"))
    with pytest.raises(DeviceError, match="benchmark_model binary not found"):
        AdbTransport(serial="X").run(model, BenchOptions())


def test_edgetpu_and_input_files_are_refused_before_any_adb_call(tmp_path: Path) -> None:
    model = tmp_path / "m.tflite"
    model.write_bytes(b"x")
    t = AdbTransport(serial="X", adb_path=str(tmp_path / "no-adb-here"))
    with pytest.raises(DeviceError, match="Edge TPU"):
        t.run(model, BenchOptions(delegate="edgetpu"))
    with pytest.raises(DeviceError, match="--input data files"):
        t.run(model, BenchOptions(input_file=tmp_path / "x.npy"))


def test_periodic_peak_memory_is_the_peak_rss() -> None:
    r = parse("chromeos-selected-peak-memory.txt")
    assert r.complete
    assert r.peak_memory_mb == 93.2383
    assert r.memory_delta_overall_mb is None
    assert r.warmup is not None and r.warmup.count == 9
    assert r.measured is not None and (r.measured.count, r.measured.avg_us) == (1061, 56265.8)
    x = r.delegate("xnnpack")
    assert x is not None and (x.delegated_nodes, x.total_nodes, x.partitions) == (58, 58, 1)
    doc = harness_document(
        r,
        BenchOptions(),
        model_sha256="0" * 64,
        model_bytes=1,
        device={},
        thermal_before={},
        thermal_after={},
    )
    assert doc["memory"] == {"peak_rss_mb": 93.2383, "footprint_delta_mb": None}
    assert doc["first_inference_ms"] == 81.913 and doc["warmup_mean_ms"] == 58.9847
