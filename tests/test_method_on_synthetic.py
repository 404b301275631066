"""The method on real (synthetic) audio: a defence learns the corpus on held-out speakers, and
the attacker then lowers its UAR. Small sizes, plain PyTorch, no Ray.

Each holds on several speaker splits, not one draw. Measured over split seeds 0-4 (12 speakers,
5 in train): the defence's clean test UAR 0.30-0.45 (chance 1/7); the attacker's test UAR
0.40-0.53 of the clean one after 150 steps at lr 0.01. At lr 0.003 the same 150 steps ended
while the attack was still starting (the defence still right on 90-100 % of the attacked train
inputs), so where the budget fell in that start decided the test: 0.64 of clean on split seed 0,
0.84 on seed 1; at lr 0.01 it has settled by step 100-150.
"""

import pytest
import torch

from orchestrator.paths import cache_dir
from trainables.data.scan import scan_corpus
from trainables.defence_training import DefenceTrainer
from trainables.settings import DefenceTrainingSettings
from trainables.evaluation import evaluate
from trainables.data.feature_cache import build_feature_cache, load_features
from trainables.data.settings import FeatureSettings
from trainables.models import build
from trainables.regularisers import build_regulariser
from trainables.settings import AttackSettings
from trainables.stage_loop import LoopSettings, StageLoop
from trainables.stages import make_plan
from trainables.data.synthetic import ensure_corpus
from trainables.data.settings import SplitSpec, SyntheticSpec

# Real Ray or a real subprocess in every test (``pytest -m "not slow"`` leaves them out).
pytestmark = pytest.mark.slow

SPEC = SyntheticSpec(speakers=12, utterances_per_emotion=4, min_seconds=1.0, max_seconds=2.0)
SPLIT_SEEDS = (0, 1, 2)  # 1: the draw the old schedule failed on; 2: the weakest defence


@pytest.fixture(scope="module", autouse=True)
def _two_threads():
    """The same torch thread count whatever ran before in this process: a trainable's runtime
    sets it to its CPUs (one), and this learning threshold, measured with two threads, moved
    with the sums' order (it failed in a full-suite run after an in-process trial, and passed
    alone)."""
    previous = torch.get_num_threads()
    torch.set_num_threads(2)
    yield
    torch.set_num_threads(previous)


@pytest.fixture(scope="module", params=SPLIT_SEEDS, ids=lambda seed: f"split{seed}")
def splits(request):
    root = ensure_corpus(cache_dir(), SPEC)
    table = scan_corpus(root, "synthetic", split=SplitSpec(seed=request.param))
    features = load_features(build_feature_cache(table, FeatureSettings(frames=64),
                                                 cache_dir() / "features", progress=False))
    return {s: tuple(map(torch.from_numpy, features.standardised(s)))
            for s in ("train", "dev", "test")}


@pytest.fixture(scope="module")
def defence(splits):
    torch.manual_seed(0)
    model = build("cnn4", width=0.125)
    DefenceTrainer(model, splits["train"], splits["dev"],
                   DefenceTrainingSettings(iterations=300, eval_every=50, lr=3e-3)).run()
    return model


def test_a_small_defence_beats_chance_clearly_on_held_out_speakers(defence, splits):
    metrics = evaluate(None, {"cnn4": defence}, {"test": splits["test"]})
    assert metrics["cnn4/test/clean_uar"] > 0.25  # chance is 1/7; measured 0.30-0.45


def test_the_attacker_lowers_the_defences_uar(defence, splits):
    torch.manual_seed(0)
    attacker = build("atrous", width=0.125)
    loop = StageLoop(attacker, {"cnn4": defence}, make_plan("single-task", ("cnn4",), 150, 0),
                     build_regulariser("none"), *splits["train"],
                     LoopSettings(AttackSettings(lr=1e-2, alpha=0.5, batch_size=16)))
    loop.run()
    metrics = evaluate(attacker, {"cnn4": defence}, {"test": splits["test"]})
    # Measured over split seeds 0-4: 0.40-0.53 of the clean UAR.
    assert metrics["cnn4/test/adv_uar"] < 0.7 * metrics["cnn4/test/clean_uar"]
    assert metrics["perturbation/test/snr_db"] > 0
