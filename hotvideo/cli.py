"""The `hotvideo` command: one entry point, a subcommand per job."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from core.logs import configure
from core.reference import HORIZONS
from core.settings import get_settings

app = typer.Typer(
    help="Predict, hours after publication, which Bilibili videos will enter the hot list.",
    no_args_is_help=True,
    add_completion=False,
)


@app.callback()
def main() -> None:
    """Settings come from environment variables (see the README); unset services run embedded."""
    settings = get_settings()
    configure(settings.log_level, settings.log_format)


@app.command()
def demo(
    videos: Annotated[int, typer.Option(min=1, help="videos in the simulated world")] = 400,
    sim_hours: Annotated[float, typer.Option(min=1.0, help="hours of event time to simulate")] = 10.0,
    seed: Annotated[int, typer.Option(help="world seed: same seed, same predictions")] = 7,
    malformed: Annotated[int, typer.Option(min=0, help="malformed snapshots to inject")] = 20,
    summary_json: Annotated[Path | None, typer.Option(help="write the run summary here")] = None,
) -> None:
    """Generate a world, train if needed, run the worker and replay the world through Kafka."""
    from hotvideo.demo import DemoOptions, run_demo

    run_demo(
        get_settings(),
        DemoOptions(
            videos=videos, sim_hours=sim_hours, seed=seed, malformed=malformed, summary_json=summary_json
        ),
    )


@app.command()
def worker() -> None:
    """Run the Faust worker (scoring + sinks) until interrupted."""
    from hotvideo.stack import attach_or_exit
    from stream.worker import run_worker

    settings = get_settings()
    svc = attach_or_exit(settings, ("kafka", "redis"))
    run_worker(svc.apply(settings), svc.kafka_bootstrap)


@app.command()
def simulate(
    out: Annotated[Path | None, typer.Option(help="event log to write (.jsonl, .jsonl.gz, .parquet)")] = None,
    videos: Annotated[int, typer.Option(min=1)] = 2000,
    sim_hours: Annotated[
        float | None, typer.Option(min=1.0, help="default: max(48, videos / 1000), a steady upload rate")
    ] = None,
    seed: Annotated[int, typer.Option()] = 1,
    hot_base_rate: Annotated[
        float, typer.Option(min=0.0001, max=0.5, help="share that enters the list")
    ] = 0.01,
    noise: Annotated[float, typer.Option(min=0.0, max=1.0, help="share of snapshots hit by a fault")] = 0.0,
    malformed: Annotated[float, typer.Option(min=0.0, max=1.0, help="share followed by a bad copy")] = 0.0,
    calibrate_against: Annotated[
        Path | None, typer.Option(help="real popular-list captures: print KS/TV distances", exists=True)
    ] = None,
) -> None:
    """Write a simulated Bilibili world as an event log, or compare its hot videos with real ones."""
    from ingest.world import WorldConfig

    hours = sim_hours if sim_hours is not None else max(48.0, videos / 1000)
    cfg = WorldConfig(
        videos=videos,
        sim_hours=hours,
        seed=seed,
        hot_base_rate=hot_base_rate,
        noise=noise,
        malformed=malformed,
    )
    if calibrate_against is not None:
        from ingest.calibrate import report

        text, ok = report(calibrate_against, cfg)
        typer.echo(text)
        if not ok:
            raise typer.Exit(1)
        return
    if out is None:
        raise typer.BadParameter("give --out (or --calibrate-against)")
    from ingest.eventlog import write_log
    from ingest.world import generate

    n = write_log(out, generate(cfg))
    typer.echo(f"wrote {n} events to {out}")


def _epoch_option(value: str | None) -> int | None:
    """Epoch seconds, or an ISO date/time (naive means Beijing time)."""
    if value is None or value.isdigit():
        return None if value is None else int(value)
    from datetime import datetime

    from core.reference import BEIJING

    parsed = datetime.fromisoformat(value)
    return int((parsed if parsed.tzinfo else parsed.replace(tzinfo=BEIJING)).timestamp())


@app.command()
def replay(
    source: Annotated[
        str,
        typer.Argument(
            help="event log (.jsonl, .jsonl.gz, .parquet), SQLAlchemy URL, bili-popular or raw-page folder"
        ),
    ],
    tables: Annotated[
        str, typer.Option(help="for a URL: `project` tables or seed 000's `legacy` ones")
    ] = "project",
    speed: Annotated[str, typer.Option(help="`max` (as fast as possible), or N for N x real time")] = "max",
    since: Annotated[
        str | None, typer.Option(help="first event time: epoch s or ISO (Beijing if naive)")
    ] = None,
    until: Annotated[str | None, typer.Option(help="end of event time (exclusive)")] = None,
    out: Annotated[Path | None, typer.Option(help="write the records to this event log instead")] = None,
) -> None:
    """Publish history to the topics in event-time order, at real time, N x, or as fast as possible."""
    from ingest.eventlog import write_records
    from ingest.replay import in_range, records_of
    from ingest.replay import replay as run_replay

    if tables not in ("project", "legacy"):
        raise typer.BadParameter("--tables is `project` or `legacy`")
    pace = None if speed == "max" else float(speed)
    if pace is not None and pace <= 0:
        raise typer.BadParameter("--speed must be `max` or a positive number")
    records = records_of(source, "legacy" if tables == "legacy" else "project")
    first, end = _epoch_option(since), _epoch_option(until)
    if out is not None:
        typer.echo(f"wrote {write_records(out, in_range(records, first, end))} records to {out}")
        return
    from broker.admin import ensure_topics
    from hotvideo.stack import attach_or_exit

    settings = get_settings()
    bootstrap = attach_or_exit(settings, ("kafka",)).kafka_bootstrap
    ensure_topics(bootstrap, settings.topics, settings.partitions)
    n = run_replay(
        records, bootstrap, settings.topics, speed=pace, since=first, until=end, kind=settings.broker_kind
    )
    typer.echo(f"published {n} events")


@app.command()
def train(
    events: Annotated[Path, typer.Option(help="event log to learn from", exists=True)],
    out: Annotated[Path | None, typer.Option(help="model directory (default MODEL_DIR)")] = None,
    seed: Annotated[int, typer.Option()] = 0,
    n_boot: Annotated[int, typer.Option(min=0, help="bootstrap resamples of the metrics' intervals")] = 1000,
    write_labels: Annotated[
        bool, typer.Option(help="also write video_label rows to DATABASE_URL, as the stream decides them")
    ] = False,
) -> None:
    """Train one model per horizon from an event log: ONNX models, metrics.json, model card; promote.

    Labels follow LABEL_WINDOW_S and LABEL_SOURCES. `--write-labels` writes each video's label as the
    worker decides it at the end of the same events (its window closed once the latest snapshot passed
    pubdate + T + CHECKPOINT_GRACE_S): the rows `bili.outcome` gives after a replay of the log.
    """
    from ingest.eventlog import read_events
    from model.dataset import datasets_from, observe
    from model.train import train as train_models

    settings = get_settings()
    observed = observe(read_events(events), settings.label_window_s, hot_sources=settings.label_sources)
    if write_labels:
        from sink.datasets import write_labels as store_labels
        from sink.sql import SqlStore

        store = SqlStore(settings.database_url or settings.sqlite_url)
        labels = observed.labels(grace_s=settings.checkpoint_grace_s)
        typer.echo(f"wrote {store_labels(store, labels)} video_label rows")
        store.close()
    version = train_models(datasets_from(observed), out or settings.model_dir, seed=seed, n_boot=n_boot)
    typer.echo(f"promoted model version {version}")


@app.command()
def evaluate(
    events: Annotated[Path, typer.Option(help="labelled event log to score", exists=True)],
    model: Annotated[Path | None, typer.Option(help="model directory (default MODEL_DIR)")] = None,
    out: Annotated[Path | None, typer.Option(help="default <model>/<version>/evaluations/<log>")] = None,
    n_boot: Annotated[int, typer.Option(min=0, help="bootstrap resamples of the metrics' intervals")] = 1000,
) -> None:
    """Score an event log with the promoted model and its baselines; write metrics.json and a card."""
    from ingest.eventlog import read_events
    from model.evaluate import evaluate_log

    name = events.name.split(".")[0]
    path = evaluate_log(model or get_settings().model_dir, read_events(events), name, out, n_boot=n_boot)
    typer.echo(f"wrote {path}")


@app.command()
def subscribe(
    horizon: Annotated[list[str] | None, typer.Option(help="only these horizons (repeatable)")] = None,
    min_prob: Annotated[float, typer.Option(min=0.0, max=1.0, help="only predictions at least this")] = 0.0,
    from_beginning: Annotated[bool, typer.Option(help="start at the oldest prediction")] = False,
    limit: Annotated[int | None, typer.Option(min=1, help="stop after this many")] = None,
) -> None:
    """Print predictions from the prediction topic as they arrive."""
    from hotvideo.subscribe import follow

    unknown = set(horizon or []) - set(HORIZONS)
    if unknown:
        raise typer.BadParameter(f"unknown horizon {sorted(unknown)}; choose from {list(HORIZONS)}")
    from hotvideo.stack import attach_or_exit

    settings = get_settings()
    for line in follow(
        attach_or_exit(settings, ("kafka",)).kafka_bootstrap,
        settings.topics.prediction,
        horizons=set(horizon or HORIZONS),
        min_prob=min_prob,
        from_beginning=from_beginning,
        limit=limit,
    ):
        typer.echo(line)


@app.command()
def bench(
    json_path: Annotated[Path | None, typer.Option("--json", help="also write the figures here")] = None,
    snapshots: Annotated[int, typer.Option(min=10_000, help="snapshots replayed per consumer")] = 200_000,
    rate: Annotated[int, typer.Option(min=100, help="steady snapshots/s for the latency figures")] = 2000,
    latency_s: Annotated[float, typer.Option(min=5.0, help="seconds of steady load")] = 15.0,
) -> None:
    """Measure throughput (raw consumer, naive Faust, the worker), latency, ONNX cost, state size."""
    from hotvideo.bench import BenchOptions, run_bench

    run_bench(
        get_settings(),
        BenchOptions(snapshots=snapshots, rate=rate, latency_s=latency_s, json_path=json_path),
    )


@app.command()
def schemas(
    out: Annotated[Path | None, typer.Option(help="directory (default: the repo's schemas/)")] = None,
) -> None:
    """Write the JSON Schema of every event type."""
    from core.schemas import SCHEMA_DIR, write_all

    for path in write_all(out or SCHEMA_DIR):
        typer.echo(str(path))


@app.command()
def serve(
    train_events: Annotated[
        Path | None,
        typer.Option(
            help="the promoted model's training event log: builds ROC/PR curves and play ranges", exists=True
        ),
    ] = None,
    sample_danmaku: Annotated[
        bool, typer.Option(help="fill an empty danmaku table with simulated lines (demo only)")
    ] = False,
    host: Annotated[str | None, typer.Option(help="listen address (default API_HOST)")] = None,
    port: Annotated[int | None, typer.Option(min=1, max=65535, help="port (default API_PORT)")] = None,
) -> None:
    """Serve the HTTP API and the dashboard (API_HOST:API_PORT) over the configured stores."""
    from api.server import serve as run_server
    from hotvideo.stack import services

    given = {"api_host": host, "api_port": port}
    settings = get_settings().model_copy(update={k: v for k, v in given.items() if v is not None})
    # REDIS_URL unset and no stack: DATA_DIR's own Redis, with what it saved (what `hotvideo demo` filled)
    with services(settings, ("redis",)) as svc:
        run_server(settings, svc.redis_url, train_events, sample_danmaku)


@app.command()
def collect(
    seconds: Annotated[float | None, typer.Option(min=1.0, help="stop after this long")] = None,
) -> None:
    """Collect live from Bilibili into Kafka: new videos, snapshots, UP profiles, hot lists, danmaku."""
    from hotvideo.stack import attach_or_exit
    from ingest.collect.collectors import run_collect

    settings = get_settings()
    run_collect(settings, attach_or_exit(settings, ("kafka",)).kafka_bootstrap, seconds)


@app.command()
def health(
    sample_s: Annotated[float, typer.Option(min=0.5, help="seconds between the two offset samples")] = 5.0,
    timeout: Annotated[
        float, typer.Option(min=0.1, help="seconds each sample may wait for the broker; then exit 2")
    ] = 10.0,
) -> None:
    """Consumer lag, committed-offset progress and sink backlog of the worker group.

    Exit 0 ok, 1 stuck, 2 broker unreachable within --timeout (a health probe must not hang).
    """
    import json

    from broker.health import BrokerUnreachable, check
    from hotvideo.stack import attach_or_exit

    settings = get_settings()
    bootstrap = attach_or_exit(settings, ("kafka",)).kafka_bootstrap
    try:
        result = check(bootstrap, settings.worker_id, settings.topics, sample_s, timeout)
    except BrokerUnreachable as exc:
        typer.echo(json.dumps({"verdict": "unreachable", "error": str(exc)}, indent=2))
        typer.echo(
            f"hotvideo health: {exc}. Check that Kafka is running and that KAFKA_BOOTSTRAP "
            f"({bootstrap}) points at it; --timeout waits longer for a slow broker.",
            err=True,
        )
        raise typer.Exit(2) from None
    typer.echo(json.dumps(result, indent=2))
    raise typer.Exit(0 if result["verdict"] == "ok" else 1)


@app.command()
def live(
    source: Annotated[
        str, typer.Option(help="`bilibili` (collect from the site) or `none` (events come from elsewhere)")
    ] = "bilibili",
    workers: Annotated[
        int, typer.Option(min=1, max=32, help="worker processes (web ports WEB_PORT + i)")
    ] = 2,
    api: Annotated[bool, typer.Option(help="serve the API and dashboard (API_HOST:API_PORT)")] = True,
    ephemeral: Annotated[bool, typer.Option(help="if live starts the stack: broker in memory")] = False,
    status_every: Annotated[float, typer.Option(min=1.0, help="seconds between status lines")] = 30.0,
) -> None:
    """The whole live system under one supervisor: stack, collectors, workers, API. Ctrl-C stops it."""
    from hotvideo.live import LiveOptions, run_live

    if source not in ("bilibili", "none"):
        raise typer.BadParameter("--source is `bilibili` or `none`")
    run_live(
        get_settings(),
        LiveOptions(
            source=source,  # type: ignore[arg-type]
            workers=workers,
            api=api,
            ephemeral=ephemeral,
            status_every_s=status_every,
        ),
    )


stack_app = typer.Typer(
    help="The shared embedded services of DATA_DIR: broker, Redis and object store.", no_args_is_help=True
)
app.add_typer(stack_app, name="stack")


@stack_app.command("up")
def stack_up(
    ephemeral: Annotated[bool, typer.Option(help="keep the broker in memory (tests, demos)")] = False,
) -> None:
    """Start DATA_DIR's stack on its loopback ports and leave it running; every command attaches to it."""
    from hotvideo.stack import StackError, up

    try:
        record = up(get_settings(), ephemeral)
    except StackError as exc:
        typer.echo(f"hotvideo stack up: {exc}", err=True)
        raise typer.Exit(1) from None
    for name, service in record.services.items():
        typer.echo(f"{name:12} {service['address']:22} pid {service['pid']}")


