"""Every command in README.md and docs/*.md runs as written.

Each ``python -m pipelines...`` line of a shell code block is parsed by the pipeline's own CLI
parser and its config and run options are validated (a renamed or removed flag, a bad choice or
an out-of-range value fails here), placeholders such as ``<run id>`` standing in for values a
user substitutes. The README's Python example is executed. Training itself is tested end to end
by each pipeline's own tests, so nothing here trains.
"""

from __future__ import annotations

import re
import shlex
from pathlib import Path

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


def pipeline_commands() -> list[tuple[str, list[str]]]:
    """``(where, argv)`` of every ``python -m pipelines.X ...`` command in the docs."""
    found = []
    for page in PAGES:
        for block in code_blocks(page, SHELL):
            for command in shell_commands(block):
                is_python_m = (
                    len(command) > 2 and command[0].endswith("python") and command[1] == "-m"
                )
                if is_python_m and command[2].startswith("pipelines."):
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


def test_readme_textgen_example_trains_then_applies_as_written(workdir, tracking_uri, capsys):
    """The README's train-then-apply pair, run for real: the training command with tiny
    settings appended (a short text, one epoch, a few units), then the apply command exactly as
    written with the run id it printed."""
    from pipelines.core import main
    from pipelines.textgen.task import TextgenTask

    train, apply = [argv[1:] for page, argv in COMMANDS
                    if page == "README.md" and argv[0] == "pipelines.textgen"]  # fmt: skip
    text = workdir / "verse.txt"
    text.write_text("To be, or not to be, that is the question.\n" * 40)
    tiny = ["--data", str(text), "--epochs", "1", "--units", "8", "--layers", "1",
            "--seq-length", "20", "--embedding-dim", "4", "--length", "5",
            "--sample-temperatures", "0.5", "--ngram-order", "2"]  # fmt: skip
    assert main(TextgenTask(), [*train, *tiny, "--tracking-uri", tracking_uri]) == 0
    run_id = re.search(r"MLflow run (\w+)", capsys.readouterr().out)[1]
    applied = [word.replace("PLACEHOLDER", run_id) for word in apply]
    assert main(TextgenTask(), [*applied, "--tracking-uri", tracking_uri]) == 0
    printed = capsys.readouterr().out
    assert printed.startswith("To be") and len(printed.rstrip("\n")) > len("To be")
