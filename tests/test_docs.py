"""Every command in README.md and docs/*.md runs as written.

Each ``python -m pipelines...`` line of a shell code block is parsed by the pipeline's own CLI
parser and its config and run options are validated (a renamed or removed flag, a bad choice or
an out-of-range value fails here), placeholders such as ``<run id>`` standing in for values a
user substitutes. The README's Python example is executed. Each pipeline's README example is run
for real: its training command with tiny settings appended, then its apply commands
(``--model-uri runs:/<run id>/model --predict ...``) as written, on small inputs made under the
names the README gives them.
"""

from __future__ import annotations

import re
import shlex
import shutil
import subprocess
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from pipelines.compare import build_compare_parser, load_task
from pipelines.core.cli import build_parser, split_namespace

ROOT = Path(__file__).resolve().parents[1]
PAGES = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]
FENCE = re.compile(r"^```(\w*)\n(.*?)^```", re.MULTILINE | re.DOTALL)
PLACEHOLDER = re.compile(r"<[^<>\n]+>")
SHELL = ("bash", "sh", "shell", "console", "")
SEPARATORS = ";&|\n"


def code_blocks(page: Path, languages: tuple[str, ...]) -> list[str]:
    return [body for lang, body in FENCE.findall(page.read_text()) if lang in languages]


def shell_commands(block: str) -> list[list[str]]:
    """The simple commands of a shell block: continuations joined, comments dropped, split at
    newlines, ``&&``, ``||``, ``;``, ``|`` and ``&``, leading ``VAR=value`` assignments removed."""
    lexer = shlex.shlex(
        PLACEHOLDER.sub("PLACEHOLDER", block.replace("\\\n", " ")),
        posix=True,
        punctuation_chars=SEPARATORS,
    )
    lexer.whitespace, lexer.whitespace_split, lexer.commenters = " \t\r", True, ""
    commands, command, in_comment = [], [], False
    for word in [*lexer, "\n"]:
        if not word.strip(SEPARATORS):
            while command and re.fullmatch(r"\w+=.*", command[0], re.DOTALL):
                command.pop(0)
            if command:
                commands.append(command)
            command, in_comment = [], in_comment and "\n" not in word
        elif word.startswith("#") or in_comment:
            in_comment = True
        else:
            command.append(word)
    return commands


def module_of(command: list[str]) -> str | None:
    """``X`` of a ``python -m X ...`` command, else None."""
    if len(command) > 2 and command[0].endswith("python") and command[1] == "-m":
        return command[2]
    return None


def pipeline_commands() -> list[tuple[str, list[str]]]:
    """``(where, argv)`` of every ``python -m pipelines.X ...`` command in the docs."""
    found = []
    for page in PAGES:
        for block in code_blocks(page, SHELL):
            for command in shell_commands(block):
                if (module_of(command) or "").startswith("pipelines."):
                    found.append((page.name, command[2:]))
    return found


COMMANDS = pipeline_commands()


def test_docs_have_a_train_and_apply_example_per_pipeline():
    modules = {argv[0] for _, argv in COMMANDS}
    for task in ("anomaly", "forecast", "speech", "captioning", "translate", "sentiment"):
        assert f"pipelines.{task}" in modules
    assert "pipelines.textgen" in modules and "pipelines.compare" in modules


def test_readme_keeps_ci_command():
    """.ci/run runs the README's test command; the README must still say it."""
    ci = (ROOT / ".ci" / "run").read_text()
    readme = (ROOT / "README.md").read_text()
    for line in (".venv/bin/python -m pytest -q", "./setup.sh"):
        assert line in ci and line in readme
    assert len(readme.splitlines()) <= 250