@stack_app.command("down")
def stack_down(
    timeout: Annotated[float, typer.Option(min=1.0, help="seconds each server may take to stop")] = 30.0,
) -> None:
    """Stop DATA_DIR's stack cleanly (the broker first, the object store last)."""
    from hotvideo.stack import down

    settings = get_settings()
    stopped = down(settings, timeout)
    typer.echo(
        f"stack of {settings.data_dir} stopped" if stopped else f"no stack recorded in {settings.data_dir}"
    )


@stack_app.command("status")
def stack_status(
    json_out: Annotated[bool, typer.Option("--json", help="print JSON")] = False,
) -> None:
    """Each service of DATA_DIR's stack: address, pid, health. Exit 0 when all answer, 1 otherwise."""
    import json

    from hotvideo.stack import status

    report = status(get_settings())
    if json_out:
        typer.echo(json.dumps(report, indent=2))
    elif not report["services"]:
        typer.echo(f"no stack recorded in {report['data_dir']} (start one with `hotvideo stack up`)")
    else:
        for s in report["services"]:
            state = "ok" if s["healthy"] else f"DOWN ({s.get('error', '')})"
            typer.echo(f"{s['name']:12} {s['address']:22} pid {s['pid']:<8} {state}")
    raise typer.Exit(0 if report["running"] else 1)


if __name__ == "__main__":
    app()
