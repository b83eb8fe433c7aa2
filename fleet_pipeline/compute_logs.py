"""A step's stdout and stderr, kept in files for the UI and shown on the terminal: one ``tee`` a stream.

Dagster's ``LocalComputeLogManager`` points a step's stdout and stderr at files and, to show them
on the terminal as well, starts for each stream a ``tail -F`` of its file and a Python process that
kills the tail should the step die: four processes for every step, two of them Python interpreters
(~11 MiB each) alive for the step's whole life. Here each stream goes through a pipe into
``tee -a <file>``, which writes the file and the terminal and ends by itself once every writer of
the pipe is gone (a step that is killed included): one small process a stream, no watcher, and the
output is in the file at once instead of at the tail's next poll.

Only the capture differs: the files are the ones Dagster's manager writes and reads, under
``$DAGSTER_HOME/storage``, so the UI shows a step's output as before.
"""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from typing import IO, Any

from dagster import Field, Float, StringSource
from dagster._core.storage.compute_log_manager import CapturedLogContext, ComputeIOType
from dagster._core.storage.local_compute_log_manager import IO_TYPE_EXTENSION, LocalComputeLogManager
from dagster._utils import ensure_file, touch_file

# How long the end of a capture waits for ``tee`` to write what it still holds and exit: only a
# process the step started and left running (holding the pipe) can make it wait that long.
TEE_EXIT_TIMEOUT_S = 10.0


def _fileno(stream: IO[Any]) -> int | None:
    try:
        return stream.fileno()
    except (AttributeError, OSError, ValueError):
        return None  # a test runner's stand-in stream: nothing to redirect, as with Dagster's


@contextmanager
def tee_to_file(stream: IO[Any], path: str) -> Iterator[None]:
    """While the block runs, what is written to ``stream`` (its file descriptor, so child processes
    and native code included) goes to the file at ``path`` and still to where ``stream`` went."""
    ensure_file(path)
    fd = _fileno(stream)
    if fd is None:
        yield
        return
    stream.flush()
    original = os.dup(fd)
    try:
        tee = subprocess.Popen(["tee", "-a", path], stdin=subprocess.PIPE, stdout=original,
                               stderr=subprocess.DEVNULL, close_fds=True, start_new_session=True)
    except BaseException:
        os.close(original)
        raise
    assert tee.stdin is not None
    try:
        os.dup2(tee.stdin.fileno(), fd)
        tee.stdin.close()  # the stream's descriptor is now the pipe's only writer in this process
        yield
    finally:
        stream.flush()
        os.dup2(original, fd)  # closes our end of the pipe: tee reads to its end and exits
        os.close(original)
        try:
            tee.wait(timeout=TEE_EXIT_TIMEOUT_S)
        except subprocess.TimeoutExpired:
            tee.kill()
            tee.wait()


class TeeComputeLogManager(LocalComputeLogManager):
    """Dagster's local compute-log manager, capturing through ``tee`` (module docstring).

    ``base_dir`` defaults to the instance's ``storage`` folder, where Dagster's manager keeps them."""

    def __init__(self, base_dir: str | None = None, polling_timeout: float | None = None,
                 inst_data: Any = None) -> None:
        super().__init__(base_dir or "", polling_timeout=polling_timeout, inst_data=inst_data)

    def register_instance(self, instance: Any) -> None:
        super().register_instance(instance)
        if not self._base_dir:
            self._base_dir = os.path.join(instance.root_directory, "storage")

    @classmethod
    def config_type(cls) -> dict[str, Field]:
        return {"base_dir": Field(StringSource, is_required=False),
                "polling_timeout": Field(Float, is_required=False)}

    @classmethod
    def from_config_value(cls, inst_data: Any, config_value: dict[str, Any]) -> TeeComputeLogManager:
        return cls(inst_data=inst_data, **config_value)

    @contextmanager
    def capture_logs(self, log_key: Sequence[str]) -> Iterator[CapturedLogContext]:
        outpath = self.get_captured_local_path(log_key, IO_TYPE_EXTENSION[ComputeIOType.STDOUT])
        errpath = self.get_captured_local_path(log_key, IO_TYPE_EXTENSION[ComputeIOType.STDERR])
        with tee_to_file(sys.stdout, outpath), tee_to_file(sys.stderr, errpath):
            yield CapturedLogContext(log_key)
        # As Dagster's: the file that says the capture is complete.
        touch_file(self.complete_artifact_path(log_key))
