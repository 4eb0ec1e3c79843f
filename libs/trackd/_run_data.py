"""What a `Run` records beside params and metrics — console output, media over steps, inputs — as a
mixin of `Run` (trackd._run), and the module-level readers `trackd.read_logs`, `trackd.get_media`,
`trackd.list_inputs` and `trackd.runs_with_input`."""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from typing import Any

from trackd import _inputs, _logs, _media
from trackd._client import Client, default_client


class RunData:
    """Console capture, media and inputs of a run. `Run` provides `_client` and `id`."""

    _client: Client
    id: str
    _console: _logs.ConsoleCapture | None = None
    _media_log: _media.MediaLog | None = None

    def _start_console(self, enabled: bool) -> None:
        """Tee stdout / stderr to this run (not offline: nothing could take them)."""
        if enabled and not self._client.settings.offline:
            self._console = _logs.capture(self._client, self.id)

    def _end_console(self, status: str) -> None:
        if self._console is not None:
            self._console.run_end(status)

    def _media(self) -> _media.MediaLog:
        if self._media_log is None:
            self._media_log = _media.MediaLog(self._client, self.id)
        return self._media_log

    def log_image(self, key: str, image: Any, step: int | None = None, *, caption: str = "") -> int:
        """An image at a step (None: the key's next step), stored as PNG: a numpy array (h×w grey,
        h×w×3 RGB, h×w×4 RGBA; uint8, or floats in [0, 1]), a PIL image or a matplotlib figure.
        Returns the step. Raises InvalidArgument for an array that is no image."""
        return self._media().image(key, image, step, caption)

    def log_histogram(self, key: str, values: Any, step: int | None = None, *, bins: int = 64) -> int:
        """The distribution of `values` at a step, binned here (`bins`, at most 1,000) and stored as
        counts and edges, never as the values; or `(counts, edges)` already binned. Returns the step."""
        return self._media().histogram(key, values, step, bins)

    def log_table(self, key: str, rows: Any, step: int | None = None, *,
                  columns: Sequence[str] | None = None) -> int:
        """A table at a step: a DataFrame, a list of dicts, or a list of lists with `columns`
        (at most 10,000 rows and 4 MiB as JSON). Returns the step."""
        return self._media().table(key, rows, step, columns)

    def log_input(self, uri: str, *, digest: str | None = None, schema: Any = None, rows: int | None = None,
                  context: str = "train") -> _inputs.RunInput:
        """Record a dataset this run reads: `uri`, its `digest` (a local path without one is
        hashed), its `schema` (JSON-able, or a DataFrame: its column types), `rows`, and the
        `context` it serves in ("train", "eval", "test", …). The same uri, digest and context once."""
        return _inputs.log_input(self._client, self.id, uri, digest=digest, schema=schema, rows=rows,
                                 context=context)

    @property
    def inputs(self) -> list[_inputs.RunInput]:
        return _inputs.list_inputs(self.id, client=self._client)


def read_logs(run_id: str, *, follow: bool = False, tail_bytes: int = 0,
              client: Client | None = None) -> Iterator[_logs.LogLine]:
    """A run's console output as stored, chunk by chunk, oldest first (`follow`: then what is
    appended, until the run has ended). `tail_bytes`: only about the last that many bytes."""
    client = client or default_client()
    if follow:
        return _logs.follow_logs(run_id, tail_bytes=tail_bytes, client=client)
    return _logs.read_logs(run_id, tail_bytes=tail_bytes, client=client)


def get_media(run_id: str, key: str = "", *, step: int | None = None, download: bool = True,
              client: Client | None = None) -> list[_media.Media]:
    """The images (PNG bytes), histograms (Histogram) and tables (Table) a run logged under `key`
    (every key when empty), by key then step."""
    return _media.get_media(run_id, key, step=step, download=download, client=client or default_client())


def list_inputs(run_id: str, *, client: Client | None = None) -> list[_inputs.RunInput]:
    return _inputs.list_inputs(run_id, client=client or default_client())


def runs_with_input(digest: str, *, uri: str = "", client: Client | None = None) -> list[_inputs.RunInput]:
    """Every input with this digest (and uri), each naming its run: "which runs used this data"."""
    return list(_inputs.iter_runs_with_input(digest, uri=uri, client=client or default_client()))