@pytest.mark.parametrize(
    ("argv"), [argv for _, argv in COMMANDS], ids=[f"{w}:{' '.join(a)}" for w, a in COMMANDS]
)
def test_documented_command_parses_and_validates(argv):
    module, args = argv[0], argv[1:]
    if module == "pipelines.compare":
        task = load_task(args[args.index("--task") + 1])
        parser = build_compare_parser(task.config_class)
    else:
        task = load_task(module.split(".")[1])  # pipelines.speech.voices takes speech's flags
        parser = build_parser(module, "", task.config_class)
    try:
        namespace = parser.parse_args(args)
    except SystemExit:
        pytest.fail(f"python -m {' '.join(argv)}: the parser refused it (see stderr)")
    cfg, opts = split_namespace(namespace, task.config_class)
    cfg.validate()
    opts.validate()


def test_readme_python_example_runs():
    for block in code_blocks(ROOT / "README.md", ("python",)):
        exec(compile(block, "README.md", "exec"), {})


def test_docs_python_blocks_compile():
    for page in PAGES:
        for block in code_blocks(page, ("python",)):
            compile(block, page.name, "exec")


def test_relative_links_and_figures_exist():
    link = re.compile(r"\]\(([^)#\s]+)(?:#[^)]*)?\)")
    for page in PAGES:
        for target in link.findall(page.read_text()):
            if "://" not in target:
                assert (page.parent / target).exists(), f"{page.name} links to missing {target}"


# ---- the README's train-then-apply examples, run for real ----------------------------------
@pytest.fixture(scope="module")
def store(tmp_path_factory) -> str:
    """One MLflow store for the module (creating a SQLite store costs seconds); each task logs
    to its own experiment in it."""
    return f"sqlite:///{tmp_path_factory.mktemp('store') / 'mlflow.db'}"


def readme_example(module: str) -> list[list[str]]:
    """The commands of the README's shell block that applies a model of ``module``, in order."""
    for block in code_blocks(ROOT / "README.md", SHELL):
        commands = shell_commands(block)
        if any(module_of(c) == module and "--model-uri" in c for c in commands):
            return commands
    raise AssertionError(f"README.md shows no python -m {module} --model-uri ... block")


def run_helper(command: list[str]) -> None:
    """A command beside the example's (``printf '...' > texts.txt``), its ``>`` redirect kept."""
    words, target = (command[:-2], command[-1]) if command[-2:-1] == [">"] else (command, None)
    printed = subprocess.run(words, capture_output=True, text=True, check=True).stdout
    if target:
        Path(target).write_text(printed)


def value(argv: list[str], flag: str) -> str:
    return argv[argv.index(flag) + 1]


def written(argv: list[str], table: str) -> pd.DataFrame:
    """The table an apply command wrote under its ``--output``."""
    return pd.read_csv(Path(value(argv, "--output")) / f"{table}.csv", keep_default_na=False)


# Inputs a user would supply, made under the names the README gives them (in the working
# directory, where the commands run).
def series_csv(rows: int, freq: str, period: int, level: float = 10.0) -> Callable[[Path], None]:
    """A noisy cycle of ``period`` rows around ``level``, with timestamps."""

    def make(path: Path) -> None:
        cycle = np.sin(2 * np.pi * np.arange(rows) / period)
        noise = 0.05 * np.random.default_rng(0).normal(size=rows)
        stamps = pd.date_range("2024-01-01", periods=rows, freq=freq)
        values = level * (1 + 0.1 * cycle + 0.01 * noise)
        pd.DataFrame({"timestamp": stamps, "value": values}).to_csv(path, index=False)

    return make


def recordings(folder: Path) -> None:
    """Three FSDD recordings shipped with the tests, one speaker per subfolder."""
    from tests.pipelines import fsdd_sample

    for name in ("0_george_7", "1_george_7", "2_jackson_7"):
        (folder / name.split("_")[1]).mkdir(parents=True, exist_ok=True)
        shutil.copy(fsdd_sample.FOLDER / f"{name}.wav", folder / name.split("_")[1])


def photos(folder: Path) -> None:
    """A grey PNG of the model's size and an RGB JPEG of another size."""
    from PIL import Image

    folder.mkdir()
    pixels = np.zeros((64, 64), np.uint8)
    pixels[20:44, 24:40] = 255
    Image.fromarray(pixels).save(folder / "bar.png")
    rgb = np.random.default_rng(0).integers(0, 255, (80, 80, 3), np.uint8)
    Image.fromarray(rgb).save(folder / "noise.jpg")


