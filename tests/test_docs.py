"""The guide tells the truth: every training command in README.md and docs/ composes as written, every config
group is in README's table (appended groups with their `+`), one published figure, the console script, and no
word of the order in which work happened anywhere in the repository."""
from __future__ import annotations

import re
import shlex
import subprocess
from pathlib import Path

import pytest
from hydra import compose, initialize_config_dir

from fer_sweep.app import CONFIG_DIR
from tests.conftest import ROOT

GUIDES = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]
COMMAND = re.compile(r"(?:python -m fer_sweep|fer-sweep)(?=\s)([^`|\n]*)")


def documented_commands():
    """(file, overrides) for each one-line `python -m fer_sweep ...` training command in the guides; a line that
    shows what fails (it says so), goes on over several lines or elides a part (...) is left out."""
    found = []
    for path in GUIDES:
        for line in path.read_text().splitlines():
            if "fails" in line or line.rstrip().endswith("\\"):
                continue
            for match in COMMAND.finditer(line):
                if "..." in match.group(1):  # an elided command, not one to type as it is
                    continue
                words = shlex.split(match.group(1).split("#")[0])
                if not words or any(w in ("--help", "--cfg", "--config-dir", "-c") for w in words):
                    continue
                overrides = [w for w in words if w != "--multirun" and "=" in w and not w.startswith("hydra")]
                # a sweep's first value: `model=cnn,resnet9` composes as `model=cnn`
                overrides = [o if "[" in o or "(" in o else o.split(",")[0] for o in overrides]
                found.append(pytest.param(overrides, id=f"{path.name}: {' '.join(words)[:60]}"))
    return found


@pytest.mark.parametrize("overrides", documented_commands())
def test_every_documented_command_composes(overrides):
    with initialize_config_dir(config_dir=str(CONFIG_DIR), version_base="1.3"):
        compose("config", overrides=overrides)


def test_readme_lists_every_config_group_and_appended_groups_with_their_plus():
    readme = (ROOT / "README.md").read_text()
    section = readme[readme.index("## Configuration"):]
    section = section[:section.index("\n## ", 1)]
    groups = sorted(p.name for p in CONFIG_DIR.iterdir() if p.is_dir() and p.name != "hydra")
    for group in groups:
        assert f"`{group}`" in section or f"`+{group}" in section, f"README's Configuration table lacks {group}"
    for appended in ("lever", "ablation"):  # not in the defaults list: `+lever=width_12`, not `lever=width_12`
        assert f"+{appended}=" in section


def test_one_published_figure_for_the_best_single_network():
    texts = [p.read_text() for p in [*GUIDES, ROOT / "multirun" / "reference" / "README.md"]]
    assert any("73.28%" in t for t in texts)
    for text in texts:
        assert not re.search(r"\b73\.[35]\s?%", text)


def test_readme_names_the_console_script_and_what_a_clone_without_shared_data_gets():
    readme = (ROOT / "README.md").read_text()
    assert "fer-sweep" in readme
    data = (ROOT / "docs" / "data.md").read_text()
    assert "../shared" in data and "skip" in data


def test_no_word_of_the_order_of_work_in_the_repository():
    """Machines by kind, times by date, recipes by version; API names (onnxruntime's InferenceSession,
    TensorBoard's hparams session, subprocess's start_new_session) are not such words."""
    if not (ROOT / ".git").exists():
        pytest.skip("not a git checkout")
    grep = subprocess.run(["git", "grep", "-n", "-i", "-w", "-E", "sessions?"], cwd=ROOT, capture_output=True,
                          text=True)
    lines = [line for line in grep.stdout.splitlines() if not line.startswith("tests/test_docs.py:")]
    api = re.compile(r"InferenceSession|session_start|session_end|start_new_session|hparams session|"
                     r"ort_session|Session\(", re.I)
    assert [line for line in lines if not api.search(line)] == []
