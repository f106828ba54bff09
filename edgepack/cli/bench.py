"""`edgepack bench`: benchmark a package (or a .tflite) on a device, locally, or on a fleet."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import typer

from edgepack.cli.output import echo_json, echo_table

FLEET_HELP = (
    "TOML file of devices: \\[\\[device]] name, target, transport (ssh|adb|local), address, "
    "optional port/user/identity/serial/python. Devices whose target matches the package "
    "are benchmarked concurrently."
)


def register(app: typer.Typer) -> None:
    @app.command("bench")
    def bench(
        package: Path = typer.Argument(..., help="Package folder (edgepack build) or a .tflite."),
        target: str | None = typer.Option(None, "--target", help="Target of a bare .tflite."),
        host: str | None = typer.Option(
            None, "--host", help="SSH device: user@host[:port] or a ~/.ssh/config Host alias."
        ),
        port: int | None = typer.Option(None, "--port", help="SSH port (default 22 / config)."),
        identity: str | None = typer.Option(None, "--identity", help="SSH private key file."),
        accept_new_host_key: bool = typer.Option(
            False,
            "--accept-new-host-key",
            help="Record the host key of a device not yet in known_hosts (a CHANGED key is "
            "always refused).",
        ),
        serial: str | None = typer.Option(None, "--serial", help="adb device serial (Android)."),
        benchmark_binary: str | None = typer.Option(
            None, "--benchmark-binary", help="TFLite benchmark_model binary for adb devices."
        ),
        remote_python: str | None = typer.Option(
            None,
            "--remote-python",
            help="Python command on an SSH device (default: the built-in target's, else "
            "python3; never taken from the package).",
        ),
        threads: int | None = typer.Option(None, "--threads", help="Default: the profile's."),
        runs: int | None = typer.Option(None, "--runs", help="Measured runs (profile default)."),
        warmup_runs: int | None = typer.Option(None, "--warmup-runs"),
        min_seconds: float | None = typer.Option(None, "--min-seconds"),
        max_seconds: float | None = typer.Option(None, "--max-seconds"),
        delegate: str | None = typer.Option(
            None, "--delegate", help="xnnpack | none | gpu | edgetpu | nnapi | path/to/delegate.so"
        ),
        input_data: Path | None = typer.Option(
            None,
            "--input-data",
            help=".npy/.npz input (default: the package's samples of the build data for a "
            "model with integer inputs, else random data).",
        ),
        timeout: float | None = typer.Option(
            None, "--timeout", help="Seconds per device before giving up (default 600)."
        ),
        fleet: Path | None = typer.Option(None, "--fleet", help=FLEET_HELP),
        baseline: Path | None = typer.Option(
            None, "--baseline", help="A saved result JSON to compare p50/p90 against."
        ),
        max_regression: str = typer.Option(
            "10%", "--max-regression", help="Allowed slowdown vs --baseline (noise-aware)."
        ),
        json_: bool = typer.Option(False, "--json", help="Print JSON instead of a table."),
        no_save: bool = typer.Option(False, "--no-save", help="Do not save under <package>/bench."),
    ) -> None:
        """Benchmark on a device over SSH, adb, or locally; save and print the result.

        Exit codes: 2 bad input, 4 device failure, 5 regression against --baseline.
        """
        from edgepack.bench import plan
        from edgepack.bench.results import (
            compare,
            load_baseline,
            load_subject,
            parse_threshold,
            raise_on_regression,
            save_result,
        )
        from edgepack.errors import UsageError

        subject = load_subject(package)
        profile = plan.resolve_profile(subject, target)
        options = plan.bench_options(
            profile,
            plan.Overrides(
                threads=threads,
                runs=runs,
                warmup_runs=warmup_runs,
                min_seconds=min_seconds,
                max_seconds=max_seconds,
                delegate=delegate,
                input_file=input_data,
                timeout_s=timeout,
            ),
        )
        conn = plan.Connection(
            host=host,
            port=port,
            identity=identity,
            accept_new_host_key=accept_new_host_key,
            serial=serial,
            benchmark_binary=benchmark_binary,
            remote_python=remote_python,
        )
        threshold = parse_threshold(max_regression)
        if fleet is not None:
            if host or serial:
                raise UsageError(
                    "--fleet names the devices itself", "drop --host/--serial, or drop --fleet"
                )
            if baseline is not None:
                raise UsageError(
                    "--baseline compares one device's run", "use --baseline without --fleet"
                )
            _bench_fleet(subject, profile, options, conn, fleet, json_, no_save)
            return
        base = load_baseline(baseline) if baseline is not None else None
        kind = plan.transport_kind(profile, host, serial)
        result = plan.run_once(subject, profile, options, conn, kind)
        harness = result["harness"]
        comparison = compare(base, harness, threshold) if base is not None else None
        if comparison is not None:
            result["comparison"] = comparison.to_dict()
        saved = None if no_save else save_result(result, subject.save_dir)
        if json_:
            echo_json({**result, "saved_to": str(saved) if saved else None})
        else:
            _print_result(result, saved)
            if comparison is not None:
                _print_comparison(comparison)
        if comparison is not None:
            raise_on_regression(comparison)


def _print_result(result: dict[str, Any], saved: Path | None) -> None:
    from edgepack.bench.results import summary_rows

    echo_table(["", result["package"]["name"]], summary_rows(result))
    if result.get("edgetpu"):
        typer.echo(f"note: {result['edgetpu']['note']}")
    for w in result["harness"].get("warnings") or []:
        typer.echo(f"warning: {w}", err=True)
    if saved:
        typer.echo(f"saved: {saved}")


def _print_comparison(comparison: Any) -> None:
    from edgepack.bench.results import COMPARISON_HEADERS, comparison_rows

    typer.echo("")
    echo_table(COMPARISON_HEADERS, comparison_rows(comparison))
    for w in comparison.warnings:
        typer.echo(f"warning: baseline {w}", err=True)


def _bench_fleet(
    subject: Any, profile: Any, options: Any, conn: Any, fleet: Path, json_: bool, no_save: bool
) -> None:
    from edgepack.bench import plan
    from edgepack.bench.fleet import load_fleet, run_fleet, select_devices
    from edgepack.bench.results import make_result, save_result
    from edgepack.errors import DeviceError

    devices = select_devices(load_fleet(fleet), profile.name, str(fleet))
    outcomes = run_fleet(
        devices,
        lambda d: plan.fleet_transport(d, conn, plan.device_python(subject, profile, conn)),
        subject.model_path,
        options,
    )
    results: list[dict[str, Any]] = []
    failures: list[dict[str, Any]] = []
    rows: list[tuple[Any, ...]] = []
    for o in outcomes:
        if o.harness is not None:
            result = make_result(
                subject,
                profile.name,
                o.device.transport.value,
                o.identity,
                o.harness,
                profile_sha256=subject.profile_sha256 or profile.sha256,
            )
            saved = None if no_save else save_result(result, subject.save_dir)
            results.append({**result, "saved_to": str(saved) if saved else None})
            s = o.harness["stats"]
            rows.append(
                (
                    o.device.name,
                    o.device.transport.value,
                    "ok",
                    _ms(s["p50_ms"]),
                    _ms(s["p90_ms"]),
                    _ms(s["mean_ms"]),
                    s["count"],
                    "",
                )
            )
        else:
            err = o.error
            failures.append(
                {
                    "device": o.device.name,
                    "transport": o.device.transport.value,
                    "identity": o.identity,
                    "error": err.message if err else "unknown",
                    "hint": err.hint if err else "",
                }
            )
            rows.append(
                (
                    o.device.name,
                    o.device.transport.value,
                    "FAILED",
                    "-",
                    "-",
                    "-",
                    "-",
                    err.message if err else "",
                )
            )
    if json_:
        echo_json({"target": profile.name, "results": results, "failures": failures})
    else:
        echo_table(
            ["device", "transport", "status", "p50 ms", "p90 ms", "mean ms", "runs", "error"], rows
        )
        if results and results[0].get("edgetpu"):
            typer.echo(f"note: {results[0]['edgetpu']['note']}")
        for f in failures:
            typer.echo(f"error: {f['device']}: {f['error']}", err=True)
            if f["hint"]:
                typer.echo(f"hint: {f['hint']}", err=True)
    if failures:
        raise DeviceError(
            f"{len(failures)} of {len(outcomes)} devices failed: "
            + ", ".join(f["device"] for f in failures),
            hint="the other devices' results were saved; fix the failed devices and rerun",
        )


def _ms(v: Any) -> str:
    from edgepack.bench.results import fmt_ms

    return fmt_ms(v)
