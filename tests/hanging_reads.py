"""Entry points for tests: sagevit's own, except that reading the image files named in
SAGEVIT_TEST_HANG (comma-separated names) never returns, as a read from a hung network
file system would not. Put tests/ on PYTHONPATH, then run `python -c "import
hanging_reads; hanging_reads.cli()"` or set SAGEMAKER_TRAINING_MODULE=hanging_reads:toolkit."""

from __future__ import annotations

import os
import sys
import threading

import sagevit.data.channels


def _hang_on_named_files() -> None:
    names = set(os.environ["SAGEVIT_TEST_HANG"].split(","))
    read = sagevit.data.channels.read_image_file

    def read_or_hang(path: bytes, size: int):
        if os.path.basename(os.fsdecode(path)) in names:
            threading.Event().wait()  # forever
        return read(path, size)

    sagevit.data.channels.read_image_file = read_or_hang


def cli() -> None:
    import sagevit.entry

    _hang_on_named_files()
    sys.exit(sagevit.entry.main(sys.argv[1:]))


def toolkit() -> None:
    import sagevit.toolkit

    _hang_on_named_files()
    sagevit.toolkit.main()
