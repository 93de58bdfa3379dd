"""``python -m tests.fuzz TARGET [libFuzzer options] [CORPUS_DIR ...]``: fuzz one target of
:mod:`tests.fuzz.targets` with atheris. Without a corpus directory the corpus lives in
``.fuzz/corpus/TARGET`` (seeded with the issue's hostile lines); findings go to ``.fuzz/findings``.
``scripts/fuzz.sh`` runs every target for a time and prints the figures."""

from __future__ import annotations

import sys
from pathlib import Path

import atheris

from tests.fuzz.targets import TARGETS, seeds

ROOT = Path(".fuzz")


def main(argv: list[str]) -> None:
    if len(argv) < 2 or argv[1] not in TARGETS:
        raise SystemExit(f"usage: python -m tests.fuzz {{{','.join(TARGETS)}}} [libFuzzer options] [corpus]")
    target, options = argv[1], argv[2:]
    corpora = [option for option in options if not option.startswith("-")]
    if not corpora:
        corpus = ROOT / "corpus" / target
        corpus.mkdir(parents=True, exist_ok=True)
        corpora = [str(corpus)]
        options.append(str(corpus))
    for corpus in corpora:
        directory = Path(corpus)
        if directory.is_file():  # a single input to run again (a finding)
            continue
        directory.mkdir(parents=True, exist_ok=True)
        if not any(directory.iterdir()):
            for number, seed in enumerate(seeds(target)):
                (directory / f"seed-{number}").write_bytes(seed)
    if not any(option.startswith("-artifact_prefix=") for option in options):
        findings = ROOT / "findings"
        findings.mkdir(parents=True, exist_ok=True)
        options.insert(0, f"-artifact_prefix={findings}/{target}-")
    atheris.Setup([argv[0], *options], TARGETS[target])
    atheris.Fuzz()


if __name__ == "__main__":
    main(sys.argv)
