"""Capture without the registry: git state, DVC data hashes and the commit that recorded them,
and the columns of the tables, all read from folders the caller names (never the working
directory).

The repositories are real (``git`` in ``tmp_path``). The ``.dvc`` and ``dvc.lock`` files are
written here in the format DVC 3 writes (``outs: [{md5, size, hash: md5, path}]``), so the tests
run in a second instead of starting DVC; tests/integration/test_dvc_pipeline.py checks the same
rules through a real ``dvc add`` / ``dvc repro``.
"""

from __future__ import annotations

import hashlib
import subprocess
from datetime import datetime, timezone
from pathlib import Path

import pytest
import yaml
from hypothesis import given
from hypothesis import strategies as st

from modelyard.core import lineage
from modelyard.project import capture, git
from modelyard.project import dvc as dvc_support


def _git(repo: Path, *args: str) -> str:
    done = subprocess.run(
        ["git", "-c", "user.name=t", "-c", "user.email=t@t.invalid", *args],
        cwd=repo, capture_output=True, text=True, check=True,
    )
    return done.stdout.strip()


def _commit(repo: Path, message: str) -> str:
    _git(repo, "add", "-A")
    _git(repo, "commit", "-q", "-m", message)
    return _git(repo, "rev-parse", "HEAD")


def _md5(data: bytes) -> str:
    return hashlib.md5(data, usedforsecurity=False).hexdigest()


def _out(path: str, data: bytes) -> dict[str, object]:
    return {"md5": _md5(data), "size": len(data), "hash": "md5", "path": path}


def _dvc_add(repo: Path, rel: str, data: bytes) -> str:
    """What `dvc add REL` leaves: the bytes, and REL.dvc naming their md5."""
    target = repo / rel
    target.parent.mkdir(parents=True, exist_ok=True)
    target.write_bytes(data)
    record = {"outs": [_out(target.name, data)]}
    target.with_name(target.name + ".dvc").write_text(yaml.safe_dump(record, sort_keys=False))
    return _md5(data)


def _repro(repo: Path, outs: dict[str, bytes], deps: dict[str, bytes] | None = None) -> None:
    """What a `dvc repro` stage leaves: its outputs, and dvc.lock naming them (and its deps)."""
    for rel, data in outs.items():
        (repo / rel).parent.mkdir(parents=True, exist_ok=True)
        (repo / rel).write_bytes(data)
    stage = {"cmd": "python src/prepare.py",
             "deps": [_out(rel, data) for rel, data in (deps or {}).items()],
             "outs": [_out(rel, data) for rel, data in outs.items()]}
    lock = {"schema": "2.0", "stages": {"prepare": stage}}
    (repo / "dvc.lock").write_text(yaml.safe_dump(lock, sort_keys=False))


@pytest.fixture
def repo(tmp_path: Path) -> Path:
    """A Git repository (branch main, one commit) that is a DVC project."""
    root = tmp_path / "project"
    root.mkdir()
    git.init_repository(root)
    (root / ".dvc").mkdir()
    (root / ".dvc" / "config").write_text("")
    (root / "README.md").write_text("project\n")
    _commit(root, "start")
    return root


def _capture(cwd: Path, data: list[str | Path]) -> lineage.Lineage:
    return capture.capture(cwd=cwd, data=data, seed=7, user="alice",
                           started_at=datetime(2024, 1, 1, tzinfo=timezone.utc),
                           duration_s=1.5, parent_run=None)


# -- the folder is the caller's, never the working directory -----------------------------------
def test_capture_reads_the_folder_it_is_given(repo: Path, tmp_path: Path,
                                              monkeypatch: pytest.MonkeyPatch) -> None:
    (repo / "data.csv").write_text("a,b\n1,2\n")
    head = _commit(repo, "data")
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    monkeypatch.chdir(elsewhere)  # not a repository, no data.csv
    found = _capture(repo, ["data.csv"])
    assert (found.git_commit, found.git_branch, found.git_dirty) == (head, "main", "false")
    (ref,) = found.data
    assert (ref.path, ref.source) == ("data.csv", "sha256")
    assert ref.hash == hashlib.sha256(b"a,b\n1,2\n").hexdigest()
    assert found.seed == "7" and found.trained_by == "alice" and found.duration_s == "1.500"


