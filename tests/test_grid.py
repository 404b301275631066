import pytest

from orchestrator.config import load_config
from orchestrator.grid import (ATTACK_EXPERIMENT, CONTINUED_EXPERIMENT, attack_trials,
                               defence_trials, experiment_of, longest_first)
from trainables.errors import ConfigError
from trainables.stages import Plan, Stage


def test_default_grid_reads_like_table_1():
    config = load_config(None, ["grid.lambdas=[1e4, 1e5]", "grid.seeds=[0, 1]"])
    trials = attack_trials(config)
    ids = [t.id for t in trials]
    assert len(ids) == len(set(ids))
    per_seed = [t for t in trials if t.seed == 0]
    counts = {s: sum(t.strategy == s for t in per_seed) for s in
              ("single-task", "multi-task", "transfer", "lifelong")}
    assert counts == {"single-task": 3, "multi-task": 3, "transfer": 2, "lifelong": 4}
    lifelong = next(t for t in trials if t.id == "lifelong-clockwise-lam1e5-seed1")
    assert lifelong.plan == Plan("lifelong", (Stage(("cnn4",), 10_000), Stage(("vgg16",), 1_000),
                                              Stage(("resnet50",), 1_000)), "ewc")
    assert lifelong.rows()[2] == ("lifelong", ("cnn4", "vgg16"))
    assert lifelong.rows()[3] == ("lifelong", ("cnn4", "vgg16", "resnet50"))
    multi = {t.defences for t in per_seed if t.strategy == "multi-task"}
    assert multi == {("cnn4", "vgg16"), ("cnn4", "vgg16", "resnet50"), ("resnet50", "vgg16")}
    assert all(t.lam is None for t in trials if t.strategy != "lifelong")
    # Every grid seed attacks defences of its own draw: seeds measure the defences' spread too.
    defences = [(t.defence, t.training_seed) for t in defence_trials(config)]
    assert defences == [(d, config.seed + s) for s in config.grid.seeds
                        for d in ("cnn4", "vgg16", "resnet50")]
    assert len({t.id for t in defence_trials(config)}) == len(defences)


def test_each_experiment_starts_its_costliest_trials_first_and_keeps_the_grid_order_in_ties():
    # The default run's grid, whose first experiment ended with its short universal trials
    # after the three-defence multi-task trial had started fifth.
    trials = attack_trials(load_config("configs/smoke.yaml"))
    first = longest_first([t for t in trials if experiment_of(t) == ATTACK_EXPERIMENT])
    assert [(t.strategy, len(t.defences)) for t in first[:4]] == [
        ("multi-task", 3), ("universal", 3), ("multi-task", 2), ("multi-task", 2)]
    # Ties in the grid's order: single-task before the one-defence universal trials.
    assert [t.strategy for t in first[4:]] == ["single-task"] * 3 + ["universal"] * 3
    assert [t.defences for t in first[4:7]] == [("cnn4",), ("vgg16",), ("resnet50",)]
    continued = longest_first([t for t in trials if experiment_of(t) == CONTINUED_EXPERIMENT])
    # The ensemble baselines run through three defences a step; a transfer or lifelong trial
    # trains, a baseline on one surrogate trains nothing; the query attack last.
    strategies = [t.strategy for t in continued]
    assert strategies[:2] == ["mi-fgsm", "di-fgsm"] and len(continued[0].defences) == 3
    assert set(strategies[2:14]) == {"transfer", "lifelong"}
    assert strategies[14:] == ["mi-fgsm"] * 3 + ["di-fgsm"] * 3 + ["square"]
    assert sorted(t.id for t in continued) == sorted(
        t.id for t in trials if experiment_of(t) == CONTINUED_EXPERIMENT)


def test_grid_follows_the_config():
    config = load_config(None, ["grid.strategies=[lifelong]", "grid.lambdas=[1e6]",
                                "grid.sequences={short: [vgg16, cnn4]}",
                                "lifelong.regulariser=online_ewc"])
    trials = attack_trials(config)
    assert [t.id for t in trials] == ["lifelong-short-lam1e6-seed0"]
    assert trials[0].regulariser == "online_ewc"
    # Every defence is trained: every attack is evaluated on all of them.
    assert [t.defence for t in defence_trials(config)] == ["cnn4", "vgg16", "resnet50"]


def test_transfer_and_lifelong_start_from_the_single_task_trial_on_their_first_defence():
    trials = {t.id: t for t in attack_trials(load_config(None, []))}
    assert trials["lifelong-clockwise-lam1e4-seed0"].starts_from == "single-task-cnn4-seed0"
    assert trials["transfer-counterclockwise-seed0"].starts_from == "single-task-resnet50-seed0"
    assert experiment_of(trials["transfer-clockwise-seed0"]) == CONTINUED_EXPERIMENT
    assert all(experiment_of(t) == ATTACK_EXPERIMENT for t in trials.values()
               if t.strategy in ("single-task", "multi-task"))
    assert all(t.in_table for t in trials.values())
    unshared = attack_trials(load_config(None, ["grid.share_first_stage=false"]))
    assert [t.id for t in unshared] == list(trials)
    assert all(not t.starts_from and experiment_of(t) == ATTACK_EXPERIMENT for t in unshared)


