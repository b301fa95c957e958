"""jlmarl.compare: rliable statistics on hand-built scores with known answers, the checks
that refuse incomparable runs, per-task normalisation, and the report written from small
hand-written run folders (nothing is trained here)."""

import json

import numpy as np
import pytest
import yaml

from jlmarl.analysis import stats
from jlmarl.analysis.runs import CompareError, compare_runs, load_run, parse_reference
from jlmarl.compare import main, parse_args

# --- statistics on hand-built score matrices [seeds, tasks] ---------------------------

# Task means 0.2, 0.5, 1.0: mean 0.5667, median 0.5. Sorted, the 12 scores are
# 0 .2 .2 | .4 .5 .5 .5 .5 .5 | 1 1 1.5: the IQM drops 3 at each end, (0.4 + 5 * 0.5) / 6.
# Optimality gap: 1 - mean(min(score, 1)) = 1 - 6.3 / 12.
SCORES = np.array(
    [
        [0.0, 0.5, 1.5],
        [0.2, 0.5, 0.5],
        [0.4, 0.5, 1.0],
        [0.2, 0.5, 1.0],
    ]
)


def test_aggregates_of_a_known_matrix_and_their_cis_contain_them():
    est = stats.aggregate_estimates({"a": SCORES}, reps=500)["a"]
    expected = {"iqm": 2.9 / 6, "median": 0.5, "mean": 1.7 / 3, "optimality_gap": 1 - 6.3 / 12}
    for name, value in expected.items():
        assert est[name].value == pytest.approx(value), name
        assert est[name].low <= est[name].value <= est[name].high, name


def test_cis_shrink_with_more_seeds_and_repeat_without_touching_the_global_rng():
    rng = np.random.default_rng(0)
    few, many = rng.normal(0.5, 0.2, (5, 3)), rng.normal(0.5, 0.2, (50, 3))
    np.random.seed(123)
    before = np.random.get_state()[1].copy()
    width = {}
    for name, scores in (("few", few), ("many", many)):
        iqm = stats.aggregate_estimates({name: scores}, reps=500)[name]["iqm"]
        width[name] = iqm.high - iqm.low
    assert width["many"] < width["few"] / 2  # ~ sqrt(10) narrower
    again = stats.aggregate_estimates({"few": few}, reps=500)["few"]["iqm"]
    assert again.high - again.low == width["few"]  # seeded: the same CI every time
    np.testing.assert_array_equal(np.random.get_state()[1], before)


def test_probability_of_improvement_known_values():
    worse = np.array([[0.1, 0.2], [0.2, 0.1], [0.3, 0.0]])
    poi = stats.probability_of_improvement(
        {"better": worse + 1, "worse": worse, "same": worse.copy()}, reps=300
    )
    assert poi["better", "worse"].value == 1.0 and poi["worse", "better"].value == 0.0
    assert poi["worse", "same"].value == 0.5 == poi["same", "worse"].value
    # One task, seeds [1, 3, 4] against [2, 3]: of 6 pairs, 3 wins and 1 tie -> 3.5 / 6.
    # A second task where x dominates -> mean (3.5 / 6 + 1) / 2.
    x, y = np.array([[1, 10], [3, 10], [4, 10]]), np.array([[2, 0], [3, 0]])
    est = stats.probability_of_improvement({"x": x, "y": y}, reps=300)
    assert est["x", "y"].value == pytest.approx((3.5 / 6 + 1) / 2)
    assert est["x", "y"].low <= est["x", "y"].value <= est["x", "y"].high
    assert est["y", "x"].value == pytest.approx(1 - est["x", "y"].value)


def test_fast_probability_of_improvement_equals_rliables():
    from rliable import metrics

    rng = np.random.default_rng(1)
    for _ in range(20):  # rounded scores: ties within and across algorithms
        x, y = (
            rng.integers(0, 4, (rng.integers(1, 6), 3)) / 4,
            rng.integers(0, 4, (rng.integers(1, 6), 3)) / 4,
        )
        assert stats._improvement(x, y) == pytest.approx(metrics.probability_of_improvement(x, y))
    assert stats._improvement(x, x) == 0.5 == metrics.probability_of_improvement(x, x)


