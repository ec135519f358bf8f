"""Stage 1: produce validated train/test CSVs under data/prepared/.

Input is ``data/raw/customers.csv`` when that file exists (drop in your own data, ideally
tracked with ``dvc add``); otherwise synthetic customer-churn data is generated from
``prepare.seed`` and ``prepare.n_rows``.

Synthetic rows are generated in fixed-size blocks, each from its own seed, so row ``i`` depends
only on ``(seed, i)``: raising ``n_rows`` appends rows and leaves the earlier ones untouched.
The train/test assignment of a row is drawn the same way, so the old ``train.csv`` is a prefix
of the new one ("new training data" is literally appended data). Identical output across NumPy
versions is not guaranteed, only across runs with the same NumPy.

Invalid data (missing or unknown columns, wrong types, missing values, values out of range)
stops the stage with one line on stderr and exit code 1.
"""

from __future__ import annotations

import sys
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import yaml

PARAMS_FILE = Path("params.yaml")
RAW_FILE = Path("data/raw/customers.csv")
OUT_DIR = Path("data/prepared")
TARGET = "churn"
BLOCK_ROWS = 1024

CONTRACTS = ("month-to-month", "one-year", "two-year")
INTERNET = ("dsl", "fiber-optic", "none")
PAYMENTS = ("electronic-check", "mailed-check", "bank-transfer", "credit-card")
TRUE_WORDS = frozenset({"1", "yes", "y", "true", "t"})
FALSE_WORDS = frozenset({"0", "no", "n", "false", "f"})


class DataError(Exception):
    """Invalid parameters or data: reported as one line, exit code 1."""


@dataclass(frozen=True)
class Column:
    """What a column must hold. ``kind`` is one of id, int, float, flag, category."""

    kind: str
    low: float | None = None
    high: float | None = None
    categories: tuple[str, ...] = ()
    required: bool = True


SCHEMA: dict[str, Column] = {
    "customer_id": Column("id", required=False),
    "age": Column("int", 18, 110),
    "tenure_months": Column("int", 0, 240),
    "contract": Column("category", categories=CONTRACTS),
    "internet_service": Column("category", categories=INTERNET),
    "payment_method": Column("category", categories=PAYMENTS),
    "paperless_billing": Column("flag"),
    "monthly_charges": Column("float", 0, 1_000),
    "total_charges": Column("float", 0, 250_000),
    "support_calls": Column("int", 0, 100),
    TARGET: Column("flag"),
}


# Parameters -------------------------------------------------------------------------------------
@dataclass(frozen=True)
class PrepareParams:
    seed: int
    n_rows: int
    test_size: float
    drop_columns: tuple[str, ...]


def load_params(path: Path = PARAMS_FILE) -> PrepareParams:
    """Read and check the ``prepare`` section of params.yaml."""
    try:
        document = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
    except (OSError, yaml.YAMLError) as exc:
        raise DataError(f"{path}: cannot read parameters: {exc}".replace("\n", " ")) from None
    section = document.get("prepare") if isinstance(document, dict) else None
    if not isinstance(section, dict):
        raise DataError(f"{path}: missing the 'prepare' section")
    seed = section.get("seed", 42)
    n_rows = section.get("n_rows", 5000)
    test_size = section.get("test_size", 0.2)
    drop = section.get("drop_columns") or []
    if not _is_int(seed) or seed < 0:
        raise DataError(f"{path}: prepare.seed must be a non-negative integer, got {seed!r}")
    if not _is_int(n_rows) or n_rows < 10:
        raise DataError(f"{path}: prepare.n_rows must be an integer >= 10, got {n_rows!r}")
    if isinstance(test_size, bool) or not isinstance(test_size, (int, float)):
        raise DataError(f"{path}: prepare.test_size must be a number, got {test_size!r}")
    if not 0 < test_size < 1:
        raise DataError(f"{path}: prepare.test_size must be between 0 and 1, got {test_size}")
    if not isinstance(drop, list) or not all(isinstance(name, str) for name in drop):
        raise DataError(f"{path}: prepare.drop_columns must be a list of column names")
    return PrepareParams(int(seed), int(n_rows), float(test_size), tuple(drop))


def _is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


