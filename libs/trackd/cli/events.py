"""`trackd events tail`."""

from __future__ import annotations

import asyncio
import json

import typer
from google.protobuf.json_format import MessageToDict
from rich.console import Console
from trackd_platform.event_contract import TOPICS

from trackd.events import subscribe

app = typer.Typer(no_args_is_help=True, help="Run lifecycle events on Kafka.")


@app.command()
def tail(
    topic: list[str] = typer.Option(list(TOPICS), "--topic", "-t", help="run.started and/or run.ended."),
    as_json: bool = typer.Option(False, "--json", help="One JSON object per line."),
    from_beginning: bool = typer.Option(False, "--from-beginning", help="Replay what the broker holds."),
) -> None:
    """Print run events as they are published, until Ctrl-C."""
    console = Console()

    async def run() -> None:
        async for event in subscribe(tuple(topic), from_beginning=from_beginning):
            body = MessageToDict(event.message, preserving_proto_field_name=True)
            if as_json:
                print(json.dumps({"topic": event.topic, "key": event.run_id, "headers": event.headers,
                                  "value": body}), flush=True)
            else:
                detail = body.get("status", body.get("name", "")).removeprefix("RUN_STATUS_")
                console.print(f"[bold]{event.topic:<12}[/bold] run {event.run_id}  {detail}  "
                              f"[dim]ce_id={event.event_id}[/dim]")

    try:
        asyncio.run(run())
    except KeyboardInterrupt:
        pass