def test_iqm_curve_and_performance_profile_by_hand():
    # [S=4, T=1, B=2]: step 0 scores 0..3 (IQM of the middle two: 1.5), step 1 all 1.
    curves = np.stack([np.arange(4.0), np.ones(4)], axis=-1)[:, None, :]
    est = stats.iqm_curves({"a": curves}, reps=200)["a"]
    np.testing.assert_allclose(est.value, [1.5, 1.0])
    profile = stats.performance_profiles(
        {"a": np.array([[0.1], [0.6], [0.9], [1.0]])}, np.array([0.0, 0.5, 0.95])
    )
    np.testing.assert_allclose(profile["a"].value, [1.0, 0.75, 0.25])


# --- hand-written run folders ---------------------------------------------------------


def write_run(root, name, algo, env, values, *, interval=100, seed=0, win=None, overshoot=7, **settings):
    """A finished run: values[k][i] is seed k's test return at evaluation i (env step i * interval,
    logged a few steps late as whole episodes overshoot); win likewise for test_win_rate."""
    run = root / name
    (run / "metrics").mkdir(parents=True)
    cfg = {
        "seed": seed,
        "num_seeds": len(values),
        "total_steps": interval * (len(values[0]) - 1),
        "test_interval": interval,
        "run_dir": str(run),
        "algo": {"name": algo, **settings},
        "env": {"name": env},
    }
    (run / "config.yaml").write_text(yaml.safe_dump(cfg))
    for k, returns in enumerate(values):
        lines = []
        for i, value in enumerate(returns):
            record = {
                "seed": k,
                "env_steps": i * interval + overshoot,
                "loss": 0.1,
                "test_return_mean": value,
            }
            if win is not None:
                record["test_win_rate"] = win[k][i]
            lines.append(json.dumps(record))
        (run / "metrics" / f"seed_{k}.jsonl").write_text("\n".join(lines) + "\n")
    return run


def test_binning_keeps_the_later_evaluation_of_a_bin(tmp_path):
    run = write_run(tmp_path, "r", "qmix", "t", [[1.0, 2.0, 3.0]])
    with open(run / "metrics" / "seed_0.jsonl", "a") as f:  # a final evaluation 20 steps after the last
        f.write(json.dumps({"env_steps": 220, "test_return_mean": 4.0}) + "\n")
    loaded = load_run(run)
    np.testing.assert_array_equal(loaded.steps, [0, 100, 200])
    np.testing.assert_array_equal(loaded.returns, [[1.0, 2.0, 4.0]])
    short = write_run(tmp_path, "s", "qmix", "t", [[1.0, 2.0]])
    assert compare_runs([loaded]).last == 3 and compare_runs([load_run(short)]).last == 2  # default: 3 or all


def test_a_final_evaluation_past_the_budget_counts_at_the_budget(tmp_path):
    # Two vmapped seeds of a 200-step run, evaluated at 3, 103 and 203 env steps; seed 1's
    # episodes ran longer, so it passed the budget earlier and trained on until seed 0
    # reached it: its final evaluation is at 260 (nearest multiple: 300). Both finals are
    # the budget's evaluation (the run would otherwise be refused as two grids).
    run = write_run(tmp_path, "r", "qmix", "t", [[1.0, 2.0, 3.0], [4.0, 5.0, 6.0]], overshoot=3)
    lines = (run / "metrics" / "seed_1.jsonl").read_text().splitlines()
    last = json.loads(lines[-1]) | {"env_steps": 260}
    (run / "metrics" / "seed_1.jsonl").write_text("\n".join([*lines[:-1], json.dumps(last)]) + "\n")
    loaded = load_run(run)
    np.testing.assert_array_equal(loaded.steps, [0, 100, 200])
    np.testing.assert_array_equal(loaded.returns, [[1.0, 2.0, 3.0], [4.0, 5.0, 6.0]])


