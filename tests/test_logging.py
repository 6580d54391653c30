"""A job's log file receives its Python logging and the output of C/C++ libraries."""

import logging
import os
from types import SimpleNamespace

from rewarded_soups.workflow import logged


def test_logged_captures_python_and_file_descriptor_output(tmp_path, capfd):
    smk = SimpleNamespace(log=[str(tmp_path / "logs" / "job.log")], rule="demo", wildcards={}, threads=1)
    with logged(smk):
        print("from print")
        logging.getLogger("x").info("from logging")
        os.system("echo from-a-subprocess >&2")  # what XLA's C++ logging does: write to fd 2
    os.write(2, b"after\n")
    text = (tmp_path / "logs" / "job.log").read_text()
    assert "rule demo" in text and "from print" in text and "from logging" in text
    assert "from-a-subprocess" in text and "after" not in text
    assert "after" in capfd.readouterr().err
