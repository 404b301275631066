"""The command line of ``run_grid.py`` (DESIGN.md, "Contracts")."""

from __future__ import annotations

import argparse
import copy
import errno
import logging
import os
import shlex
import signal
from pathlib import Path

from orchestrator.config import (ExperimentConfig, apply_overrides, config_from_dict,
                                 config_to_dict, load_config, read_yaml)
from orchestrator.interrupt import Interrupted, stop_signals
from orchestrator.paths import DEFAULT_CONFIG, resolve_config
from trainables.console import show_messages
from trainables.data.corpora import CORPUS_KINDS
from trainables.errors import ConfigError, ProjectError

log = logging.getLogger(__name__)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="run_grid.py",
        description="Train transferable black-box attacks on SER models (Ren et al., 2020) "
                    "over a Ray Tune grid and write Table 1.")
    parser.add_argument("--config", help="experiment YAML (default: configs/smoke.yaml)")
    parser.add_argument("--results", default="results", help="results folder (default: results/)")
    parser.add_argument("--corpus", choices=CORPUS_KINDS, help="override the config's corpus")
    parser.add_argument("--data-root", help="the corpus folder (or manifest CSV)")
    parser.add_argument("--set", dest="overrides", action="append", default=[],
                        metavar="KEY=VALUE", help="override any config key, e.g. grid.seeds=[0,1]")
    parser.add_argument("--resume", action="store_true",
                        help="finish an interrupted run in --results without redoing finished trials")
    parser.add_argument("--address", help="join a running Ray cluster (e.g. auto or HOST:PORT); "
                        "default: $RAY_ADDRESS where set (`ray job submit` sets it), else a "
                        "local Ray instance of this run's own")
    parser.add_argument("--report-only", action="store_true",
                        help="rebuild tables and figures from --results; train nothing")
    parser.add_argument("--debug", action="store_true", help="show tracebacks")
    return parser


def resolve(args: argparse.Namespace, saved: dict | None = None) -> ExperimentConfig:
    """The config file, then ``--corpus``/``--data-root``, then ``--set`` overrides. With
    ``saved`` (a run's saved config, for ``--resume`` or ``--report-only`` without
    ``--config``) that config in place of the file."""
    config_file = resolve_config(args.config or DEFAULT_CONFIG)
    overrides = []
    if args.corpus:
        overrides.append(f"data.corpus={args.corpus}")
    if args.data_root:
        overrides.append(f"data.root={args.data_root}")
        if not args.corpus and "data.corpus=" not in " ".join(args.overrides):
            # A folder given without --corpus under the synthetic default means DEMoS names.
            config_corpus = (saved or {}).get("data", {}).get("corpus", "synthetic") \
                if saved is not None else load_config(config_file).data.corpus
            if config_corpus == "synthetic":
                overrides.append("data.corpus=demos")
    if saved is not None:
        return config_from_dict(apply_overrides(copy.deepcopy(saved), overrides + args.overrides))
    return load_config(config_file, overrides + args.overrides)


def _flat(data: object, key: str = "") -> dict[str, object]:
    """A nested config dict as ``{dotted.key: value}`` (lists stay values)."""
    if not isinstance(data, dict):
        return {key: data}
    flat: dict[str, object] = {}
    for name, value in data.items():
        flat.update(_flat(value, f"{key}.{name}" if key else str(name)))
    return flat


def check_saved_settings(args: argparse.Namespace) -> None:
    """``--resume`` and ``--report-only`` use the settings the run was started with (its saved
    ``config.yaml``): a ``--config``, ``--set``, ``--corpus`` or ``--data-root`` that would
    change one of them is refused in one line naming each, instead of being ignored. Settings
    equal to the run's (the starting command given again with ``--resume``) pass."""
    from orchestrator.run_folder import CONFIG_FILE

    flag = "--resume" if args.resume else "--report-only"
    if args.resume and args.report_only:
        raise ConfigError("--resume and --report-only: give one (--report-only trains nothing)")
    if args.report_only and args.address:
        raise ConfigError("--report-only starts no Ray instance and trains nothing: drop "
                          f"--address {args.address}")
    if not (args.config or args.overrides or args.corpus or args.data_root):
        return
    path = Path(args.results) / CONFIG_FILE
    if not path.exists():
        return  # the run says that the folder holds no run
    saved = config_to_dict(config_from_dict(read_yaml(path)))
    given = config_to_dict(resolve(args, None if args.config else saved))
    before, after = _flat(saved), _flat(given)
    changed = [k for k in dict.fromkeys([*before, *after]) if before.get(k) != after.get(k)]
    if changed:
        shown = ", ".join(f"{k} ({before.get(k)!r} there, {after.get(k)!r} given)"
                          for k in changed[:3])
        more = f" and {len(changed) - 3} more" if len(changed) > 3 else ""
        raise ConfigError(f"{flag} uses the settings the run was started with ({path}); the "
                          f"command line would change {shown}{more}: drop them, or start a new "
                          "run in another --results folder")


def _resume_hint(args: argparse.Namespace) -> str:
    """The command that finishes the interrupted run, or what to do when none was saved yet."""
    from orchestrator.run_folder import CONFIG_FILE

    if args.report_only:
        return "nothing was changed; run the same command again"
    if not (Path(args.results) / CONFIG_FILE).exists():
        return "no run was saved yet; run the same command again to start it"
    # Quoted where the shell needs it (a folder name with a space): a command to copy and run.
    command = f"python run_grid.py --results {shlex.quote(args.results)} --resume"
    return f"finish it with: {command}" + (f" --address {shlex.quote(args.address)}"
                                           if args.address else "")


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    show_messages()
    try:
        with stop_signals():
            if args.resume or args.report_only:
                check_saved_settings(args)
            if args.report_only:
                from orchestrator.report_only import report_only
                return report_only(Path(args.results))
            config = resolve(args)
            # Imported once the config is known good: it pulls in torch and Ray (seconds), which
            # a mistyped key should not wait for.
            from orchestrator.run import run
            # Under `ray job submit`, RAY_ADDRESS names the cluster the job runs on: join it
            # rather than start an instance beside it.
            return run(config, results=Path(args.results), resume=args.resume,
                       address=args.address or os.environ.get("RAY_ADDRESS") or None)
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