def test_steps_cuts_a_longer_run_to_the_shorter_budget(tmp_path):
    # A 400-step run beside a 200-step one: at steps=200 the long run's evaluation at 207
    # is its final one and its later ones (what it learned past 200) are left out.
    long = write_run(tmp_path, "long", "qmix", "t", [[1.0, 2.0, 3.0, 4.0, 5.0]])
    short = write_run(tmp_path, "short", "vdn", "t", [[0.0, 1.0, 2.0]])
    with pytest.raises(CompareError, match="evaluat"):
        compare_runs([load_run(long), load_run(short)])
    cut = load_run(long, until=200)
    np.testing.assert_array_equal(cut.steps, [0, 100, 200])
    np.testing.assert_array_equal(cut.returns, [[1.0, 2.0, 3.0]])
    assert compare_runs([cut, load_run(short, until=200)]).last == 3
    with pytest.raises(CompareError, match="fewer than steps=300"):
        load_run(short, until=300)


def test_normalisation_by_hand(tmp_path):
    # Task "ret": returns over every evaluation of both runs span -2..8 -> (x + 2) / 10.
    # Task "win": logs test_win_rate, which is the score as is.
    runs = [
        write_run(tmp_path, "a_ret", "a", "ret", [[-2.0, 3.0, 8.0]]),
        write_run(tmp_path, "b_ret", "b", "ret", [[0.0, 1.0, 3.0]]),
        write_run(tmp_path, "a_win", "a", "win", [[5.0, 6.0, 7.0]], win=[[0.0, 0.5, 0.75]]),
        write_run(tmp_path, "b_win", "b", "win", [[5.0, 6.0, 7.0]], win=[[0.0, 0.25, 0.25]]),
    ]
    c = compare_runs([load_run(r) for r in runs], last=2)
    assert c.tasks == ["ret", "win"] and c.algos == ["a", "b"]
    assert c.normalisation["ret"].kind == "min_max" and c.normalisation["win"].kind == "win_rate"
    np.testing.assert_allclose(c.curves["a"][0], [[0.0, 0.5, 1.0], [0.0, 0.5, 0.75]])
    np.testing.assert_allclose(c.curves["b"][0], [[0.2, 0.3, 0.5], [0.0, 0.25, 0.25]])
    np.testing.assert_allclose(c.final()["a"], [[0.75, 0.625]])  # mean of the last 2 evaluations
    # A reference scores by return, even where the env logs a win rate.
    c = compare_runs([load_run(r) for r in runs], parse_reference("ret:0:10,win:5:7"), last=1)
    np.testing.assert_allclose(c.final()["a"], [[0.8, 1.0]])
    (tmp_path / "ref.yaml").write_text("ret: [0, 10]\nwin: {min: 5, max: 7}\n")
    assert parse_reference(str(tmp_path / "ref.yaml")) == {"ret": (0.0, 10.0), "win": (5.0, 7.0)}