def test_without_a_single_task_trial_a_helper_trains_the_shared_first_stage():
    trials = attack_trials(load_config(None, ["grid.strategies=[transfer, lifelong]"]))
    helpers = [t for t in trials if not t.in_table]
    assert [t.id for t in helpers] == ["first-stage-cnn4-seed0", "first-stage-resnet50-seed0"]
    assert helpers[0].plan == Plan("single-task", (Stage(("cnn4",), 10_000),), "none")
    assert all(t.starts_from.startswith("first-stage-") for t in trials if t.in_table)
    # One trial per first stage: nothing to share, no helper.
    alone = attack_trials(load_config(None, ["grid.strategies=[lifelong]", "grid.lambdas=[1e4]"]))
    assert [(t.id, t.starts_from) for t in alone] == [
        ("lifelong-clockwise-lam1e4-seed0", ""), ("lifelong-counterclockwise-lam1e4-seed0", "")]


def test_si_trains_its_own_first_stage():
    trials = attack_trials(load_config(None, ["lifelong.regulariser=si"]))
    assert all(not t.starts_from for t in trials if t.strategy == "lifelong")
    assert all(t.starts_from for t in trials if t.strategy == "transfer")


HELD_OUT = ["defences={cnn4: {model: cnn4}, vgg16: {model: vgg16}, resnet50: {model: resnet50}, "
            "crnn: {model: crnn, held_out: true}}",
            "grid.strategies=[single-task, multi-task, transfer, lifelong, universal]"]


def test_a_held_out_defence_is_trained_and_never_attacked():
    config = load_config(None, HELD_OUT)
    trials = attack_trials(config)
    assert config.held_out_defences == ["crnn"]
    assert all("crnn" not in stage.defences for t in trials for stage in t.plan.stages)
    assert all("crnn" not in t.defences for t in trials)
    # ... but trained, for every grid seed, since every attack is evaluated on it.
    assert "crnn" in {t.defence for t in defence_trials(config)}


def test_a_sequence_through_a_held_out_defence_is_refused():
    with pytest.raises(ConfigError, match=r"grid.sequences.clockwise: 'vgg16' is held out"):
        load_config(None, ["defences={cnn4: {model: cnn4}, resnet50: {model: resnet50}, "
                           "vgg16: {model: vgg16, held_out: true}}"])
    with pytest.raises(ConfigError, match="every defence is held out"):
        load_config(None, ["defences={a: {model: cnn4, held_out: true}}", "grid.sequences={}",
                           "grid.strategies=[single-task]"])


def test_universal_trials_train_the_universal_perturbation_beside_the_paper_methods():
    trials = {t.id: t for t in attack_trials(load_config(None, HELD_OUT))}
    universal = [t for t in trials.values() if t.strategy == "universal"]
    assert [t.id for t in universal] == ["universal-cnn4-seed0", "universal-vgg16-seed0",
                                         "universal-resnet50-seed0",
                                         "universal-cnn4+vgg16+resnet50-seed0"]
    assert all(t.plan.attacker == "universal" and len(t.plan.stages) == 1 for t in universal)
    assert universal[-1].plan.stages[0].iterations == 12_000  # the sequences' whole budget
    # A transfer trial continues the atrous attacker of single-task, never a universal one.
    assert trials["transfer-clockwise-seed0"].starts_from == "single-task-cnn4-seed0"
    assert all(t.plan.attacker == "atrous" for t in trials.values() if t.strategy != "universal")


@pytest.mark.parametrize("lambdas", [[100.0, 120.0], [1e4, 1.5e4, 2e4], [0.1, 0.1 + 1e-12],
                                     [1e-5, 1.2e-5], [5.0, 5.5]])
def test_every_lambda_gets_a_trial_name_of_its_own(lambdas):
    """Names once held lambda to one significant digit: 100 and 120 were both ``lam1e2``, one
    folder for two trials."""
    trials = attack_trials(load_config(None, [f"grid.lambdas={lambdas!r}",
                                              "grid.strategies=[lifelong]"]))
    lifelong = [t for t in trials if t.strategy == "lifelong"]
    assert len({t.id for t in lifelong}) == len(lifelong) == 2 * len(lambdas)


def test_one_digit_lambdas_keep_the_names_runs_were_started_with():
    ids = [t.id for t in attack_trials(load_config(
        None, ["grid.lambdas=[1e4, 1e-5, 0.5, 100]", "grid.strategies=[lifelong]",
               "grid.sequences={c: [cnn4, vgg16]}"])) if t.in_table]
    assert ids == ["lifelong-c-lam1e4-seed0", "lifelong-c-lam1e-05-seed0",
                   "lifelong-c-lam5e-01-seed0", "lifelong-c-lam1e2-seed0"]
    assert [t.id for t in attack_trials(load_config(None, [
        "grid.lambdas=[120.0]", "grid.strategies=[lifelong]",
        "grid.sequences={c: [cnn4, vgg16]}"]))] == ["lifelong-c-lam1.2e2-seed0"]


def test_a_grid_of_names_too_long_for_a_folder_is_refused():
    long = "d" * 120
    config = load_config(None, [f"defences={{{long}1: {{model: cnn4}}, {long}2: {{model: cnn4}}}}",
                                f"grid.sequences={{s: [{long}1, {long}2]}}",
                                "grid.strategies=[multi-task]"])
    with pytest.raises(ConfigError, match="characters, more than a folder name takes"):
        attack_trials(config)