def reviews(path: Path) -> None:
    """120 short reviews whose label follows from one word (tests/pipelines/test_sentiment)."""
    good, bad = ["great", "wonderful", "moving", "superb"], ["awful", "boring", "dull", "weak"]
    rows = [
        (f"the film was {(good if i % 2 == 0 else bad)[i % 4]} and the cast {i % 7}",
         "pos" if i % 2 == 0 else "neg")
        for i in range(120)
    ]  # fmt: skip
    pd.DataFrame(rows, columns=["review", "mood"]).to_csv(path, index=False)


def verse(path: Path) -> None:
    path.write_text("To be, or not to be, that is the question.\n" * 40)


# What each apply command must answer: (its argv as run, the lines it printed).
def anomaly_applied(argv: list[str], lines: list[str]) -> None:
    table = written(argv, "anomalies")
    assert len(table) == len(pd.read_csv(value(argv, "--predict")))  # a row per row
    alarms = int(table["is_anomaly"].sum())
    assert len(lines) == alarms + 1  # one line per alarm, then the count
    assert re.fullmatch(rf"{alarms} alarm\(s\) in \d+ scored rows", lines[-1])


def forecast_applied(argv: list[str], lines: list[str]) -> None:
    table = written(argv, "forecast")
    history = pd.read_csv(value(argv, "--predict"), parse_dates=["timestamp"])
    assert len(lines) == len(table) > 0 and np.isfinite(table["forecast"].astype(float)).all()
    assert pd.to_datetime(table["timestamp"]).min() > history["timestamp"].max()
    assert (table["lower"] <= table["forecast"]).all()
    assert (table["forecast"] <= table["upper"]).all()


def speech_applied(argv: list[str], lines: list[str]) -> None:
    folder = Path(value(argv, "--predict"))
    wavs = sorted(str(p.relative_to(folder)) for p in folder.rglob("*.wav"))
    assert written(argv, "predictions")["file"].tolist() == wavs
    assert [line.split("\t")[0] for line in lines] == wavs


def captioning_applied(argv: list[str], lines: list[str]) -> None:
    images = sorted(p.name for p in Path(value(argv, "--predict")).iterdir())
    table = written(argv, "predictions")
    assert table["file"].tolist() == images
    assert lines == [f"{f}: {c}".rstrip() for f, c in zip(table["file"], table["caption"])]


def translate_applied(argv: list[str], lines: list[str]) -> None:
    assert len(lines) == 1 and lines[0].strip()  # one sentence in, one translation out


def sentiment_applied(argv: list[str], lines: list[str]) -> None:
    source = value(argv, "--predict")
    if not Path(source).is_file():  # one text: label, probability and each word's effect
        assert lines[0].startswith("label: ") and lines[1].startswith("probability (")
        assert [line.split()[0] for line in lines[3:]] == source.split()
        return
    texts = Path(source).read_text().splitlines()
    assert written(argv, "predictions")["text"].tolist() == texts
    assert [line.split("\t")[2] for line in lines] == texts


def textgen_applied(argv: list[str], lines: list[str]) -> None:
    prompt, printed = value(argv, "--predict"), "\n".join(lines)
    assert printed.startswith(prompt) and len(printed) > len(prompt)


@dataclass
class Example:
    """How a README example runs small: flags appended to its training command (the fastest
    ones of the task's own tests), files its commands name and how to check each apply."""

    tiny: list[str]
    applied: Callable[[list[str], list[str]], None]
    files: dict[str, Callable[[Path], None]] = field(default_factory=dict)
    tfds: bool = False  # data sets are prepared in a temporary TFDS directory


