"""The command line of ``run_grid.py`` (DESIGN.md, "Contracts")."""

from __future__ import annotations

import argparse
import errno
import logging
import signal
from pathlib import Path

from orchestrator.config import ExperimentConfig, load_config
from orchestrator.interrupt import Interrupted, stop_signals
from orchestrator.paths import DEFAULT_CONFIG, resolve_config
from trainables.console import show_messages
from trainables.data.corpora import CORPUS_KINDS
from trainables.errors import ProjectError

log = logging.getLogger(__name__)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="run_grid.py",
        description="Train transferable black-box attacks on SER models (Ren et al., 2020) "
                    "over a Ray Tune grid and write Table 1.")
    parser.add_argument("--config", default=str(DEFAULT_CONFIG),
                        help="experiment YAML (default: configs/smoke.yaml)")
    parser.add_argument("--results", default="results", help="results folder (default: results/)")
    parser.add_argument("--corpus", choices=CORPUS_KINDS, help="override the config's corpus")
    parser.add_argument("--data-root", help="the corpus folder (or manifest CSV)")
    parser.add_argument("--set", dest="overrides", action="append", default=[],
                        metavar="KEY=VALUE", help="override any config key, e.g. grid.seeds=[0,1]")
    parser.add_argument("--resume", action="store_true",
                        help="finish an interrupted run in --results without redoing finished trials")
    parser.add_argument("--address", help="join a running Ray cluster (e.g. auto or HOST:PORT)")
    parser.add_argument("--report-only", action="store_true",
                        help="rebuild tables and figures from --results; train nothing")
    parser.add_argument("--debug", action="store_true", help="show tracebacks")
    return parser


def resolve(args: argparse.Namespace) -> ExperimentConfig:
    """The config file, then ``--corpus``/``--data-root``, then ``--set`` overrides."""
    overrides = []
    if args.corpus:
        overrides.append(f"data.corpus={args.corpus}")
    if args.data_root:
        overrides.append(f"data.root={args.data_root}")
        if not args.corpus and "data.corpus=" not in " ".join(args.overrides):
            # A folder given without --corpus under the synthetic default means DEMoS names.
            config_corpus = load_config(resolve_config(args.config)).data.corpus
            if config_corpus == "synthetic":
                overrides.append("data.corpus=demos")
    return load_config(resolve_config(args.config), overrides + args.overrides)


def _resume_hint(args: argparse.Namespace) -> str:
    """The command that finishes the interrupted run, or what to do when none was saved yet."""
    from orchestrator.run_folder import CONFIG_FILE

    if args.report_only:
        return "nothing was changed; run the same command again"
    if not (Path(args.results) / CONFIG_FILE).exists():
        return "no run was saved yet; run the same command again to start it"
    command = f"python run_grid.py --results {args.results} --resume"
    return f"finish it with: {command}" + (f" --address {args.address}" if args.address else "")


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    show_messages()
    try:
        with stop_signals():
            if args.report_only:
                from orchestrator.report_only import report_only
                return report_only(Path(args.results))
            config = resolve(args)
            # Imported once the config is known good: it pulls in torch and Ray (seconds), which
            # a mistyped key should not wait for.
            from orchestrator.run import run
            return run(config, results=Path(args.results), resume=args.resume,
                       address=args.address)
    except ProjectError as error:
        if args.debug:
            raise
        log.error(f"error: {error}")
        return 2
    except OSError as error:  # an unwritable folder, a full disk
        if args.debug:
            raise
        where = f"{error.filename}: " if error.filename else ""
        if error.errno in (errno.ENOSPC, errno.EDQUOT):
            log.error(f"error: {where}no space left on its device (or quota): free some space, "
                      f"then {_resume_hint(args)}")
            return 2
        log.error(f"error: {where}{error.strerror or error}; check that the folder is writable "
                  "and the disk has space")
        return 2
    except KeyboardInterrupt as stop:  # Ctrl-C, SIGTERM (``Interrupted``)
        if args.debug:
            raise
        code = stop.exit_code if isinstance(stop, Interrupted) else 130
        name = signal.Signals(code - 128).name
        log.error(f"interrupted ({name}): {_resume_hint(args)}")
        return code