def test_relative_folders_are_refused(repo: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(repo)
    with pytest.raises(ValueError, match="absolute"):
        _capture(Path("."), [])
    with pytest.raises(ValueError, match="absolute"):
        dvc_support.commit_recording(Path("."), _md5(b"x"))
    with pytest.raises(ValueError, match="absolute"):
        dvc_support.recorded_hash(Path("data.csv"))


def test_outside_a_repository_the_git_fields_are_empty(tmp_path: Path) -> None:
    folder = tmp_path / "plain"
    folder.mkdir()
    found = _capture(folder, [])
    assert (found.git_commit, found.git_branch, found.git_dirty) == ("", "", "")


# -- DVC data: the commit is one that records these bytes, never merely the last one ------------
def test_a_dvc_add_not_yet_committed_names_no_commit(repo: Path) -> None:
    first = _dvc_add(repo, "data/customers.csv", b"id,churn\n1,0\n")
    c1 = _commit(repo, "data v1")
    second = _dvc_add(repo, "data/customers.csv", b"id,churn\n1,0\n2,1\n")

    # Registered now: DVC's record says `second`, but no commit records it yet. The last
    # commit that touched customers.csv.dvc (c1) records `first`: naming it would be wrong.
    (ref,) = _capture(repo, ["data/customers.csv"]).data
    assert (ref.source, ref.hash, ref.git_commit) == ("dvc", second, "")

    c2 = _commit(repo, "data v2")
    assert dvc_support.commit_recording(repo, second) == c2
    assert dvc_support.commit_recording(repo, first) == c1
    (ref,) = _capture(repo, ["data/customers.csv"]).data
    assert (ref.hash, ref.git_commit) == (second, c2)


def test_inside_dvc_repro_the_lock_names_the_new_data_before_it_is_committed(repo: Path) -> None:
    # dvc repro writes each stage's outputs into dvc.lock before the next stage (train, which
    # registers) starts; the commit comes after the whole pipeline.
    _repro(repo, {"data/prepared/train.csv": b"x\n1\n"})
    c1 = _commit(repo, "train v1")
    _repro(repo, {"data/prepared/train.csv": b"x\n1\n2\n"})
    (ref,) = _capture(repo, ["data/prepared/train.csv"]).data
    assert ref.source == "dvc" and ref.hash == _md5(b"x\n1\n2\n")
    assert ref.git_commit == ""  # today's dvc.lock in c1 records the old bytes
    c2 = _commit(repo, "train v2")
    assert dvc_support.commit_recording(repo, ref.hash, path=ref.path) == c2
    assert dvc_support.commit_recording(repo / "data", _md5(b"x\n1\n"), path=ref.path) == c1


def test_the_first_commit_that_recorded_the_bytes_is_named(repo: Path) -> None:
    old = {"data/prepared/train.csv": b"x\n1\n"}
    _repro(repo, old)
    c1 = _commit(repo, "v1")
    _repro(repo, {"data/prepared/train.csv": b"x\n9\n"})
    _commit(repo, "v2")
    _repro(repo, old)  # back to the v1 data: c1 recorded exactly these bytes
    _commit(repo, "v3 = v1 data")
    (ref,) = _capture(repo, ["data/prepared/train.csv"]).data
    assert ref.git_commit == c1


def test_a_commit_that_merely_mentions_the_hash_does_not_count(repo: Path) -> None:
    data = b"shared bytes\n"
    # First the bytes appear as another path's output and as a dependency...
    _repro(repo, {"data/raw/copy.csv": data}, deps={"data/prepared/train.csv": data})
    _commit(repo, "mentions")
    # ...then as the output itself.
    _repro(repo, {"data/prepared/train.csv": data})
    records = _commit(repo, "records")
    assert dvc_support.commit_recording(repo, _md5(data), path="data/prepared/train.csv") == \
        records
    # A path relative to a subfolder of the root (where a registration may have run) matches.
    assert dvc_support.commit_recording(repo, _md5(data), path="prepared/train.csv") == records
    assert dvc_support.commit_recording(repo, _md5(data), path="data/other.csv") == ""


def test_a_lock_in_a_subfolder_records_paths_relative_to_it(repo: Path) -> None:
    stage_dir = repo / "pipelines" / "churn"
    stage_dir.mkdir(parents=True)
    data = b"a\n1\n"
    (stage_dir / "out.csv").write_bytes(data)
    lock = {"schema": "2.0", "stages": {"make": {"cmd": "true", "outs": [_out("out.csv", data)]}}}
    (stage_dir / "dvc.lock").write_text(yaml.safe_dump(lock))
    head = _commit(repo, "sub pipeline")
    (ref,) = _capture(repo, ["pipelines/churn/out.csv"]).data
    assert (ref.source, ref.hash, ref.git_commit) == ("dvc", _md5(data), head)


def test_bytes_changed_after_dvc_recorded_them_are_not_passed_off_as_dvcs(repo: Path) -> None:
    _dvc_add(repo, "data.csv", b"1\n")
    _commit(repo, "data")
    (repo / "data.csv").write_bytes(b"edited by hand\n")  # no `dvc add` afterwards
    (ref,) = _capture(repo, ["data.csv"]).data
    assert ref.source == "sha256" and ref.git_commit == ""
    assert ref.hash == hashlib.sha256(b"edited by hand\n").hexdigest()


def test_no_commit_before_the_first_one_and_for_bad_hashes(tmp_path: Path) -> None:
    root = tmp_path / "fresh"
    root.mkdir()
    git.init_repository(root)
    (root / ".dvc").mkdir()
    md5 = _dvc_add(root, "data.csv", b"1\n")
    assert dvc_support.commit_recording(root, md5) == ""
    assert dvc_support.commit_recording(root, "--output=/tmp/x") == ""
    assert dvc_support.commit_recording(tmp_path, md5) == ""  # not a DVC project


def test_table_columns_only_reads_table_headers(tmp_path: Path) -> None:
    from modelyard.project.capture import table_columns

    (tmp_path / "a.tsv").write_text("x\ty\n1\t2\n")
    (tmp_path / "b.bin").write_bytes(b"\x00\xff")
    (tmp_path / "c.csv").write_bytes(b"\xff\xfe,\n")
    (tmp_path / "d.csv").write_text("x,,y\n")
    assert table_columns(tmp_path / "a.tsv") == ["x", "y"]
    assert table_columns(tmp_path / "b.bin") == []
    assert table_columns(tmp_path / "c.csv") == []
    assert table_columns(tmp_path / "d.csv") == []


# -- the dirty flag: code and parameters, not what the pipeline writes -------------------------
PIPELINE = {
    "stages": {
        "train": {"cmd": "python src/train.py", "deps": ["src/train.py"],
                  "params": ["train", {"extra.yaml": ["x"]}],
                  "outs": ["models/model.joblib", {"model.json": {"cache": False}}],
                  "metrics": [{"metrics/train.json": {"cache": False}}],
                  "plots": [{"plots/confusion.csv": {"cache": False, "x": "a"}}]},
        "split": {"foreach": ["a", "b"],
                  "do": {"cmd": "python split.py ${item}", "outs": ["splits/${item}.csv"]}},
    },
    "metrics": ["reports/summary.json"],
}


def _pipeline(root: Path) -> None:
    (root / "dvc.yaml").write_text(yaml.safe_dump(PIPELINE, sort_keys=False))
    for rel in ("src/train.py", "params.yaml", "metrics/train.json", "model.json", "dvc.lock",
                "plots/confusion.csv", "splits/a.csv", "reports/summary.json", "extra.yaml"):
        (root / rel).parent.mkdir(parents=True, exist_ok=True)
        (root / rel).write_text("v1\n")


def _touch(root: Path, *rels: str) -> None:
    for rel in rels:
        (root / rel).write_text((root / rel).read_text() + "v2\n")


def test_what_the_pipeline_writes_does_not_make_the_tree_dirty(repo: Path) -> None:
    _pipeline(repo)
    _commit(repo, "pipeline and its outputs")
    _touch(repo, "metrics/train.json", "model.json", "dvc.lock", "plots/confusion.csv",
           "splits/a.csv", "reports/summary.json")
    found = _capture(repo, [])
    assert (found.git_dirty, found.dirty_paths) == ("false", [])
    _touch(repo, "src/train.py", "params.yaml")
    found = _capture(repo, [])
    assert (found.git_dirty, found.dirty_paths) == ("true", ["params.yaml", "src/train.py"])
    # Staged, renamed: still not committed.
    _git(repo, "mv", "extra.yaml", "renamed.yaml")
    assert _capture(repo, []).dirty_paths == ["extra.yaml", "params.yaml", "renamed.yaml",
                                              "src/train.py"]


def test_a_dvc_project_in_a_subfolder_lists_paths_from_the_repository_top(
        tmp_path: Path) -> None:
    top = tmp_path / "mono"
    project = top / "churn"
    project.mkdir(parents=True)
    git.init_repository(top)
    (project / ".dvc").mkdir()
    (project / ".dvc" / "config").write_text("")
    _pipeline(project)
    (top / "metrics").mkdir()
    (top / "metrics" / "train.json").write_text("outside the DVC project\n")
    _commit(top, "start")
    _touch(project, "metrics/train.json", "src/train.py")
    _touch(top, "metrics/train.json")
    found = _capture(project / "src", [])
    assert found.dirty_paths == ["churn/src/train.py", "metrics/train.json"]


def test_many_dirty_paths_are_listed_up_to_a_limit(repo: Path) -> None:
    for index in range(capture.MAX_DIRTY_LISTED + 3):
        (repo / f"f{index:03d}.py").write_text("1\n")
    _commit(repo, "many")
    for index in range(capture.MAX_DIRTY_LISTED + 3):
        (repo / f"f{index:03d}.py").write_text("2\n")
    found = _capture(repo, [])
    assert found.git_dirty == "true"
    assert len(found.dirty_paths) == capture.MAX_DIRTY_LISTED + 1
    assert found.dirty_paths[-1] == "... and 3 more"


_PATH = st.text(alphabet=st.characters(blacklist_categories=("Cs",), blacklist_characters="\0"),
                min_size=1, max_size=30)


@given(st.lists(st.tuples(st.sampled_from([" M", "M ", "MM", " D", "A ", "T "]), _PATH),
                max_size=8),
       st.lists(st.tuples(st.sampled_from(["R ", "C ", "RM"]), _PATH, _PATH), max_size=4))
def test_porcelain_entries_give_every_path(plain: list[tuple[str, str]],
                                           moved: list[tuple[str, str, str]]) -> None:
    text = "".join(f"{xy} {path}\0" for xy, path in plain)
    text += "".join(f"{xy} {new}\0{old}\0" for xy, new, old in moved)
    expected = {path for _, path in plain} | {p for _, new, old in moved for p in (new, old)}
    assert git.porcelain_paths(text) == sorted(expected)


# -- what training took ----------------------------------------------------------------------
def test_the_process_reports_what_it_used() -> None:
    usage = capture.process_usage()
    assert usage.cpu_s is not None and usage.cpu_s > 0
    assert usage.peak_rss_mb is not None and usage.peak_rss_mb > 1
    assert usage.age_s is not None and usage.age_s > 0
    assert usage.host_cpus and usage.host_memory_mb and usage.host_memory_mb > 0


def test_a_dvc_stage_is_timed_by_its_process_and_a_saved_model_by_nobody(repo: Path) -> None:
    staged = capture.capture(cwd=repo, data=[], seed=None, user="a", started_at=None,
                             duration_s=None, parent_run=None, environ={"DVC_STAGE": "train"})
    assert staged.duration_from == "dvc_stage" and float(staged.duration_s) > 0
    assert float(staged.cpu_s) > 0 and float(staged.peak_rss_mb) > 0
    plain = capture.capture(cwd=repo, data=[], seed=None, user="a", started_at=None,
                            duration_s=None, parent_run=None, environ={})
    assert (plain.duration_s, plain.duration_from) == ("", "")
    assert plain.cpu_s  # this process trained it: its CPU time still counts
    elsewhere = capture.capture(cwd=repo, data=[], seed=None, user="a", started_at=None,
                                duration_s=None, parent_run=None,
                                environ={"DVC_STAGE": "train"}, trained_here=False)
    assert (elsewhere.duration_s, elsewhere.cpu_s, elsewhere.peak_rss_mb) == ("", "", "")
    assert elsewhere.host_cpus and elsewhere.host_memory_mb


def test_a_nested_pipeline_is_read_from_the_folders_above_the_changed_path(repo: Path) -> None:
    nested = repo / "stages" / "train"
    nested.mkdir(parents=True)
    (nested / "dvc.yaml").write_text(yaml.safe_dump({"stages": {"fit": {
        "cmd": "python fit.py", "outs": ["model.pkl"]}}}))
    (nested / "model.pkl").write_text("1\n")
    (nested / "fit.py").write_text("1\n")
    _commit(repo, "nested")
    _touch(repo, "stages/train/model.pkl", "stages/train/fit.py")
    assert _capture(repo, []).dirty_paths == ["stages/train/fit.py"]
    whole = dvc_support.pipeline_files(repo)  # reproduce reads every dvc.yaml
    assert whole.writes("stages/train/model.pkl") and not whole.writes("stages/train/fit.py")