EXAMPLES = {
    "anomaly": Example(  # default data (MIT-BIH); the detector warms up on 750 rows
        ["--epochs", "1", "--units", "8", "--window", "32", "--batch-size", "32",
         "--stride", "8"],
        anomaly_applied,
        {"new_series.csv": series_csv(900, "min", 40)},
    ),
    "forecast": Example(  # default data (taylor: half-hourly, weekly season)
        ["--epochs", "1", "--units", "8", "--stride", "16", "--backtest", "10"],
        forecast_applied,
        {"history.csv": series_csv(3 * 336, "30min", 48, level=30000.0)},  # demand in MW
    ),
    "speech": Example(  # default data (FSDD)
        ["--epochs", "1", "--units", "8", "--layers", "1", "--utterances", "48",
         "--conv-filters", "8", "--batch-size", "32"],
        speech_applied,
        {"recordings": recordings},
    ),
    "captioning": Example(  # default data (MNIST scenes), few of them
        ["--train-scenes", "96", "--validation-scenes", "32", "--test-scenes", "32",
         "--epochs", "1", "--units", "16", "--embedding-dim", "8", "--filters", "4",
         "--batch-size", "32"],
        captioning_applied,
        {"photos": photos},
        tfds=True,
    ),
    "translate": Example(  # default data (the system's gettext catalogs), 400 pairs; after
        # one epoch on 200 the decoder ends every sentence at once (an empty translation)
        ["--epochs", "3", "--units", "8", "--embedding-dim", "8", "--merges", "60",
         "--batch-size", "16", "--learning-rate", "0.01", "--max-pairs", "400"],
        translate_applied,
        tfds=True,
    ),
    "sentiment": Example(  # Rotten Tomatoes takes ~40 s to prepare: a small CSV instead
        ["--data", "reviews.csv", "--text-column", "review", "--label-column", "mood",
         "--epochs", "1", "--units", "8", "--attention-units", "8", "--glove-words", "500"],
        sentiment_applied,
        {"reviews.csv": reviews},
    ),
    "textgen": Example(  # a short text instead of Hamlet
        ["--data", "verse.txt", "--epochs", "1", "--units", "8", "--layers", "1",
         "--seq-length", "20", "--embedding-dim", "4", "--length", "5",
         "--sample-temperatures", "0.5", "--ngram-order", "2"],
        textgen_applied,
        {"verse.txt": verse},
    ),
}  # fmt: skip


@pytest.mark.parametrize("task", list(EXAMPLES))
def test_readme_example_trains_then_applies_as_written(
    task, store, workdir, tmp_path_factory, monkeypatch, capsys
):
    """The README's block of a task, run for real in a fresh working directory: its training
    command with tiny settings appended, then each apply command exactly as written but for
    ``<run id>`` (the run the training printed); the inputs and ``--output`` folders it names
    are relative paths, so they are made and written in that directory, and helper commands
    such as ``printf ... > texts.txt`` run there too. The block's other training commands (user
    data such as NAB, a folder of series) are only parsed, above. One MLflow store serves the
    module, an experiment per task."""
    from pipelines.core import main

    example, module = EXAMPLES[task], f"pipelines.{task}"
    if example.tfds:
        monkeypatch.setenv("TFDS_DATA_DIR", str(tmp_path_factory.mktemp("tfds")))
    for name, make in example.files.items():
        make(workdir / name)
    train, *commands = readme_example(module)
    assert module_of(train) == module and "--model-uri" not in train
    argv = [*train[3:], *example.tiny, "--tracking-uri", store]
    assert main(load_task(task), argv) == 0, capsys.readouterr().err[-3000:]
    run_id = re.search(r"MLflow run (\w+)", capsys.readouterr().out)[1]
    for command in commands:
        if module_of(command) is None:
            run_helper(command)
        elif "--model-uri" in command:
            argv = [word.replace("PLACEHOLDER", run_id) for word in command[3:]]
            code = main(load_task(task), [*argv, "--tracking-uri", store])
            printed = capsys.readouterr()
            assert code == 0, f"python -m {module} {shlex.join(argv)}:\n{printed.err[-3000:]}"
            example.applied(argv, printed.out.splitlines())
