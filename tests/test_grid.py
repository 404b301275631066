from orchestrator.config import load_config
from orchestrator.grid import attack_trials, defence_trials


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
    assert lifelong.stage_iterations == (10_000, 1_000, 1_000)
    assert lifelong.stage_defences == (("cnn4",), ("vgg16",), ("resnet50",))
    assert lifelong.rows()[1] == ("lifelong", ("cnn4", "vgg16"))
    assert lifelong.rows()[2] == ("lifelong", ("cnn4", "vgg16", "resnet50"))
    multi = {t.defences for t in per_seed if t.strategy == "multi-task"}
    assert multi == {("cnn4", "vgg16"), ("cnn4", "vgg16", "resnet50"), ("resnet50", "vgg16")}
    assert all(t.lam is None for t in trials if t.strategy != "lifelong")
    assert [t.defence for t in defence_trials(config)] == ["cnn4", "vgg16", "resnet50"]


def test_grid_follows_the_config():
    config = load_config(None, ["grid.strategies=[lifelong]", "grid.lambdas=[1e6]",
                                "grid.sequences={short: [vgg16, cnn4]}",
                                "lifelong.regulariser=online_ewc"])
    trials = attack_trials(config)
    assert [t.id for t in trials] == ["lifelong-short-lam1e6-seed0"]
    assert trials[0].regulariser == "online_ewc"
    assert [t.defence for t in defence_trials(config)] == ["cnn4", "vgg16"]
