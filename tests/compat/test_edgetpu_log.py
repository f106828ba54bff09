"""The edgetpu_compiler output parser on real published compiler output (fixtures/README.md)."""

from __future__ import annotations

from pathlib import Path

from edgepack.compat.edgetpu_log import MAPPED, parse_compiler_log

FIXTURES = Path(__file__).parent / "fixtures" / "edgetpu_compiler"


def parse(name: str) -> dict:
    return parse_compiler_log((FIXTURES / name).read_text(encoding="utf-8"))


def test_v16_stdout_summary():
    log = parse("coral_issue433_stdout.log")
    assert log["compiler_version"] == "16.0.384591198"
    assert log["compile_ms"] == 96
    assert log["input_model"] == "inference_proxy_mobilenet_quantized_v2.tflite"
    assert log["output_model"] == "inference_proxy_mobilenet_quantized_v2_edgetpu.tflite"
    assert log["input_size_bytes"] == round(7.02 * 1024**2)
    assert log["output_size_bytes"] == round(7.14 * 1024**2)
    assert log["on_chip_memory_used_bytes"] == 80 * 1024
    assert log["on_chip_memory_remaining_bytes"] == round(6.04 * 1024**2)
    assert log["off_chip_memory_used_bytes"] == 0
    assert log["edgetpu_subgraphs"] == 1
    assert log["total_operations"] == 191
    assert (log["ops_on_edgetpu"], log["ops_on_cpu"]) == (1, 190)
    assert log["operation_log"] == "inference_proxy_mobilenet_quantized_v2_edgetpu.log"
    assert log["success"] is True
    assert "operations" not in log  # stdout without -s has no op table


def test_operation_log_with_cpu_fallbacks():
    log = parse("nrf20_mnist4.log")
    assert log["compiler_version"] == "15.0.340273435"
    assert log["input_model"] == "mnist4.tflite"
    assert log["output_model"] == "mnist4_edgetpu.tflite"
    assert log["mapped"] == {
        "CONV_2D": 2, "FULLY_CONNECTED": 2, "MAX_POOL_2D": 2, "RESHAPE": 1, "SOFTMAX": 1,
    }  # fmt: skip
    assert log["not_mapped"] == {
        "DEQUANTIZE": {"Operation is working on an unsupported data type": 1},
        "QUANTIZE": {
            "Operation is otherwise supported, but not mapped due to some unspecified limitation": 1
        },
    }
    assert (log["ops_mapped_in_table"], log["ops_in_table"]) == (8, 10)
    assert len(log["operations"]) == 7


def test_operation_log_fully_mapped():
    log = parse("nrf20_mnist7.log")
    assert log["not_mapped"] == {}
    assert log["ops_mapped_in_table"] == log["ops_in_table"] == 8


def test_more_than_one_subgraph_rows_are_counted_per_status():
    log = parse("retinanet_tiny_yolo.log")
    assert log["compiler_version"] == "14.1.317412892"
    assert log["mapped"] == {"CONV_2D": 11, "MAX_POOL_2D": 6, "QUANTIZE": 2}
    assert log["not_mapped"]["CONV_2D"] == {"More than one subgraph is not supported": 2}
    assert log["not_mapped"]["RESIZE_NEAREST_NEIGHBOR"] == {"Operation version not supported": 1}
    assert log["not_mapped"]["QUANTIZE"] == {
        "Operation is otherwise supported, but not mapped due to some unspecified limitation": 1,
        "More than one subgraph is not supported": 1,
    }
    assert (log["ops_mapped_in_table"], log["ops_in_table"]) == (19, 25)


def test_transpose_table_totals_match_the_summary_lines():
    log = parse("coral_issue342_ops.log")
    assert (log["ops_on_edgetpu"], log["ops_on_cpu"]) == (2, 153)
    assert log["ops_mapped_in_table"] == 2
    assert log["ops_in_table"] == 155
    assert log["not_mapped"]["TRANSPOSE"] == {"Operation not supported": 70}
    assert sum(r["count"] for r in log["operations"] if r["status"] == MAPPED) == 2


def test_failed_compilation_and_garbage():
    assert (
        parse_compiler_log("Edge TPU Compiler version 16.0.384591198\nCompilation failed!")[
            "success"
        ]
        is False
    )
    assert parse_compiler_log("nothing to see") == {}
