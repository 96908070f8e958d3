"""Reading the listener's CSV into the shared samples schema."""

from __future__ import annotations

import ast
from pathlib import Path

import polars as pl

import tasks.load.runner as runner
from tasks.load.samples import SAMPLE_COLUMNS, SAMPLE_SCHEMA, empty_samples, read_samples

LISTENER = Path(runner.__file__).with_name("listener.py")
HEADER = ",".join(SAMPLE_COLUMNS) + "\n"


def listener_constant(name: str) -> object:
    """A module constant of listener.py, read without importing it (it imports locust)."""
    for node in ast.parse(LISTENER.read_text()).body:
        if isinstance(node, ast.Assign) and getattr(node.targets[0], "id", None) == name:
            return ast.literal_eval(node.value)
    raise AssertionError(f"{name} not in listener.py")


def test_listener_writes_the_schema_columns_and_env_var():
    assert listener_constant("COLUMNS") == SAMPLE_COLUMNS
    assert listener_constant("SAMPLES_ENV") == runner.SAMPLES_ENV
    assert listener_constant("META_SUFFIX") == runner.META_SUFFIX


def test_missing_empty_and_header_only_files_are_empty_frames(tmp_path):
    assert read_samples(tmp_path / "nope.csv").equals(empty_samples())
    (tmp_path / "empty.csv").write_text("")
    assert read_samples(tmp_path / "empty.csv").height == 0
    (tmp_path / "header.csv").write_text(HEADER)
    frame = read_samples(tmp_path / "header.csv")
    assert frame.height == 0 and frame.schema == pl.Schema(SAMPLE_SCHEMA)


def test_rows_nulls_quotes_and_a_cut_last_line(tmp_path):
    path = tmp_path / "s.csv"
    path.write_text(HEADER
                    + "1700000000.125,fast,GET,1.5,200,100,\n"
                    + '1700000000.25,boom,POST,2.25,0,0,"[Errno 111] Connection refused, ""quoted"""\n'
                    + "1700000000.5,fast,GET,1.")  # a killed writer's partial line
    frame = read_samples(path)
    assert frame.schema == pl.Schema(SAMPLE_SCHEMA)
    assert frame.height == 2
    assert frame["error"].to_list() == [None, '[Errno 111] Connection refused, "quoted"']
    assert frame["status"].to_list() == [200, 0]
    assert frame["ts"][0] == 1700000000.125