# Synthetic data ---------------------------------------------------------------------------------
def _generate_block(seed: int, block: int) -> pd.DataFrame:
    """Rows ``block * BLOCK_ROWS`` .. ``(block + 1) * BLOCK_ROWS - 1``, from their own seed."""
    rng = np.random.default_rng([seed, 0, block])
    n = BLOCK_ROWS
    contract = rng.choice(np.array(CONTRACTS), size=n, p=[0.55, 0.24, 0.21])
    internet = rng.choice(np.array(INTERNET), size=n, p=[0.34, 0.44, 0.22])
    payment = rng.choice(np.array(PAYMENTS), size=n, p=[0.34, 0.23, 0.22, 0.21])
    month_to_month = contract == "month-to-month"
    two_year = contract == "two-year"
    fiber = internet == "fiber-optic"
    no_internet = internet == "none"

    age = np.clip(np.rint(rng.normal(46.0, 16.0, n)), 18, 90).astype(np.int64)
    # Customers on longer contracts have longer relationships.
    shape = np.select([month_to_month, two_year], [1.1, 4.0], default=2.5)
    tenure = np.clip(np.rint(rng.gamma(shape, 14.0)), 0, 72).astype(np.int64)
    price_mean = np.select([fiber, no_internet], [90.0, 22.0], default=56.0)
    price_sd = np.select([fiber, no_internet], [14.0, 3.0], default=11.0)
    monthly = np.clip(rng.normal(price_mean, price_sd), 18.25, 120.0).round(2)
    total = (monthly * tenure * rng.uniform(0.96, 1.04, n)).round(2)
    paperless = (rng.random(n) < 0.59).astype(np.int64)
    calls_rate = 0.9 + 0.8 * fiber + 0.6 * month_to_month
    support_calls = np.clip(rng.poisson(calls_rate), 0, 15).astype(np.int64)

    logit = (
        -2.1
        + 1.3 * month_to_month
        - 1.4 * two_year
        - 0.045 * tenure
        + 0.02 * (monthly - 65.0)
        + 0.4 * support_calls
        + 0.6 * (payment == "electronic-check")
        + 0.5 * fiber
        + 0.2 * paperless
        - 0.008 * (age - 46)
    )
    churn = (rng.random(n) < 1.0 / (1.0 + np.exp(-logit))).astype(np.int64)

    first = block * BLOCK_ROWS
    return pd.DataFrame(
        {
            "customer_id": [f"C{first + i + 1:07d}" for i in range(n)],
            "age": age,
            "tenure_months": tenure,
            "contract": contract.astype(object),
            "internet_service": internet.astype(object),
            "payment_method": payment.astype(object),
            "paperless_billing": paperless,
            "monthly_charges": monthly,
            "total_charges": total,
            "support_calls": support_calls,
            TARGET: churn,
        }
    )