@pytest.mark.parametrize(
    "case, expected",
    [
        ("interval", "evaluates every 50 env steps but"),
        ("shorter", "was evaluated near env step 200 but"),
        ("missing_task", "b has no run on t2 (tasks: t1, t2); give every algorithm a run on every task"),
        ("seed_counts", "a has 1 seed on t1 but 2 on t2"),
        ("settings", "are both a on t1 but differ in algo.lr (0.1 vs 0.2); name one apart as"),
        ("same_seed", "both hold seed 0 of a on t1"),
        ("reference", "reference names task nope, which no run has"),
        ("twice", "a1 is given twice; give each run folder once"),
    ],
)
def test_incomparable_runs_are_refused_with_one_sentence(tmp_path, case, expected):
    three = [[1.0, 2.0, 3.0]]
    runs = [write_run(tmp_path, "a1", "a", "t1", three), write_run(tmp_path, "b1", "b", "t1", three)]
    reference = None
    if case == "interval":
        runs.append(write_run(tmp_path, "x", "b", "t1", [[1.0, 2.0, 3.0, 4.0, 5.0]], interval=50, seed=5))
    elif case == "shorter":
        runs.append(write_run(tmp_path, "x", "a", "t2", [[1.0, 2.0]]))
    elif case == "missing_task":
        runs.append(write_run(tmp_path, "x", "a", "t2", three))
    elif case == "seed_counts":
        runs += [write_run(tmp_path, "x", "a", "t2", three * 2), write_run(tmp_path, "y", "b", "t2", three)]
    elif case == "settings":
        runs = [
            write_run(tmp_path, "x", "a", "t1", three, lr=0.1),
            write_run(tmp_path, "y", "a", "t1", three, lr=0.2),
        ]
    elif case == "same_seed":
        runs.append(write_run(tmp_path, "x", "a", "t1", three))
    elif case == "twice":
        runs.append(runs[0])
    elif case == "reference":
        reference = {"nope": (0.0, 1.0)}
    with pytest.raises(CompareError) as error:
        compare_runs([load_run(r) for r in runs], reference)
    assert expected in str(error.value)
    assert "\n" not in str(error.value)


def test_cli_refusals_exit_2_with_one_line(tmp_path, capsys):
    run = write_run(tmp_path, "a1", "a", "t1", [[1.0, 2.0]])
    report = tmp_path / "compare"
    report.mkdir()
    (report / "report.json").write_text("{}")
    for argv, expected in [
        ([str(tmp_path / "nope")], "is not a run folder (no config.yaml)"),
        ([str(run), "colour=red"], "unknown option colour=; valid: last, out, reference, reps, seed"),
        ([str(run), "last=0"], "last must be an integer >= 1, got '0'"),
        ([str(run), "reps=many"], "reps must be an integer >= 1, got 'many'"),
        ([str(run), "last=3"], "last=3 must be between 1 and the 2 evaluations the runs share"),
        ([str(run), "reference=t1:5:1"], "reference for t1 needs max > min"),
        ([str(run), str(report)], "is a comparison report, not a run folder; leave it out"),
    ]:
        with pytest.raises(SystemExit) as exit_:
            main(argv)
        assert exit_.value.code == 2
        err = capsys.readouterr().err.strip().splitlines()
        assert len(err) == 1 and expected in err[0], err


def test_run_folders_are_named_with_at_and_may_hold_at_and_equals(tmp_path):
    run = write_run(tmp_path, "a1", "a", "t1", [[1.0, 2.0]])
    sweep = write_run(tmp_path, "algo=a,env=t1@0", "a", "t1", [[1.0, 2.0]])
    runs, options = parse_args([f"{run}@ablation", str(sweep), "last=1"])
    assert runs == [(run, "ablation"), (sweep, None)] and options == {"last": "1"}
    assert load_run(run, "ablation").algo == "ablation"


def test_a_damaged_metrics_line_is_skipped_and_named(tmp_path):
    run = write_run(tmp_path, "a1", "a", "t1", [[1.0, 2.0, 3.0]])
    path = run / "metrics" / "seed_0.jsonl"
    lines = path.read_text().splitlines(keepends=True)
    path.write_text(lines[0] + '{"env_steps": 10' + "\n" + "".join(lines[1:]))
    loaded = load_run(run)
    np.testing.assert_array_equal(loaded.returns, [[1.0, 2.0, 3.0]])
    assert any(f"{path}:2" in note for note in compare_runs([loaded]).notes)