def generate(seed: int, n_rows: int) -> pd.DataFrame:
    """The first ``n_rows`` synthetic customers for ``seed`` (a prefix of any longer run)."""
    blocks = [_generate_block(seed, b) for b in range(-(-n_rows // BLOCK_ROWS))]
    return pd.concat(blocks, ignore_index=True).iloc[:n_rows].reset_index(drop=True)


def holdout_mask(seed: int, n_rows: int, test_size: float) -> np.ndarray:
    """Per-row test-set assignment; row ``i`` depends only on ``(seed, i, test_size)``."""
    blocks = [
        np.random.default_rng([seed, 1, b]).random(BLOCK_ROWS)
        for b in range(-(-n_rows // BLOCK_ROWS))
    ]
    return np.concatenate(blocks)[:n_rows] < test_size


# Validation -------------------------------------------------------------------------------------
def read_raw(path: Path) -> pd.DataFrame:
    try:
        return pd.read_csv(path, dtype={"customer_id": str})
    except (OSError, ValueError, pd.errors.ParserError) as exc:
        detail = str(exc).strip().replace("\n", " ")
        raise DataError(f"{path}: not a readable CSV file: {detail}") from None


def apply_drop_columns(frame: pd.DataFrame, drop: Sequence[str], source: str) -> pd.DataFrame:
    for name in drop:
        if name == TARGET:
            raise DataError(f"prepare.drop_columns: cannot drop the target column '{TARGET}'")
        if name not in SCHEMA and name not in frame.columns:
            raise DataError(f"prepare.drop_columns: {source} has no column '{name}'")
    return frame.drop(columns=[name for name in drop if name in frame.columns])


def validate(frame: pd.DataFrame, source: str, dropped: Sequence[str] = ()) -> pd.DataFrame:
    """Check columns, types, missing values and ranges; return a normalised copy.

    Raises DataError naming the first problem found.
    """
    if frame.empty:
        raise DataError(f"{source}: no rows")
    expected = {name: spec for name, spec in SCHEMA.items() if name not in dropped}
    missing = [n for n, spec in expected.items() if spec.required and n not in frame.columns]
    if missing:
        raise DataError(f"{source}: missing required column(s): {', '.join(missing)}")
    unknown = [str(name) for name in frame.columns if name not in expected]
    if unknown:
        raise DataError(
            f"{source}: unexpected column(s): {', '.join(unknown)} "
            "(add them to prepare.drop_columns to ignore them)"
        )
    out = frame.copy()
    for name in frame.columns:
        out[name] = _check_column(frame[name], str(name), expected[name], source)
    if "customer_id" in out.columns and out["customer_id"].duplicated().any():
        first = out["customer_id"][out["customer_id"].duplicated()].iloc[0]
        raise DataError(f"{source}: column 'customer_id' has duplicate values, e.g. '{first}'")
    ordered = [name for name in SCHEMA if name in out.columns]
    return out[ordered]


def _row(mask: pd.Series) -> str:
    """'data row N' (1-based) of the first row where mask holds."""
    position = int(np.flatnonzero(np.asarray(mask))[0])
    return f"data row {position + 1}"


def _check_column(values: pd.Series, name: str, spec: Column, source: str) -> pd.Series:
    where = f"{source}: column '{name}'"
    missing = values.isna()
    if missing.any():
        count = int(missing.sum())
        raise DataError(f"{where} has {count} missing value(s), first at {_row(missing)}")
    if spec.kind == "id":
        return values.astype(str)
    if spec.kind == "category":
        normalised = (
            values.astype(str).str.strip().str.lower().str.replace(r"[\s_]+", "-", regex=True)
        )
        bad = ~normalised.isin(spec.categories)
        if bad.any():
            example = values[bad].iloc[0]
            raise DataError(
                f"{where} has unknown value '{example}' at {_row(bad)} "
                f"(allowed: {', '.join(spec.categories)})"
            )
        return normalised.astype(object)
    if spec.kind == "flag":
        return _to_flag(values, where)
    numbers = pd.to_numeric(values, errors="coerce").astype(float)
    text = numbers.isna()  # missing values were refused above: these are not numbers
    if text.any():
        raise DataError(f"{where} must be numeric, found '{values[text].iloc[0]}' at {_row(text)}")
    if spec.kind == "int":
        fractional = numbers != np.round(numbers)
        if fractional.any():
            raise DataError(
                f"{where} must hold whole numbers, found {numbers[fractional].iloc[0]} at "
                f"{_row(fractional)}"
            )
    outside = pd.Series(False, index=values.index)
    if spec.low is not None:
        outside |= numbers < spec.low
    if spec.high is not None:
        outside |= numbers > spec.high
    if outside.any():
        bounds = f"[{_bound(spec.low, '-inf')}, {_bound(spec.high, 'inf')}]"
        raise DataError(
            f"{where} has {int(outside.sum())} value(s) outside {bounds}, "
            f"e.g. {values[outside].iloc[0]} at {_row(outside)}"
        )
    return numbers.astype(np.int64) if spec.kind == "int" else numbers


def _bound(value: float | None, unbounded: str) -> str:
    return unbounded if value is None else f"{value:g}"


def _to_flag(values: pd.Series, where: str) -> pd.Series:
    """0/1 from numbers 0/1, booleans or yes/no/true/false words."""
    if pd.api.types.is_bool_dtype(values):
        return values.astype(np.int64)
    words = values.astype(str).str.strip().str.lower().str.removesuffix(".0")
    is_true = words.isin(TRUE_WORDS)
    bad = ~(is_true | words.isin(FALSE_WORDS))
    if bad.any():
        raise DataError(
            f"{where} must be 0/1 (or yes/no), found '{values[bad].iloc[0]}' at {_row(bad)}"
        )
    return is_true.astype(np.int64)


# Stage ------------------------------------------------------------------------------------------
def prepare(
    params: PrepareParams, raw_file: Path = RAW_FILE
) -> tuple[pd.DataFrame, pd.DataFrame, str]:
    """Load or generate, validate and split: ``(train, test, source description)``."""
    if raw_file.exists():
        source = str(raw_file)
        frame = read_raw(raw_file)
    else:
        source = "generated data"
        frame = generate(params.seed, params.n_rows)
    frame = apply_drop_columns(frame, params.drop_columns, source)
    frame = validate(frame, source, params.drop_columns)
    is_test = holdout_mask(params.seed, len(frame), params.test_size)
    train, test = frame[~is_test], frame[is_test]
    if train.empty or test.empty:
        raise DataError(
            f"{source}: {len(frame)} rows with test_size={params.test_size} leave the "
            f"{'train' if train.empty else 'test'} set empty"
        )
    return train, test, source


def write(train: pd.DataFrame, test: pd.DataFrame, out_dir: Path = OUT_DIR) -> None:
    out_dir.mkdir(parents=True, exist_ok=True)
    train.to_csv(out_dir / "train.csv", index=False)
    test.to_csv(out_dir / "test.csv", index=False)


def main() -> int:
    try:
        params = load_params()
        train, test, source = prepare(params)
        write(train, test)
    except DataError as exc:
        print(f"prepare: error: {exc}", file=sys.stderr)
        return 1
    rate = float(pd.concat([train, test])[TARGET].mean())
    print(
        f"prepare: {len(train)} train + {len(test)} test rows from {source} (churn rate {rate:.1%})"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