def test_end_to_end_report_from_run_folders(tmp_path, capsys):
    # Two tasks, two algorithms, 3 seeds each: "good" beats "base" at every seed on both tasks.
    root = tmp_path / "runs"
    base = [[0.0, 0.2, 0.2], [0.0, 0.3, 0.3], [0.0, 0.1, 0.1]]
    good = [[0.0, 0.8, 0.8], [0.0, 0.9, 0.9], [0.0, 0.7, 0.7]]
    write_run(root, "base_w", "base", "wins", [[0.0] * 3] * 3, win=base)
    write_run(root, "good_w", "good", "wins", [[0.0] * 3] * 3, win=good)
    write_run(root, "base_r", "base", "rets", [[10 * v for v in s] for s in base])  # returns 0..3
    write_run(root, "good_r", "good", "rets", [[10 * v for v in s] for s in good])  # returns 0..9
    main([str(p) for p in sorted(root.iterdir())] + ["last=1", "reps=300"])
    out = root / "compare"  # default: next to the runs
    printed = capsys.readouterr().out
    assert "wrote" in printed and "good" in printed

    report = json.loads((out / "report.json").read_text())
    assert report["tasks"] == ["rets", "wins"] and report["algorithms"] == ["base", "good"]
    assert report["env_steps"] == [0, 100, 200]
    assert report["normalisation"]["rets"] == {
        "metric": "test_return_mean",
        "kind": "min_max",
        "min": 0.0,
        "max": 9.0,
    }
    assert report["normalisation"]["wins"]["kind"] == "win_rate"
    # good's final scores: rets 8/9, 1, 7/9 (returns / 9); wins 0.8, 0.9, 0.7. The IQM of 6 scores
    # drops floor(6 / 4) = 1 at each end: the mean of 7/9, 0.8, 8/9, 0.9.
    iqm = report["aggregate"]["good"]["iqm"]
    assert iqm["estimate"] == pytest.approx((7 / 9 + 0.8 + 8 / 9 + 0.9) / 4)
    assert iqm["ci"][0] <= iqm["estimate"] <= iqm["ci"][1]
    assert report["aggregate"]["good"]["mean"]["estimate"] == pytest.approx((8 / 9 + 1 + 7 / 9 + 2.4) / 6)
    assert report["probability_of_improvement"]["good"]["base"]["estimate"] == 1.0
    assert report["probability_of_improvement"]["base"]["good"]["estimate"] == 0.0
    cell = report["per_task"]["wins"]["base"]
    assert cell["seeds"] == 3 and cell["final_metric_mean"] == pytest.approx(0.2)
    assert cell["normalised"]["estimate"] == pytest.approx(0.2)
    assert report["sample_efficiency_iqm"]["good"]["estimate"][0] == 0.0
    assert len(report["performance_profile"]["tau"]) == 101
    # the logged win rate per task, IQM over 3 seeds (trims none of 3: the mean) at each evaluation
    assert report["per_task_curves"]["wins"]["good"]["estimate"] == pytest.approx([0.0, 0.8, 0.8])
    assert report["per_task_curves"]["rets"]["base"]["estimate"] == pytest.approx([0.0, 2.0, 2.0])

    names = ("aggregate", "probability_of_improvement", "performance_profile", "sample_efficiency")
    for name in (*names, "curve_wins", "curve_rets"):
        assert (out / f"{name}.png").read_bytes()[:4] == b"\x89PNG"
    md = (out / "report.md").read_text()
    assert (
        "| good | 0.842 [" in md
        and "## Per task" in md
        and "![IQM against env steps](sample_efficiency.png)" in md
        and "](curve_wins.png)" in md
    )

    marl = json.loads((out / "marl_eval.json").read_text())["jlmarl"]
    assert set(marl) == {"rets", "wins"} and set(marl["wins"]) == {"base", "good"}
    run = marl["rets"]["good"]["run_1"]
    assert list(run) == [
        "step_0",
        "step_1",
        "step_2",
        "absolute_metrics",
    ]  # absolute last, as marl-eval reads it
    assert run["step_2"] == {"step_count": 200, "return": [9.0], "score": [1.0]}  # no win_rate: rets lacks it
    assert run["absolute_metrics"] == {"return": [9.0], "score": [1.0]}
